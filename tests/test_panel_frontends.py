"""The live panel driven by the front end's clock (a hidden Play widget, chosen automatically; the
header says so), in real Chromium: JupyterLab, Notebook 7 and Voila, under the ipykernel of this venv (7) and under
ipykernel 6 in a second venv the test builds once and keeps under .venv/. New log lines must reach
the page while no cell runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from conftest import PY, ROOT, wait_for
from jupyter_servers import jupyter_server
from test_browser import CHROMIUM, FLAGS, KERNEL_IDLE, TICKER, _need_browser, start

pytestmark = pytest.mark.browser

ARTIFACTS = ROOT / "test-artifacts"
IPYKERNEL6 = ROOT / ".venv" / "ipykernel6"  # built once, reused by later runs


def ipykernel6_python() -> str:
    """The interpreter of a venv with ipykernel 6 and this package (built on first use)."""
    py = IPYKERNEL6 / "bin" / "python"
    stamp = IPYKERNEL6 / ".ready"
    if not stamp.exists():
        subprocess.run([sys.executable, "-m", "venv", str(IPYKERNEL6)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "ipykernel>=6.25,<7", "ipywidgets>=8", "-e", str(ROOT)],
                       check=True, timeout=900)
        stamp.touch()
    return str(py)


def kernelspec(directory: Path, python: str) -> None:
    """A ``python3`` kernel spec in ``directory`` (first on JUPYTER_PATH) running ``python``."""
    spec = directory / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        '{"argv": ["%s", "-m", "ipykernel_launcher", "-f", "{connection_file}"], "display_name": "Python 3", '
        '"language": "python"}' % python)


@pytest.mark.parametrize("ipykernel", ["7", "6"])
@pytest.mark.parametrize("kind", ["lab", "notebook", "voila"])
def test_front_end_clock_updates_the_panel(tsm, tmp_path, kind, ipykernel):
    _need_browser()
    if kind == "voila":
        pytest.importorskip("voila")
    if kind == "notebook":
        pytest.importorskip("notebook")
    from playwright.sync_api import expect, sync_playwright

    python = sys.executable if ipykernel == "7" else ipykernel6_python()
    version = subprocess.run([python, "-c", "import ipykernel; print(ipykernel.__version__)"], capture_output=True,
                             text=True, check=True).stdout.strip()
    assert version.startswith(ipykernel + "."), version
    (tmp_path / "tick.py").write_text(TICKER)
    start(tsm, f"{PY} {tmp_path / 'tick.py'}", "--name", "ticker", "--time")
    nb_dir = tmp_path / "nb"
    nb_dir.mkdir()
    # the automatic choice: the header says which clock drives the refresh
    nb = new_notebook(cells=[new_code_cell("from tsm_notebook.notebook.panel import Panel\npanel = Panel(refresh=0.5)\npanel")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(nb_dir / "panel.ipynb"))
    kernelspec(tmp_path / "jpath", python)
    env = dict(os.environ, TSM_HOME=str(tsm.home), PYTHONPATH=str(ROOT), JUPYTER_PATH=str(tmp_path / "jpath"))
    ARTIFACTS.mkdir(exist_ok=True)

    with jupyter_server(kind, nb_dir, tmp_path, env, notebook="panel.ipynb") as (url, proc), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            page.goto(url)
            if kind != "voila":
                page.wait_for_function(KERNEL_IDLE, timeout=90_000)
                page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
            panel = page.locator(".tsm-panel")
            expect(panel).to_be_visible(timeout=90_000)
            if kind != "voila":
                page.wait_for_function(KERNEL_IDLE)  # no cell runs from here on
            log = panel.locator(".tsm-log-output pre")
            expect(log).to_contain_text("tick", timeout=30_000)
            first = max(int(n) for n in re.findall(r"tick (\d+)", log.inner_text()))
            expect(log).to_contain_text(f"tick {first + 4}:", timeout=20_000)
            expect(panel.locator(".tsm-header")).to_contain_text("front end clock", timeout=20_000)
            first = max(int(n) for n in re.findall(r"tick (\d+)", log.inner_text()))
            expect(log).to_contain_text(f"tick {first + 4}:", timeout=20_000)
            expect(panel.locator(".tsm-header")).to_contain_text("front end clock")
            page.screenshot(path=str(ARTIFACTS / f"panel-{kind}-ipykernel{ipykernel}.png"))
        finally:
            browser.close()


def test_a_front_end_tick_refreshes_on_the_calling_thread_and_the_thread_yields(tsm):
    """No browser: a Play value change (what the front end sends) refreshes the log tail at once;
    with ``tick="frontend"`` no thread runs, with ``"thread"`` no Play exists, and a bad word is refused."""
    import threading

    from tsm_notebook.core.errors import UsageError
    from tsm_notebook.notebook.logtail import LogTail

    tsm.run("start", "--name", "talk", "--", PY, "-c",
            "import time\nfor i in range(10**6):\n    print('line', i, flush=True)\n    time.sleep(0.1)", check=True)
    tail = LogTail("talk", home=tsm.home, refresh=0.5, tick="frontend")
    try:
        assert tail._thread is None and tail._play is not None and tail._play in tail.children
        assert tail._play.layout.display == "none" and tail.live
        seen: list[str] = []
        before = tail.text

        def changed() -> bool:
            tail._play.value += 1  # the browser's tick, handled on this (the kernel's main) thread
            seen.append(threading.current_thread().name)
            return tail.text != before

        wait_for(changed, timeout=10, interval=0.2, message="a front-end tick to refresh the tail")
        assert tail.clock == "front end" and set(seen) == {threading.main_thread().name}
    finally:
        tail.close()
    assert not tail.live
    threaded = LogTail("talk", home=tsm.home, refresh=0.5, tick="thread")
    try:
        assert threaded._play is None and threaded.live and threaded.clock == "thread"
    finally:
        threaded.close()
    with pytest.raises(UsageError):
        LogTail("talk", home=tsm.home, tick="sometimes")
