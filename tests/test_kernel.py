"""The kernel never hosts the processes: a server started with `%tsm start` in a real kernel
(executed by nbclient) survives a restart of that kernel with the same id and pid, and is seen by
the `tsm` command line and by a second kernel."""

from __future__ import annotations

import json
import re
import urllib.request

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.util import run_sync

from conftest import PY, accepts, free_port, pid_alive, wait_for
from tsm_notebook.notebook.html import port_url  # /proxy/<port>/ when jupyter-server-proxy is installed

pytestmark = pytest.mark.notebook


def stdout_of(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream" and o.name == "stdout")


def html_of(cell) -> str:
    return "".join(o.get("data", {}).get("text/html", "") for o in cell.outputs if "data" in o)


def grab(pattern: str, text: str) -> str:
    m = re.search(pattern, text)
    assert m, f"{pattern!r} not in {text!r}"
    return m.group(1)


def notebook(*sources: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])


def test_a_server_outlives_the_kernel_that_started_it(tsm, tmp_path):
    port = free_port()
    name = f"web-{port}"
    nb = notebook(
        # --- run in the first kernel
        "%load_ext tsm_notebook",
        f'web = %tsm start "{PY} -m http.server {port} --bind 127.0.0.1" --name web --wait-port\nweb',
        "import os\nprint('PID', web.pid, 'ID', web.tsm_id, 'KERNEL', os.getpid())",
        "%tsm ls",
        # a request makes http.server log a line; the daemon writes it to the process's log
        "import time, urllib.request\n"
        f"urllib.request.urlopen('http://127.0.0.1:{port}/').read()\n"
        "deadline = time.monotonic() + 10\n"
        "while True:\n"
        f"    logs = %tsm logs {name}\n"
        "    if 'GET / HTTP' in repr(logs) or time.monotonic() > deadline:\n"
        "        break\n"
        "    time.sleep(0.05)\n"
        "print(repr(logs))",
        # --- run in the restarted kernel
        "%load_ext tsm_notebook",
        f"again = %tsm describe {name}\n"
        "import os\nprint('PID', again.pid, 'ID', again.tsm_id, 'STATUS', again.status, 'KERNEL', os.getpid())",
        f"%tsm describe {name}",
    )
    restart_at = 5
    client = NotebookClient(nb, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    with client.setup_kernel(env=tsm.env, cwd=str(tmp_path)):
        for index in range(restart_at):
            client.execute_cell(nb.cells[index], index)
        # the kernel's whole process group dies here, as when a user restarts it
        run_sync(client.km.restart_kernel)(now=True)
        run_sync(client.kc.wait_for_ready)(timeout=60)
        for index in range(restart_at, len(nb.cells)):
            client.execute_cell(nb.cells[index], index)

    first = stdout_of(nb.cells[2])
    pid, tsm_id, kernel = int(grab(r"PID (\d+)", first)), int(grab(r"\bID (\d+)", first)), int(grab(r"KERNEL (\d+)", first))
    assert f"{name}" in html_of(nb.cells[1]) and f'href="{port_url(port)}"' in html_of(nb.cells[1])
    assert name in html_of(nb.cells[3])  # the DataFrame of `%tsm ls`
    assert "GET / HTTP" in stdout_of(nb.cells[4])

    second = stdout_of(nb.cells[6])
    assert int(grab(r"KERNEL (\d+)", second)) != kernel and not pid_alive(kernel)  # really a new kernel
    assert (int(grab(r"PID (\d+)", second)), int(grab(r"\bID (\d+)", second))) == (pid, tsm_id)
    assert grab(r"STATUS (\w+)", second) == "online"
    assert str(pid) in html_of(nb.cells[7])
    assert pid_alive(pid) and accepts(port)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
        assert r.status == 200

    # the command line sees the same process
    rows = json.loads(tsm.run("ls", "--json", check=True).stdout)
    assert [(r["name"], r["tsm_id"], r["pid"], r["status"]) for r in rows] == [(name, tsm_id, pid, "online")]

    # and so does a second kernel, which can stop it
    other = notebook(
        "import tsm_notebook as tsm\n"
        f"p = tsm.describe({name!r})\nprint('PID', p.pid, 'ID', p.tsm_id)",
        f"%load_ext tsm_notebook\n%tsm stop {name}",
    )
    NotebookClient(other, timeout=60, kernel_name="python3").execute(env=tsm.env, cwd=str(tmp_path))
    seen = stdout_of(other.cells[0])
    assert (int(grab(r"PID (\d+)", seen)), int(grab(r"\bID (\d+)", seen))) == (pid, tsm_id)
    wait_for(lambda: not pid_alive(pid), message="the server stopped from the second kernel to be gone")
    assert tsm.row(name)["status"] == "stopped"
