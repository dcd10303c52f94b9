"""The Python API (`import tsm_notebook as tsm`) against a real daemon and real children, and the
package's exported names (kept complete by a test, as httpx does)."""

from __future__ import annotations

import os
import pkgutil
import socket
import subprocess
import sys
import threading

import pytest

import tsm_notebook
from conftest import PY, ROOT, accepts, pid_alive, wait_for
from tsm_notebook.notebook import api
from tsm_notebook.notebook.html import port_url  # /proxy/<port>/ when jupyter-server-proxy is installed
from tsm_notebook.core.errors import PortInUse, ProcessExists, ProcessNotFound, StartFailed, TsmError, UsageError
from tsm_notebook.core.spec import build_spec
from tsm_notebook.notebook.api import shared_client

SLEEP = [PY, "-c", "import time; time.sleep(600)"]


# ---------------------------------------------------------------------- exported names


def _submodules() -> set[str]:
    return {m.name for m in pkgutil.iter_modules(tsm_notebook.__path__)}


def test_all_names_resolve_and_dir_agrees():
    for name in tsm_notebook.__all__:
        assert getattr(tsm_notebook, name) is not None, name
    public = {n for n in dir(tsm_notebook) if not n.startswith("_")} - _submodules()
    assert public == set(tsm_notebook.__all__) - {"__version__"}
    assert len(tsm_notebook.__all__) == len(set(tsm_notebook.__all__))


def test_exported_names_are_not_shadowed_by_submodules():
    # `import tsm_notebook.<module>` sets an attribute of that name: it must not be an export
    assert not (set(tsm_notebook.__all__) & _submodules())


def test_every_public_function_and_class_has_a_docstring():
    for name in tsm_notebook.__all__:
        obj = getattr(tsm_notebook, name)
        if callable(obj):
            assert (obj.__doc__ or "").strip(), name
    from tsm_notebook.notebook import magics

    for module in (api, magics):
        for name in module.__all__:
            obj = getattr(module, name)
            if callable(obj):
                assert (obj.__doc__ or "").strip(), f"{module.__name__}.{name}"


def test_unknown_attribute_raises_attribute_error():
    with pytest.raises(AttributeError):
        tsm_notebook.no_such_thing  # noqa: B018


