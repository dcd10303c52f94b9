"""Cells a notebook user re-runs, in a real kernel (nbclient): a start cell run three times leaves
one process; `$PORT` reaches the command with the kernel's own `PORT` variable set; an edited
`%%tsm` cell replaces its process (`--var` names it); a console-script Python app's `print` shows
in its log; a kernel's colour-forcing variables stay out of the child; the kernel interpreter's
`bin` directory is on the child's PATH."""

from __future__ import annotations

import json
import os
import re
import sys

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import PY, accepts, free_port, wait_for

pytestmark = pytest.mark.notebook


def outputs(cell) -> str:
    """Every text of a cell's outputs: streams, text/plain and text/html."""
    parts = []
    for o in cell.outputs:
        parts.append(o.get("text", ""))
        data = o.get("data", {})
        parts.append(data.get("text/plain", ""))
        parts.append(data.get("text/html", ""))
        if o.output_type == "error":
            parts.append(f"{o.ename}: {o.evalue}")
    return "\n".join(parts)


def run_cells(tsm, tmp_path, sources: list[str], env: dict | None = None) -> list:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    client = NotebookClient(nb, timeout=90, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute(env=env or tsm.env, cwd=str(tmp_path))
    return nb.cells


def test_rerunning_a_start_cell_keeps_one_process_and_port_reaches_the_command(tsm, tmp_path):
    port = free_port()
    start = f'web = %tsm start "{PY} -m http.server $PORT --bind 127.0.0.1" --name web --port {port}+ --wait-port\nweb'
    worker = "%%tsm start --name worker --var w\nimport time\nprint('{}', flush=True)\nwhile True:\n    time.sleep(1)"
    cells = run_cells(tsm, tmp_path, [
        "%load_ext tsm_notebook\nPORT = 9999",
        start, start, start,
        "import tsm_notebook as t\nprint('NAMES', sorted(t.processes()['name']))",
        worker.format("version one"),
        "print('VAR', w.name, w.pid)",
        worker.format("version two"),
        "print('VAR', w.name, w.pid)",
        "print('NAMES', sorted(t.processes()['name']))",
    ])
    for c in cells:
        assert "Error" not in outputs(c), outputs(c)
    name = f"web-{port}"
    assert re.search(r"NAMES \[(.*)\]", outputs(cells[4])).group(1) == repr(name)
    assert "Already running (same spec)" in outputs(cells[2]) and "Already running (same spec)" in outputs(cells[3])
    assert accepts(port) and not accepts(9999)
    row = tsm.row(name)
    assert "$PORT" in row["command"] and row["restarts"] == 0

    first = re.search(r"VAR (\S+) (\d+)", outputs(cells[6]))
    second = re.search(r"VAR (\S+) (\d+)", outputs(cells[8]))
    assert first.group(1) == second.group(1) == "worker"
    assert first.group(2) != second.group(2)  # a new run, with the edited body
    assert "Restarted with the new spec" in outputs(cells[7])
    assert sorted(re.search(r"NAMES \[(.*)\]", outputs(cells[9])).group(1).replace("'", "").split(", ")) == [name, "worker"]
    log = tsm.proc_dir("worker") / "current.out"
    wait_for(lambda: "version two" in log.read_text(), message="the edited body running")


def test_kernel_children_get_unbuffered_python_no_forced_colour_and_the_kernel_bin(tsm, tmp_path):
    app = tmp_path / "hello-app"  # what an entry point (uvicorn, flask, celery) looks like
    app.write_text(f"#!{PY}\nimport os, time\nprint('hello from an entry point', os.environ.get('FORCE_COLOR'), flush=False)\n"
                   "time.sleep(600)\n")
    app.chmod(0o755)
    env = dict(tsm.env, FORCE_COLOR="1", CLICOLOR_FORCE="1")
    # the kernel's PATH lacks its interpreter's bin (a kernel started by a server outside the venv)
    bindir = os.path.dirname(sys.executable)
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p and os.path.realpath(p) != os.path.realpath(bindir))
    assert (os.path.isfile(os.path.join(bindir, "tsm")))
    cells = run_cells(tsm, tmp_path, [
        "%load_ext tsm_notebook",
        f'%tsm start "{app}" --name ep',
        '%tsm start "tsm ping" --name tp --no-autorestart',
    ], env=env)
    for c in cells:
        assert "Error" not in outputs(c), outputs(c)
    out = tsm.proc_dir("ep") / "current.out"
    wait_for(lambda: "hello from an entry point None" in out.read_text(), message="the print in the log")
    tp = tsm.proc_dir("tp") / "current.out"
    wait_for(lambda: "pong" in tp.read_text(), message="tsm found on the kernel's bin")


def test_colour_codes_render_as_html_in_the_log_views(tsm, tmp_path):
    script = tmp_path / "colour.py"
    script.write_text("import time\n"
                      "print('\\x1b[31mred alert\\x1b[0m and \\x1b[1;32mgreen\\x1b[0m', flush=True)\n"
                      "time.sleep(600)\n")
    cells = run_cells(tsm, tmp_path, [
        "%load_ext tsm_notebook",
        f'%tsm start --name colour -- {PY} {script}',
        f'%tsm start --name plain -- {PY} -c "import time; print(1, flush=True); time.sleep(600)"',
        "import time\nfor _ in range(200):\n    logs = %tsm logs colour\n"
        "    if 'alert' in repr(logs): break\n    time.sleep(0.05)\nlogs",
        "tail = %tsm logs all -f\ntail.refresh()\nprint(repr(tail.output.value))\nprint(repr(tail.text))\ntail.close()",
    ])
    for c in cells:
        assert "Error" not in outputs(c), outputs(c)
    html = "".join(o.get("data", {}).get("text/html", "") for o in cells[3].outputs if "data" in o)
    assert "red alert" in html and "\x1b" not in html
    assert '<span style="color:#e75c58">red alert</span>' in html
    assert '<span style="color:#00a250;font-weight:bold">green</span>' in html
    live = outputs(cells[4])
    assert "red alert" in live and "\\x1b" not in live  # the LogTail's HTML and its plain text
    assert 'class="who" style="color:' in live  # every process in one view, names coloured
