"""Every notebook under notebooks/ runs top to bottom on a real kernel against a private TSM home.

A cell tagged ``restart-kernel-before`` is run in a freshly restarted kernel, as a user who
restarts the kernel at that point would: what was started before must still be there.
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from nbclient.util import run_sync

from conftest import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
pytestmark = pytest.mark.notebook


def run_notebook(path: Path, env: dict[str, str], workdir: Path, kernel_name: str = "python3") -> nbformat.NotebookNode:
    """Execute ``path`` cell by cell in a kernel whose environment is ``env``; fail on any error."""
    nb = nbformat.read(path, as_version=4)
    old = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)  # kernel specs are looked up in JUPYTER_PATH from this environment
    try:
        client = NotebookClient(nb, timeout=120, kernel_name=kernel_name, resources={"metadata": {"path": str(workdir)}})
        client.create_kernel_manager()
        with client.setup_kernel(env=env, cwd=str(workdir)):
            for index, cell in enumerate(nb.cells):
                if cell.cell_type != "code":
                    continue
                if "restart-kernel-before" in cell.metadata.get("tags", []):
                    run_sync(client.km.restart_kernel)(now=True)
                    run_sync(client.kc.wait_for_ready)(timeout=60)
                try:
                    client.execute_cell(cell, index)
                except CellExecutionError as exc:
                    raise AssertionError(f"{path.name}, cell {index}:\n{cell.source}\n\n{exc}") from None
    finally:
        os.environ.clear()
        os.environ.update(old)
    return nb


def test_there_are_notebooks():
    assert [p.name for p in NOTEBOOKS] == ["01-quickstart.ipynb", "02-monitoring.ipynb", "03-recipes.ipynb",
                                           "04-stacks.ipynb", "05-triggers.ipynb", "06-doctor.ipynb",
                                           "07-hosts.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(tsm, path, tmp_path):
    tsm.home.mkdir(parents=True, exist_ok=True)
    users_dump = tsm.home / "dump.json"  # the user's own saved processes: a demo must not touch them
    users_dump.write_text('{"version": "0", "saved": 0, "processes": []}')
    nb = run_notebook(path, dict(tsm.env), tmp_path)
    assert users_dump.read_text() == '{"version": "0", "saved": 0, "processes": []}', f"{path.name} rewrote dump.json"
    # outputs were produced (the notebook really ran), and nothing it started is left behind
    assert any(c.get("outputs") for c in nb.cells if c.cell_type == "code")
    texts = ["".join(o.get("text", "") for o in c.outputs) for c in nb.cells if c.cell_type == "code"]
    kernels = {line.split()[2] for t in texts for line in t.splitlines() if line.startswith("kernel pid ")}
    restarts = sum("restart-kernel-before" in c.metadata.get("tags", []) for c in nb.cells)
    assert len(kernels) == restarts + (1 if restarts else 0), kernels
    rows = tsm.call("ls", all=True)
    assert rows == [], f"{path.name} left processes behind: {[r['name'] for r in rows]}"


def test_notebooks_are_committed_without_outputs():
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{path.name} has outputs"
