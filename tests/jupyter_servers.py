"""A real Jupyter server for the browser tests: JupyterLab, Notebook 7 or Voila on a free loopback
port, with private config, runtime, settings and workspace directories (nothing of the user's is read
or written), a fixed token, and a clean stop: SIGTERM (the server shuts its kernels down), then
whatever it left is killed by pid and checked gone."""

from __future__ import annotations

import socket
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import psutil

from conftest import free_port, wait_for

TOKEN = "test-token"
_QUIET_LAB = {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}  # no "news?" toast


def _args(kind: str, root_dir: Path, port: int, notebook: str) -> tuple[list[str], str]:
    """The server's command line and the URL of ``notebook`` on it (the server's root for "lab"
    when ``notebook`` is empty)."""
    common = ["--no-browser", f"--port={port}", "--ServerApp.port_retries=0" if kind != "voila" else "--port_retries=0"]
    base = f"http://127.0.0.1:{port}"
    if kind == "voila":
        return ([sys.executable, "-m", "voila", str(root_dir / notebook), *common, "--Voila.ip=127.0.0.1",
                 "--ServerApp.ip=127.0.0.1"], base + "/")
    app = "jupyterlab" if kind == "lab" else "notebook"
    args = [sys.executable, "-m", app, "--allow-root", "--ip=127.0.0.1", *common, f"--IdentityProvider.token={TOKEN}",
            "--ServerApp.password=", f"--ServerApp.root_dir={root_dir}"]
    if kind == "lab":
        # expose_app_in_browser: the tests read the kernel's state from window.jupyterapp
        args += ["--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None",
                 "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
        url = f"{base}/lab/tree/{notebook}?token={TOKEN}" if notebook else base
    else:
        args += ["--JupyterNotebookApp.expose_app_in_browser=True"]
        url = f"{base}/notebooks/{notebook}?token={TOKEN}"
    return args, url


@contextmanager
def jupyter_server(kind: str, root_dir: Path, tmp_path: Path, env: dict[str, str], notebook: str = "",
                   timeout: float = 90) -> Iterator[tuple[str, subprocess.Popen]]:
    """Run ``kind`` ("lab", "notebook" or "voila") serving ``root_dir``; yields (URL, process). The
    URL opens ``notebook`` (a file in ``root_dir``), or is the server's root for "lab" without one."""
    import json

    port = free_port()
    (tmp_path / "cfg" / "labconfig").mkdir(parents=True)
    (tmp_path / "cfg" / "labconfig" / "page_config.json").write_text(json.dumps(_QUIET_LAB))
    env = dict(env, JUPYTER_CONFIG_DIR=str(tmp_path / "cfg"), JUPYTER_RUNTIME_DIR=str(tmp_path / "rt"),
               JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "settings"), JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "ws"))
    args, url = _args(kind, root_dir, port, notebook)
    log = tmp_path / f"{kind}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    kids: list[psutil.Process] = []
    try:
        def listening() -> bool:
            assert proc.poll() is None, f"{kind} exited:\n{log.read_text()}"
            try:  # TCP, not HTTP: nothing is asked of the server before it is ready
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                return False

        wait_for(listening, timeout=timeout, interval=0.2, message=f"{kind} to listen")
        yield url, proc
    finally:
        if proc.poll() is None:
            try:
                kids = psutil.Process(proc.pid).children(recursive=True)
            except psutil.Error:
                pass
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        for k in kids:  # kernels it did not shut down, by pid
            try:
                k.kill()
                k.wait(5)
            except psutil.Error:
                pass
        assert not [k.pid for k in kids if k.is_running() and k.status() != psutil.STATUS_ZOMBIE]
