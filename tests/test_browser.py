"""The panel in a real JupyterLab page, in headless Chromium driven by Playwright: it renders real
processes, a click on restart changes the pid shown, and new log lines arrive while no cell runs.

Chromium is Debian's package (``make test`` installs it when missing). Without it the test skips,
except under CI (``$CI`` set), where a missing browser is a failure: the browser test must run there.
A screenshot of the panel is saved under ``test-artifacts/``; with ``TSM_UPDATE_DOCS=1`` it is also
copied to ``docs/panel.png``.
"""

from __future__ import annotations

import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from conftest import PY, ROOT, free_port
from jupyter_servers import jupyter_server
from tsm_notebook.client import commands

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = ROOT / "test-artifacts"
# Needs --LabApp.expose_app_in_browser. The toolbar's "idle" is not enough: it reads idle before
# any kernel exists, and running cells then opens a "Select Kernel" dialog.
KERNEL_IDLE = """() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const c = w && w.sessionContext, k = c && c.session && c.session.kernel;
  return !!k && c.isReady && k.status === 'idle' && k.connectionStatus === 'connected'; }"""

TICKER = """\
import itertools, sys, time
for i in itertools.count():
    print(f"tick {i}: all good", flush=True)
    if i % 7 == 3:
        print(f"warning {i}: slow upstream", file=sys.stderr, flush=True)
    time.sleep(0.3)
"""
CRASHY = "import sys, time\ntime.sleep(0.2)\nprint('cannot connect to the queue', file=sys.stderr)\nsys.exit(1)\n"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _need_browser() -> None:
    """Skip when no browser is here, unless under CI, where that is a failure."""
    problems = []
    if not os.path.exists(CHROMIUM):
        problems.append(f"chromium not found at {CHROMIUM} (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problems.append("playwright is not installed (pip install -e '.[test]')")
    if problems:
        if _in_ci():
            pytest.fail("browser test cannot run under CI: " + "; ".join(problems))
        pytest.skip("; ".join(problems))


@contextmanager
def lab(root_dir: Path, tmp_path: Path, env: dict[str, str]):
    """JupyterLab serving ``root_dir`` (see :func:`jupyter_servers.jupyter_server`); yields its URL."""
    with jupyter_server("lab", root_dir, tmp_path, env) as (url, _proc):
        yield url


def start(tsm, command: str, *extra: str) -> dict:
    return commands.start(tsm.client, commands.spec_from_args(commands.parse(["start", command, *extra])))


def number(text: str) -> int:
    m = re.search(r"\d+", text)
    assert m, f"no number in {text!r}"
    return int(m.group())


def test_panel_in_jupyterlab(tsm, tmp_path):
    _need_browser()
    from playwright.sync_api import expect, sync_playwright

    (tsm.home / "config.toml").write_text('[history]\nsample_interval = "0.5s"\n[daemon]\nlaunch_window = "50ms"\n')
    (tmp_path / "tick.py").write_text(TICKER)
    (tmp_path / "crashy.py").write_text(CRASHY)
    start(tsm, f"{PY} {tmp_path / 'tick.py'}", "--name", "ticker", "--time")  # id 0: selected by default
    web_port = free_port()
    start(tsm, f"{PY} -m http.server {web_port} --bind 127.0.0.1", "--name", "web", "--port", str(web_port))
    start(tsm, f"{PY} {tmp_path / 'crashy.py'}", "--name", "worker", "--max-restarts", "2")
    start(tsm, "sleep 600", "--name", "batch")
    tsm.call("stop", target="batch")
    tsm.wait_status("worker", "errored", timeout=20)

    nb_dir = tmp_path / "nb"
    nb_dir.mkdir()
    nb = new_notebook(cells=[new_code_cell("from tsm_notebook.notebook.panel import Panel\npanel = Panel(refresh=0.5)\npanel")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(nb_dir / "panel.ipynb"))
    ARTIFACTS.mkdir(exist_ok=True)
    env = dict(os.environ, TSM_HOME=str(tsm.home), PYTHONPATH=str(ROOT))  # the kernel inherits both

    with lab(nb_dir, tmp_path, env) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)  # a fresh temporary profile
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(30_000)
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{base}/lab/tree/panel.ipynb?token=test-token")
            page.wait_for_function(KERNEL_IDLE, timeout=60_000)
            page.evaluate("window.jupyterapp.commands.execute('application:toggle-left-area')")
            page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")

            panel = page.locator(".tsm-panel")
            expect(panel).to_be_visible()
            table = panel.locator(".tsm-status-table")
            for name in ("ticker", f"web-{web_port}", "worker", "batch"):
                expect(table.locator(f'tr[data-name="{name}"]')).to_be_visible()
            expect(table.locator('tr[data-name="ticker"] .tsm-status-online')).to_be_visible()
            expect(table.locator('tr[data-name="worker"] .tsm-status-errored')).to_be_visible()
            expect(table.locator('tr[data-name="batch"] .tsm-status-stopped')).to_be_visible()
            link = table.locator(f'tr[data-name="web-{web_port}"] a.tsm-port')
            expect(link).to_have_text(str(web_port))
            assert link.get_attribute("href") in (f"http://localhost:{web_port}", f"/proxy/{web_port}/")
            page.wait_for_function(KERNEL_IDLE)  # the cell has finished: from now on no code runs

            # new log lines arrive with no cell running: the panel's thread sets the value
            log = panel.locator(".tsm-log-output pre")
            expect(log).to_contain_text("tick")
            first = max(int(n) for n in re.findall(r"tick (\d+)", log.inner_text()))
            expect(log).to_contain_text(f"tick {first + 3}:", timeout=15_000)
            assert page.evaluate(KERNEL_IDLE)

            # restart: the pid shown changes, and it is the daemon's new pid
            pid_cell = panel.locator(".tsm-detail .tsm-pid")
            old = number(pid_cell.inner_text())
            assert old == tsm.row("ticker")["pid"]
            panel.locator("button.tsm-restart").click()
            expect(pid_cell).not_to_have_text(str(old), timeout=15_000)
            expect(panel.locator(".tsm-message")).to_contain_text("restarted ticker", timeout=15_000)
            new = number(pid_cell.inner_text())
            assert new != old and new == tsm.row("ticker")["pid"]
            expect(table.locator('tr[data-name="ticker"] .tsm-pid')).to_have_text(str(new))
            expect(panel.locator(".tsm-charts svg path.line")).to_have_count(2, timeout=15_000)

            page.wait_for_timeout(600)  # let the charts take one more sample for the picture
            shot = ARTIFACTS / "panel.png"
            panel.screenshot(path=str(shot))
            page.screenshot(path=str(ARTIFACTS / "panel-page.png"))
            if os.environ.get("TSM_UPDATE_DOCS"):
                shutil.copyfile(shot, ROOT / "docs" / "panel.png")
            assert not errors, errors
        finally:
            browser.close()
