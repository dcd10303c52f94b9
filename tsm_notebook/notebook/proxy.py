"""Where a browser reaches a process's port: the link of a card, the panel and ``Process.url``.

In order: ``url_template`` in ``[notebook]`` of the home's ``config.toml`` (``"https://my.host/
proxy/{port}/"``), else ``<prefix>proxy/<port>/`` when the Jupyter server that serves this kernel
offers jupyter-server-proxy, else ``http://localhost:<port>``. The serving server is found from
the runtime files Jupyter writes (``jpserver-<pid>.json``): the one whose pid is an ancestor of
this process. It is asked through its API (jupyter-server-proxy answers ``server-proxy/
servers-info``); when that cannot be reached, its own interpreter is checked for the package
(a conda kernel's environment may differ from the server's), and without a server the kernel's.
Each answer is taken once per process. Nothing here imports ipywidgets or pandas.
"""

from __future__ import annotations

import functools
import glob
import importlib.util
import json
import os
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

from ..core.config import Config
from ..core.errors import UsageError
from ..core.paths import Home

__all__ = ["serving_server", "server_has_proxy", "url_template", "port_url"]


def _runtime_dirs() -> list[str]:
    dirs = [os.environ.get("JUPYTER_RUNTIME_DIR", "")]
    data = os.environ.get("JUPYTER_DATA_DIR") or os.path.join(
        os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share"), "jupyter")
    dirs.append(os.path.join(data, "runtime"))
    return [d for d in dirs if d and os.path.isdir(d)]


def _ancestors() -> set[int]:
    import psutil

    try:
        return {p.pid for p in psutil.Process().parents()}
    except psutil.Error:
        return set()


@functools.lru_cache(maxsize=1)
def serving_server() -> dict[str, Any] | None:
    """The runtime info (``url``, ``token``, ``base_url``, ``pid``, ...) of the Jupyter server that
    started this kernel, or None (not in a kernel, or the server wrote no runtime file)."""
    ancestors = _ancestors()
    for directory in _runtime_dirs():
        for path in glob.glob(os.path.join(directory, "jpserver-*.json")) + glob.glob(os.path.join(directory, "nbserver-*.json")):
            try:
                info = json.loads(Path(path).read_text())
            except (OSError, ValueError):
                continue  # a half-written or foreign file: the others still count
            if isinstance(info, dict) and isinstance(info.get("pid"), int) and info["pid"] in ancestors:
                return info
    return None


def _asks_api(info: dict[str, Any]) -> bool | None:
    url = str(info.get("url") or "")
    if not url.startswith("http"):
        return None
    req = urllib.request.Request(url.rstrip("/") + "/server-proxy/servers-info",
                                 headers={"Authorization": f"token {info.get('token') or ''}"})
    try:
        with urllib.request.urlopen(req, timeout=1.0) as r:
            return r.status == 200
    except urllib.error.HTTPError as exc:
        return False if exc.code == 404 else None
    except (OSError, ValueError):
        return None


def _server_python(pid: int) -> str | None:
    import psutil

    try:
        argv = psutil.Process(pid).cmdline()
    except psutil.Error:
        return None
    if not argv:
        return None
    if "python" in os.path.basename(argv[0]):
        return argv[0]
    try:  # a console script (jupyter-lab): its shebang names the interpreter
        with open(argv[0], "rb") as f:
            first = f.readline(512).decode("utf-8", "replace")
        if first.startswith("#!") and "python" in first:
            return first[2:].strip().split()[0]
    except OSError:
        pass
    return None


@functools.lru_cache(maxsize=1)
def server_has_proxy() -> bool:
    """True when the serving Jupyter offers jupyter-server-proxy (see the module's docstring)."""
    info = serving_server()
    if info is not None:
        answer = _asks_api(info)
        if answer is not None:
            return answer
        python = _server_python(int(info["pid"]))
        if python:
            try:
                r = subprocess.run([python, "-c", "import importlib.util as u, sys; sys.exit(u.find_spec('jupyter_server_proxy') is None)"],
                                   capture_output=True, timeout=10)
                return r.returncode == 0
            except (OSError, subprocess.TimeoutExpired):
                pass
    return importlib.util.find_spec("jupyter_server_proxy") is not None


def url_template(home: str | os.PathLike[str] | Home | None = None) -> str:
    """The template of links to ports (``{port}`` in it): the home's ``notebook.url_template``,
    else the proxy's, else localhost. Raises UsageError for a bad config file."""
    h = home if isinstance(home, Home) else Home.resolve(home)
    configured = _configured(str(h.root / "config.toml"))
    if configured:
        return configured
    if server_has_proxy():
        info = serving_server() or {}
        prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX") or str(info.get("base_url") or "/")
        return f"{prefix.rstrip('/')}/proxy/{{port}}/"
    return "http://localhost:{port}"


@functools.lru_cache(maxsize=8)
def _configured(path: str) -> str | None:
    return Config.load(Path(path)).url_template


def port_url(port: int | None, home: str | os.PathLike[str] | Home | None = None) -> str | None:
    """Where a browser reaches ``port`` (see :func:`url_template`); None for no port."""
    if port is None:
        return None
    try:
        template = url_template(home)
    except UsageError:
        template = "http://localhost:{port}"  # a bad config is reported by the commands, not by a link
    return template.replace("{port}", str(int(port)))
