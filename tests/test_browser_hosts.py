"""The panel across two loopback ssh hosts in a real JupyterLab page, in headless Chromium: both
hosts' processes are listed with a host column, a restart goes to its own host, and a host whose
sshd stops is shown as unreachable while the other stays live."""

from __future__ import annotations

import os

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from conftest import PY, ROOT
from test_browser import CHROMIUM, FLAGS, KERNEL_IDLE, _need_browser, lab
from test_hosts import ok  # (the fixture of two loopback sshd hosts, `hosts`, is in conftest)
from sshd import have_sshd

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif((not have_sshd() or os.getuid() != 0) and not os.environ.get("CI"), reason="needs openssh-server and root")]


def test_panel_across_hosts_in_jupyterlab(tsm, hosts, tmp_path):  # noqa: F811
    _need_browser()
    from playwright.sync_api import expect, sync_playwright

    ok(tsm.run("-H", "a", "start", "--name", "alpha", "--", PY, "-c", "import time; time.sleep(600)"))
    ok(tsm.run("-H", "b", "start", "--name", "beta", "--", PY, "-c", "import time; time.sleep(600)"))
    nb_dir = tmp_path / "nb"
    nb_dir.mkdir()
    nb = new_notebook(cells=[new_code_cell(
        "from tsm_notebook.notebook.panel import Panel\npanel = Panel(hosts='a,b', refresh=0.5)\npanel")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(nb_dir / "hosts.ipynb"))
    env = dict(os.environ, TSM_HOME=str(tsm.home), PYTHONPATH=str(ROOT))  # TSM_SSH_CONTROL_DIR too

    with lab(nb_dir, tmp_path, env) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(30_000)
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{base}/lab/tree/hosts.ipynb?token=test-token")
            page.wait_for_function(KERNEL_IDLE, timeout=60_000)
            page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")

            panel = page.locator(".tsm-panel")
            expect(panel).to_be_visible()
            table = panel.locator(".tsm-status-table")
            expect(table.locator("th.tsm-host")).to_have_text("host")
            for host, name in (("a", "a:alpha"), ("b", "b:beta")):
                row = table.locator(f'tr[data-name="{name}"]')
                expect(row.locator(".tsm-status-online")).to_be_visible()
                expect(row.locator("td.tsm-host")).to_have_text(host)
            page.wait_for_function(KERNEL_IDLE)

            # the selected process (the first, a:alpha) restarts on host a, and only there
            panel.locator("button.tsm-restart").click()
            expect(panel.locator(".tsm-message")).to_contain_text("restarted a:alpha", timeout=20_000)
            assert "restarts           1" in ok(tsm.run("-H", "a", "describe", "alpha"))
            assert "restarts           0" in ok(tsm.run("-H", "b", "describe", "beta"))

            hosts.servers["b"].stop()
            expect(table.locator('tr[data-name="b:(unreachable)"]')).to_contain_text("unreachable", timeout=30_000)
            expect(table.locator('tr[data-name="a:alpha"] .tsm-status-online')).to_be_visible()
            assert page.evaluate(KERNEL_IDLE)
            assert not errors, errors
        finally:
            browser.close()
