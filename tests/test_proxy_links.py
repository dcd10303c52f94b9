"""Links to ports behind a proxy, in a real kernel: `url_template` in the home's config.toml makes
the card's link; the child gets its public URL and base path as TSM_URL and TSM_BASE_PATH; the
Jupyter server that serves the kernel is found from its runtime file and asked through its API."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import PY, ROOT, free_port, wait_for

pytestmark = pytest.mark.notebook


def run(tsm, tmp_path, sources, env):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    NotebookClient(nb, timeout=90, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute(
        env=env, cwd=str(tmp_path))
    return ["\n".join(o.get("text", "") + o.get("data", {}).get("text/html", "") + o.get("data", {}).get("text/plain", "")
                      for o in c.outputs) for c in nb.cells]


def test_url_template_makes_the_link_and_the_child_gets_its_url(tsm, tmp_path):
    tsm.home.mkdir(parents=True, exist_ok=True)
    (tsm.home / "config.toml").write_text('[notebook]\nurl_template = "https://lab.example/user/me/proxy/{port}/"\n')
    port = free_port()
    serve = f"echo URL=$TSM_URL BASE=$TSM_BASE_PATH; exec {PY} -m http.server $PORT --bind 127.0.0.1"
    out = run(tsm, tmp_path, ["%load_ext tsm_notebook", f'web = %tsm start "{serve}" --name web --port {port} --wait-port\nweb',
                              "print(web.url)"], tsm.env)
    url = f"https://lab.example/user/me/proxy/{port}/"
    assert f'href="{url}"' in out[1] and out[2].strip() == url
    log = tsm.proc_dir(f"web-{port}") / "current.out"
    wait_for(lambda: f"URL={url} BASE=/user/me/proxy/{port}/" in log.read_text(), message="the child's TSM_URL")


def test_the_serving_server_is_found_and_asked(tsm, tmp_path):
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    port = free_port()
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(runtime), JUPYTER_CONFIG_DIR=str(tmp_path / "config"))
    server = subprocess.Popen([str(ROOT / ".venv" / "bin" / "jupyter"), "server", "--no-browser", f"--port={port}",
                               "--ServerApp.port_retries=0", "--ServerApp.ip=127.0.0.1", "--IdentityProvider.token=t0k",
                               *(["--allow-root"] if os.geteuid() == 0 else [])],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        info_file = wait_for(lambda: next(iter(runtime.glob("jpserver-*.json")), None), timeout=60, interval=0.1,
                             message="the server's runtime file")
        info = json.loads(info_file.read_text())
        # the kernel below is this test's child: a runtime file naming this process as the server
        # (with the real server's URL and token) stands for the server that started it
        (runtime / f"jpserver-{os.getpid()}.json").write_text(json.dumps({**info, "pid": os.getpid()}))
        kenv = dict(tsm.env, JUPYTER_RUNTIME_DIR=str(runtime))
        out = run(tsm, tmp_path, [
            "from tsm_notebook.notebook import proxy\n"
            "s = proxy.serving_server()\nprint('SERVER', s and s['url'])\nprint('PROXY', proxy._asks_api(s))"], kenv)
        assert re.search(rf"SERVER http://127\.0\.0\.1:{port}/", out[0]), out[0]
        assert "PROXY False" in out[0]  # a real answer from the server's API: no jupyter-server-proxy there
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
