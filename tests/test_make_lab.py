"""`make lab`, the README's first command: JupyterLab on notebooks/, its URL printed."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.request

import psutil

from conftest import ROOT, free_port, pid_alive, wait_for


def test_make_lab_serves_the_notebooks(tmp_path):
    port = free_port()
    env = dict(os.environ)
    for var in ("JUPYTER_CONFIG_DIR", "JUPYTER_RUNTIME_DIR", "JUPYTERLAB_SETTINGS_DIR", "JUPYTERLAB_WORKSPACES_DIR"):
        env[var] = str(tmp_path / var.lower())
    env["TSM_HOME"] = str(tmp_path / "home")
    log = tmp_path / "lab.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["make", "-s", "lab", f"LAB_ARGS=--ServerApp.port={port} --ServerApp.port_retries=0"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
    pids: list[int] = []
    try:
        url = wait_for(lambda: re.search(rf"http://127\.0\.0\.1:{port}/lab\?token=\w+", log.read_text(errors="replace")),
                       timeout=90, interval=0.2, message="make lab to print its URL").group(0)
        pids = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
        token = url.split("token=")[1]
        req = urllib.request.Request(f"http://127.0.0.1:{port}/api/contents", headers={"Authorization": f"token {token}"})
        listing = json.load(urllib.request.urlopen(req, timeout=10))
        names = {item["name"] for item in listing["content"]}
        assert {"01-quickstart.ipynb", "02-monitoring.ipynb", "03-recipes.ipynb"} <= names
        # a kernel of this server finds the venv's programs (`tsm`, `uvicorn`) first on PATH
        start = urllib.request.Request(f"http://127.0.0.1:{port}/api/kernels", data=b"{}", method="POST",
                                       headers={"Authorization": f"token {token}", "Content-Type": "application/json"})
        json.load(urllib.request.urlopen(start, timeout=30))

        def kernel():
            for p in psutil.Process(proc.pid).children(recursive=True):
                try:
                    if any("ipykernel" in a for a in p.cmdline()):
                        return p
                except psutil.Error:  # a short-lived helper of the server, gone or a zombie by now
                    continue
            return None

        k = wait_for(kernel, timeout=30, interval=0.1, message="a kernel process")
        pids = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
        first = k.environ()["PATH"].split(os.pathsep)[0]
        assert os.path.realpath(first) == os.path.realpath(ROOT / ".venv" / "bin")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server shuts its kernels down on SIGTERM
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
            time.sleep(0.05)
        for p in pids:
            if pid_alive(p):
                os.kill(p, signal.SIGKILL)
        assert not any(pid_alive(p) for p in pids)