def test_import_is_light():
    code = (
        "import sys, tsm_notebook as t; t.start; t.Process; t.TsmError; "
        "heavy = [m for m in ('pandas', 'IPython', 'ipywidgets') if m in sys.modules]; "
        "assert not heavy, heavy; print('ok')"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


# ---------------------------------------------------------------------- lifecycle


def test_lifecycle_through_the_api(tsm, port):
    p = tsm_notebook.start(f"{PY} -m http.server {port} --bind 127.0.0.1", name="web", wait_port=True, home=tsm.home)
    assert isinstance(p, tsm_notebook.Process)
    assert (p.name, p.port, p.status) == (f"web-{port}", port, "online")
    assert pid_alive(p.pid) and accepts(port)
    assert p.url == port_url(port)
    assert p.out_log.endswith("current.out") and p.err_log.endswith("current.err")
    assert repr(p).startswith(f"Process(name='web-{port}', tsm_id={p.tsm_id}, pid={p.pid}, port={port}, status='online'")

    card = p._repr_html_()
    for needle in (f"web-{port}", str(p.pid), f'href="{port_url(port)}"', "online", p.out_log, p.err_log, "http.server"):
        assert needle in card, needle

    same = tsm_notebook.describe(p.name, home=tsm.home)
    assert (same.tsm_id, same.pid) == (p.tsm_id, p.pid)
    assert tsm_notebook.describe(str(p.tsm_id), home=tsm.home).name == p.name
    assert p.refresh().pid == p.pid

    [stopped] = tsm_notebook.stop(p.name, home=tsm.home)
    assert stopped.status == "stopped" and stopped.pid is None
    wait_for(lambda: not pid_alive(p.pid), message="the server to be gone")

    [again] = tsm_notebook.restart(p.name, home=tsm.home)
    assert again.status == "online" and again.pid != p.pid and pid_alive(again.pid)
    wait_for(lambda: accepts(port), message="the restarted server to listen")

    [gone] = tsm_notebook.delete(p.name, home=tsm.home)
    assert gone.status == "deleted" and gone.name == p.name and gone.pid is None
    assert "deleted" in gone._repr_html_()
    wait_for(lambda: not pid_alive(again.pid), message="the deleted server to be gone")
    with pytest.raises(ProcessNotFound):
        again.refresh()
    assert tsm.call("ls", all=True) == []


def test_process_methods_act_on_the_process(tsm):
    p = tsm_notebook.start(SLEEP, name="nap", home=tsm.home)
    assert p.command.startswith(PY)
    stopped = p.stop()
    assert stopped.status == "stopped"
    started = stopped.restart()
    assert started.status == "online" and started.pid != p.pid
    assert started.delete().status == "deleted"


def test_argv_and_list_command_are_the_same(tsm):
    a = tsm_notebook.start(SLEEP, name="a", home=tsm.home)
    b = tsm_notebook.start(argv=SLEEP, name="b", home=tsm.home)
    assert a.as_dict()["argv"] == b.as_dict()["argv"] == SLEEP
    with pytest.raises(UsageError):
        tsm_notebook.start(SLEEP, argv=SLEEP, name="c", home=tsm.home)


def test_numbers_are_seconds_and_bytes_strings_take_units(tsm):
    p = tsm_notebook.start(SLEEP, name="num", kill_timeout=0.5, min_uptime=2, restart_delay=0.25,
                           max_memory=300 * 1024 * 1024, stop_signal="INT", autorestart=False, home=tsm.home)
    row = p.as_dict()
    assert (row["kill_timeout"], row["min_uptime"], row["restart_delay"]) == (0.5, 2.0, 0.25)
    assert row["max_memory"] == 300 * 1024 * 1024 and row["stop_signal"] == "SIGINT" and row["autorestart"] is False
    q = tsm_notebook.start(SLEEP, name="str", kill_timeout="300ms", max_memory="1G", home=tsm.home)
    assert (q.as_dict()["kill_timeout"], q.as_dict()["max_memory"]) == (0.3, 1024**3)


def test_env_mapping_and_cwd_reach_the_child(tsm, tmp_path):
    code = "import os; print(os.environ['GREETING'], os.getcwd(), 'MPLBACKEND' in os.environ, flush=True); import time; time.sleep(600)"
    p = tsm_notebook.start([PY, "-c", code], name="env", env={"GREETING": "hello"}, cwd=tmp_path, home=tsm.home)
    # print() writes its arguments one by one (unbuffered): wait for the whole line
    out = wait_for(lambda: (lambda t: t.endswith("\n") and t.strip())(open(p.out_log).read()), message="the child's line")
    assert out == f"hello {tmp_path} False"
    lines = p.logs()
    assert isinstance(lines, api.LogLines) and repr(lines) == f"out | hello {tmp_path} False"
    assert [line.text for line in tsm_notebook.logs(p.name, stream="out", home=tsm.home)] == [out]


# ---------------------------------------------------------------------- errors


def test_errors_are_the_exception_tree(tsm, port):
    with pytest.raises(ProcessNotFound) as exc:
        tsm_notebook.stop("ghost", home=tsm.home)
    assert exc.value.target == "ghost"
    for fn in (tsm_notebook.restart, tsm_notebook.delete, tsm_notebook.describe):
        with pytest.raises(ProcessNotFound):
            fn("ghost", home=tsm.home)
    with pytest.raises(UsageError):
        tsm_notebook.describe("all", home=tsm.home)
    with pytest.raises(UsageError):
        tsm_notebook.start(SLEEP, max_memory="lots", home=tsm.home)
    with pytest.raises(UsageError):
        tsm_notebook.start("no-such-program-here --flag", home=tsm.home)

    first = tsm_notebook.start(SLEEP, name="dup", home=tsm.home)
    again = tsm_notebook.start(SLEEP, name="dup", home=tsm.home)  # re-running is safe: the same one
    assert (again.tsm_id, again.pid, again.as_dict()["action"]) == (first.tsm_id, first.pid, "unchanged")
    with pytest.raises(ProcessExists) as exists:  # the daemon's plain start still refuses
        shared_client(tsm.home).call("start", spec=build_spec(argv=SLEEP, name="dup").to_dict(), env={})
    assert exists.value.name == "dup"

    with pytest.raises(StartFailed) as failed:
        tsm_notebook.start([PY, "-c", "import sys; sys.stderr.write('boom\\n'); sys.exit(3)"], name="bad", home=tsm.home)
    assert failed.value.exit_code == 3 and "boom" in failed.value.stderr

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        with pytest.raises(PortInUse) as held:
            tsm_notebook.start(SLEEP, name="busy", port=port, home=tsm.home)
        assert held.value.port == port
    assert all(issubclass(e, TsmError) for e in (PortInUse, ProcessExists, ProcessNotFound, StartFailed, UsageError))


# ---------------------------------------------------------------------- daemon-wide calls


def test_ping_save_resurrect_patrol_flush_kill(tsm):
    info = tsm_notebook.ping(home=tsm.home)
    assert pid_alive(info["pid"]) and info["home"] == str(tsm.home)
    p = tsm_notebook.start(SLEEP, name="keep", home=tsm.home)
    saved = tsm_notebook.save(home=tsm.home)
    assert saved["count"] == 1 and os.path.exists(saved["path"])
    assert tsm_notebook.resurrect(home=tsm.home) == {"started": [], "skipped": ["keep"], "failed": {}}
    assert set(tsm_notebook.patrol(home=tsm.home)) == {"found", "fixed"}
    assert tsm_notebook.flush(home=tsm.home) == ["keep"]
    assert api.rotate_logs("keep", home=tsm.home) == ["keep"]
    assert [x.name for x in api.describe_all(home=tsm.home)] == ["keep"]

    updated = tsm_notebook.update(home=tsm.home)
    assert updated["old_pid"] == info["pid"] and updated["new_pid"] != info["pid"] and updated["processes"] == ["keep"]

    assert tsm_notebook.kill(home=tsm.home) == updated["new_pid"]
    assert not pid_alive(updated["new_pid"])
    wait_for(lambda: not pid_alive(p.pid), message="the process to go with the daemon")
    assert tsm_notebook.kill(home=tsm.home) is None  # nothing runs: no daemon is started to be killed


# ---------------------------------------------------------------------- the shared client


def test_one_client_per_home_shared_by_threads(tsm, tmp_path):
    c = api.shared_client(tsm.home)
    assert api.shared_client(str(tsm.home)) is c
    other = tmp_path / "other"
    assert api.shared_client(other) is not c
    tsm_notebook.start(SLEEP, name="t", home=tsm.home)

    errors: list[BaseException] = []
    counts = []

    def hammer() -> None:
        try:
            n = 0
            for _ in range(40):
                assert api.shared_client(tsm.home).call("ls")[0]["name"] == "t"
                assert tsm_notebook.describe("t", home=tsm.home).name == "t"
                n += 1
            counts.append(n)
        except BaseException as exc:  # noqa: BLE001  (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert counts == [40] * 8


def test_home_follows_the_environment(tsm, monkeypatch):
    monkeypatch.setenv("TSM_HOME", str(tsm.home))
    p = tsm_notebook.start(SLEEP, name="envhome")
    assert tsm.row("envhome")["pid"] == p.pid
    assert p.home.root == tsm.home


def test_card_escapes_every_value():
    row = {"name": "a<b", "tsm_id": 3, "pid": None, "port": None, "status": "errored", "uptime": None,
           "command": "echo '<script>alert(1)</script>' && x", "cwd": "/tmp/<d>", "out_log": "/o&", "err_log": None}
    card = api.process_card(row)
    assert "<script>" not in card and "&lt;script&gt;" in card and "a&lt;b" in card and "/o&amp;" in card
    assert "errored" in card
    p = tsm_notebook.Process(row)
    assert (p.url, p.pid, p.restarts, p.memory) == (None, None, 0, None)
    assert repr(p) == "Process(name='a<b', tsm_id=3, pid=None, port=None, status='errored', uptime='-')"
