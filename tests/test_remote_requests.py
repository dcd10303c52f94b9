"""The daemon requests a front end on another machine relies on (no file of the home is read by
the caller), and `tsm bridge`, which carries them over an ssh channel: here on the local daemon."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import PY, wait_for
from tsm_notebook.core.errors import ProtocolError, UsageError
from tsm_notebook.core.version import __version__

TICKER = "import itertools, time\nfor i in itertools.count():\n    print('tick', i, flush=True)\n    time.sleep(0.05)\n"


def start_ticker(tsm, tmp_path) -> str:
    script = tmp_path / "tick.py"
    script.write_text(TICKER)
    return tsm.call("start_build", build={"argv": [PY, str(script)], "name": "tick"})["name"]


def numbers(lines: list[dict]) -> list[int]:
    return [int(d["raw"].encode("latin-1").split()[-1]) for d in lines]


def test_logs_and_follow_are_requests(tsm, tmp_path):
    name = start_ticker(tsm, tmp_path)
    got = wait_for(lambda: (lambda g: g if len(g[0]["lines"]) >= 5 else None)(tsm.call("logs", target=name, lines=5)), 15)
    assert got[0]["name"] == "tick" and all(d["stream"] == "out" for d in got[0]["lines"])
    opened = tsm.call("follow_open", target=name, stream="out", lines=2)
    seen = numbers(opened["lines"])
    assert len(seen) == 2
    while len(seen) < 12:
        seen += numbers(tsm.call("follow_poll", token=opened["token"], wait=2.0)["lines"])
    assert seen == list(range(seen[0], seen[0] + len(seen)))  # nothing missed or repeated
    assert tsm.call("follow_close", token=opened["token"]) is True
    with pytest.raises(UsageError, match="expired"):
        tsm.call("follow_poll", token=opened["token"])
    with pytest.raises(ProtocolError):
        tsm.call("logs", target=name, lines=-1)


def test_history_reads_are_requests(tsm, tmp_path):
    name = start_ticker(tsm, tmp_path)
    tsm.call("restart", target=name)
    events = tsm.call("events", target=name)
    assert [e["event"] for e in events][:2] == ["start", "online"] and "restart" in [e["event"] for e in events]
    assert tsm.call("events", since="1h", limit=1)[-1]["name"] == "tick"
    report = tsm.call("report")
    assert report[0]["name"] == "tick" and report[0]["restarts"] == 1
    assert isinstance(tsm.call("metrics", name=name), list)
    with pytest.raises(UsageError):
        tsm.call("events", since="yesterday-ish")


def test_a_remote_start_builds_its_spec_on_the_daemon_side(tsm, tmp_path):
    import os

    row = tsm.call("start_build", build={"command": "sleep 600", "name": "nap", "cwd": "."})
    assert row["cwd"] == os.path.expanduser("~")  # relative to the daemon user's home, not the caller's cwd
    with pytest.raises(ProtocolError, match="start_build needs"):
        tsm.call("start_build", build={"command": "sleep 1", "base_cwd": "/"})
    with pytest.raises(UsageError, match="command not found"):
        tsm.call("start_build", build={"argv": ["no-such-program-here"]})


def test_the_bridge_joins_stdin_and_stdout_to_the_daemon(tsm):
    """What ssh runs: it starts the daemon if none runs and relays the protocol both ways."""
    assert tsm.daemon_pid() is None
    lines = [json.dumps({"v": 1, "id": i, "cmd": "ping", "args": {}}) for i in (1, 2)]
    r = subprocess.run([sys.executable, "-m", "tsm_notebook", "bridge"], input="\n".join(lines) + "\n", env=tsm.env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    replies = [json.loads(line) for line in r.stdout.splitlines()]
    assert [x["id"] for x in replies] == [1, 2] and all(x["ok"] and x["daemon"] == __version__ for x in replies)
    assert replies[0]["result"]["pid"] == tsm.daemon_pid()


def test_a_stack_builds_its_spec_and_probes_readiness_through_the_daemon(tsm, tmp_path, port):
    """What a stack's bring-up asks the daemon of an app's host: the spec built there (not
    started), and one readiness probe at a time, made there."""
    import os

    built = tsm.call("build_spec", build={"command": "sleep 600", "name": "nap", "env": ["A=1"]})
    assert built["spec"]["cwd"] == os.path.expanduser("~") and built["spec"]["env"] == {"A": "1"}
    assert built["env"]["PATH"] and "TSM_DAEMON_VERSION" not in built["env"]
    assert tsm.call("ls") == []  # nothing started
    with pytest.raises(ProtocolError, match="build_spec needs"):
        tsm.call("build_spec", build={"command": "sleep 1", "path_env": "/"})

    script = tmp_path / "serve.py"
    script.write_text("import http.server, os, time\nprint('booting', flush=True)\ntime.sleep(0.3)\n"
                      "s = http.server.HTTPServer(('127.0.0.1', int(os.environ['PORT'])), http.server.SimpleHTTPRequestHandler)\n"
                      "print('serving', flush=True)\ns.serve_forever()\n")
    name = tsm.call("start_build", build={"argv": [PY, str(script)], "name": "web", "port": port})["name"]
    wait_for(lambda: tsm.call("ready_probe", target=name, ready="port")["ok"], 15, message="the port probe")
    http = tsm.call("ready_probe", target=name, ready="http://127.0.0.1:$PORT/")
    assert http["ok"] and http["answer"] == "200 OK" and http["url"] == f"http://127.0.0.1:{port}/"
    missing = tsm.call("ready_probe", target=name, ready="http://127.0.0.1:$PORT/nope")
    assert not missing["ok"] and missing["answer"].startswith("404")
    assert not tsm.call("ready_probe", target=name, ready="http://127.0.0.1:$PORT/", probe=False)["ok"]  # not due: no GET
    assert tsm.call("ready_probe", target=name, ready={"log": "^serving"})["ok"]
    sizes = tsm.call("log_sizes", target=name)
    assert sizes["out"] > 0  # a log check from here on sees only what is written after
    assert not tsm.call("ready_probe", target=name, ready={"log": "^serving"}, offsets=sizes)["ok"]
    tsm.call("stop", target=name)
    stopped = tsm.call("ready_probe", target=name, ready="port")
    assert not stopped["ok"] and stopped["row"]["status"] == "stopped"
    tsm.call("start_existing", target=name)
    wait_for(lambda: tsm.call("ready_probe", target=name, ready="online")["ok"], 15, message="online again")
    with pytest.raises(ProtocolError, match="unknown readiness"):
        tsm.call("ready_probe", target=name, ready="sometime")
