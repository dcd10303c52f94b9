"""The client's side of the protocol: replies matched to request ids, an interrupted call drops its
connection, a request lost with its connection is re-sent only if it changes nothing. Real
sockets: a real daemon, or a listener in a thread that misbehaves on purpose."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading

import pytest

from conftest import free_port, wait_for
from tsm_notebook.client.client import Client
from tsm_notebook.core.errors import DaemonError
from tsm_notebook.core.paths import Home
from tsm_notebook.core.spec import build_spec


class Listener:
    """A listener on the home's socket; ``answer(request) -> [reply lines]`` (none: hang up)."""

    def __init__(self, home: Home, answer):
        home.ensure()
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.bind(str(home.socket))
        self.sock.listen(16)
        self.requests: list[dict] = []
        self.answer = answer
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                f = conn.makefile("rwb")
                line = f.readline()
                if not line:
                    continue
                req = json.loads(line)
                self.requests.append(req)
                for reply in self.answer(req):
                    f.write(json.dumps(reply).encode() + b"\n")
                f.flush()
                f.close()  # the file holds the socket open past the with block

    def close(self):
        self.sock.close()


@pytest.fixture
def home(tsm):
    h = Home(tsm.home)
    yield h
    h.socket.unlink(missing_ok=True)


def _reply(rid, result):
    from tsm_notebook import __version__

    return {"v": 1, "id": rid, "ok": True, "result": result, "daemon": __version__}


def test_a_non_idempotent_request_is_not_resent_after_a_dropped_connection(home):
    srv = Listener(home, lambda req: [])  # reads the request, hangs up without a reply
    try:
        with Client(home, autostart=False, timeout=10) as c:
            with pytest.raises(DaemonError, match="may or may not"):
                c.call("restart", target="web")
        assert [r["cmd"] for r in srv.requests] == ["restart"]
    finally:
        srv.close()


def test_an_idempotent_request_is_resent_once(home):
    srv = Listener(home, lambda req: [] if len(srv.requests) == 1 else [_reply(req["id"], "pong")])
    try:
        with Client(home, autostart=False, timeout=10) as c:
            assert c.call("ping") == "pong"
        assert [r["cmd"] for r in srv.requests] == ["ping", "ping"]
    finally:
        srv.close()


def test_a_late_reply_to_another_id_is_skipped(home):
    srv = Listener(home, lambda req: [_reply(req["id"] - 1, "stale"), _reply(req["id"], "fresh")])
    try:
        with Client(home, autostart=False, timeout=10) as c:
            assert c.call("ping") == "fresh"
    finally:
        srv.close()


def test_an_interrupted_call_does_not_poison_the_next_one(tsm):
    port = free_port()
    tsm.run("start", "sleep 600", "--name", "b", check=True)
    spec = build_spec("sleep 601", name="a", port=port, wait_port=True).to_dict()
    c = Client(tsm.home, timeout=20)

    def interrupt(*_):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.5)
        with pytest.raises(KeyboardInterrupt):
            c.call("start", spec=spec, env={})  # waits for a port nobody opens
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert c.call("describe", target="b")[0]["name"] == "b"
    assert c.call("ls")[0]["name"] in ("a-%d" % port, "b")
    c.call("stop", target=f"a-{port}")
    c.close()


def test_ctrl_c_during_a_cli_call_exits_130_quietly(tsm):
    port = free_port()
    tsm.run("ping", check=True)
    p = subprocess.Popen([sys.executable, "-m", "tsm_notebook", "start", "sleep 600", "--name", "i",
                          "--port", str(port), "--wait-port"], env=tsm.env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    wait_for(lambda: any(r["name"] == f"i-{port}" for r in tsm.call("ls")), timeout=20, message="the launch")
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 130 and "Traceback" not in err, err
    tsm.call("stop", target=f"i-{port}")


def test_a_long_request_waits_past_the_clients_timeout_and_only_that_one(tsm):
    """``resurrect`` of many processes outlasts the client's socket timeout on a busy machine: the
    command line and ``tsm.resurrect()`` wait longer for it (``long_call``), and only for it."""
    (tsm.home / "config.toml").write_text('[daemon]\nlaunch_window = "1.5s"\n')  # each start takes 1.5 s
    tsm.run("start", "sleep 600", "--name", "slow", check=True)
    tsm.run("save", check=True)
    tsm.run("kill", check=True)
    c = Client(tsm.home, timeout=0.5)
    try:
        got = c.long_call("resurrect", 30)
        assert got["started"] == ["slow"], got
        assert c.timeout == 0.5 and c._sock is not None and c._sock.gettimeout() == 0.5  # back to its own
        c.call("stop", target="slow")
        c.call("delete", target="slow")
        with pytest.raises(DaemonError, match=r"did not answer 'resurrect' within 0.5s"):
            c.call("resurrect")  # the same request on the client's own timeout: the control
    finally:
        c.close()
    from tsm_notebook.cli import main as cli
    from tsm_notebook.notebook import api

    import inspect
    for fn in (cli.cmd_resurrect, api.resurrect):  # both front ends ask it this way
        assert 'long_call("resurrect", RESURRECT_TIMEOUT)' in inspect.getsource(fn)
