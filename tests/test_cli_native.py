"""The real `tsm` command line on what notebook users do all day: re-running starts, base names,
ports read only from flags that mean one (an IPv6-only server seen online), one coloured log
stream for every process, and the paper cuts (message prefixes, hints, PM2 spellings, a failed
start's message, `tsm start NAME` of a stopped process, a clean exit in the report)."""

from __future__ import annotations

import json
import re
import os
import socket
import subprocess
import sys

import pytest

from conftest import PY, free_port, wait_for

SLEEP = f"{PY} -c 'import time; time.sleep(600)'"


def fake_program(tmp_path, name: str) -> str:
    """A program called ``name`` that sleeps (a stand-in for redis-cli, redis-server, ...)."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    path = bindir / name
    path.write_text(f"#!{PY}\nimport sys, time\nprint('args', sys.argv[1:], flush=True)\ntime.sleep(600)\n")
    path.chmod(0o755)
    return str(path)


def test_messages_have_one_prefix_and_the_quote_hint(tsm):
    r = tsm.run("start")
    assert r.returncode == 2 and r.stderr.strip() == "tsm start: a command is needed"
    r = tsm.run("start", PY, "-m", "http.server")
    assert r.returncode == 2 and "put the command in quotes, or after --" in r.stderr
    assert not r.stderr.startswith("tsm: tsm")
    r = tsm.run("ls", "--bogus")
    assert r.returncode == 2 and "quotes" not in r.stderr and not r.stderr.startswith("tsm: tsm")


def test_pm2_spellings_are_accepted(tsm):
    tsm.run("start", "--name", "pm", "--max-memory-restart", "200M", "--exp-backoff-restart-delay", "100",
            "--", PY, "-c", "import time; time.sleep(600)", check=True)
    spec = json.loads(tsm.run("describe", "pm", "--json", check=True).stdout)["spec"]
    assert spec["max_memory"] == 200 * 1024 * 1024 and spec["exp_backoff"] == pytest.approx(0.1)


def test_rerunning_start_is_safe_and_start_name_restarts_a_stopped_one(tsm):
    port = free_port()
    cmd = f"{PY} -m http.server {port} --bind 127.0.0.1"
    first = tsm.run("start", cmd, "--name", "web", check=True).stdout
    again = tsm.run("start", cmd, "--name", "web", check=True).stdout
    assert first.startswith(f"Started: web-{port}") and again.startswith(f"Already running (same spec): web-{port}")
    pid = tsm.row(f"web-{port}")["pid"]
    changed = tsm.run("start", cmd + " --directory /", "--name", "web", check=True).stdout
    assert changed.startswith(f"Restarted with the new spec: web-{port}")
    assert tsm.row(f"web-{port}")["pid"] != pid
    assert [r["name"] for r in tsm.call("ls", all=True)] == [f"web-{port}"]

    tsm.run("start", "--name", "job", "--", PY, "-c", "import time; time.sleep(600)", check=True)
    tsm.run("stop", "job", check=True)
    out = tsm.run("start", "job", check=True).stdout
    assert out.startswith("Started: job") and tsm.row("job")["status"] == "online"
    assert tsm.row("job")["command"].startswith(PY)  # its saved spec, not a program called `job`
    assert tsm.run("start", "job", check=True).stdout.startswith("Already running (same spec): job")


def test_a_port_flag_of_a_client_is_not_a_port_and_no_port_overrides(tsm, tmp_path):
    port = free_port()
    with socket.socket() as held:  # the port the client connects to is in use, as it would be
        held.bind(("127.0.0.1", port))
        held.listen()
        cli = fake_program(tmp_path, "redis-cli")
        r = tsm.run("start", f"{cli} -p {port} monitor", check=True)
        assert r.stdout.startswith("Started: redis-cli ") and tsm.row("redis-cli")["port"] is None
        sleeper = [PY, "-c", "import time; time.sleep(600)", "--port", str(port)]  # its --port is not ours
        assert tsm.run("start", "--name", "taken", "--", *sleeper).returncode == 1  # PortInUse
        r = tsm.run("start", "--name", "np", "--no-port", "--", *sleeper)
        assert r.returncode == 0 and tsm.row("np")["port"] is None


def test_a_base_name_targets_its_only_process_and_lists_candidates(tsm, tmp_path):
    server = fake_program(tmp_path, "redis-server")
    p1, p2 = free_port(), free_port()
    tsm.run("start", f"{server} --port {p1}", "--name", "redis", check=True)
    r = tsm.run("stop", "redis", check=True)
    assert f"Stopped: redis-{p1}" in r.stdout and f"the only process of that base name is redis-{p1}" in r.stdout
    tsm.run("start", f"{server} --port {p2}", "--name", "redis", check=True)
    r = tsm.run("stop", "redis")
    assert r.returncode == 1 and f"redis-{p1}, redis-{p2}" in r.stderr


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_wait_port_sees_an_ipv6_only_server_and_takes_a_limit(tsm):
    port = free_port()
    r = tsm.run("start", f"{PY} -m http.server {port} --bind ::1", "--name", "v6", "--wait-port", "30s")
    assert r.returncode == 0, r.stderr
    assert tsm.row(f"v6-{port}")["status"] == "online"


def test_wait_port_names_the_port_it_really_listens_on(tsm):
    declared, real = free_port(), free_port()
    r = tsm.run("start", f"{PY} -m http.server {real} --bind 127.0.0.1", "--name", "off", "--port", str(declared),
                "--wait-port", "3s")
    assert r.returncode == 1
    assert f"did not listen on port {declared} within 3s (it listens on {real}" in r.stderr


def test_a_failed_start_reports_only_its_own_errors(tsm):
    fail = "import sys; sys.stderr.write('{}\\n'); sys.exit(3)"
    r = tsm.run("start", "--name", "bad", "--", PY, "-c", fail.format("first attempt broke"))
    assert r.returncode == 1 and "first attempt broke" in r.stderr
    r = tsm.run("start", "--name", "bad", "--", PY, "-c", fail.format("second attempt broke"))
    assert r.returncode == 1 and "second attempt broke" in r.stderr and "first attempt" not in r.stderr


def test_a_clean_exit_is_not_a_crash_in_the_report(tsm):
    tsm.run("start", "--name", "once", "--no-autorestart", "--min-uptime", "0", "--",
            PY, "-c", "import time; time.sleep(0.5)", check=True)
    tsm.wait_status("once", "stopped")
    rows = json.loads(tsm.run("report", "--json", check=True).stdout)
    assert [r["crashes"] for r in rows if r["name"] == "once"] == [0]


def test_logs_follow_every_process_in_one_coloured_stream(tsm):
    for name in ("alpha", "beta"):
        code = f"import time\nwhile True:\n    print('tick from {name}', flush=True)\n    time.sleep(0.2)"
        tsm.run("start", "--name", name, "--", PY, "-c", code, check=True)
    env = dict(tsm.env, FORCE_COLOR="1")
    env.pop("NO_COLOR", None)
    follower = subprocess.Popen([sys.executable, "-m", "tsm_notebook", "logs", "-f", "--lines", "0"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        seen: set[str] = set()
        lines: list[str] = []

        def both() -> bool:
            line = follower.stdout.readline()
            lines.append(line)
            for name in ("alpha", "beta"):
                if f"tick from {name}" in line and f"m{name}\x1b[0m|out | " in line:
                    seen.add(name)
            return seen == {"alpha", "beta"} or follower.poll() is not None

        wait_for(both, timeout=20, message="lines of both processes")
        assert seen == {"alpha", "beta"}, (lines[-5:], follower.stderr.read() if follower.poll() is not None else "")
    finally:
        follower.kill()
        follower.wait(timeout=10)
        follower.stdout.close()
        follower.stderr.close()


def test_a_changed_start_with_a_port_search_keeps_its_port(tsm):
    base = free_port()
    with socket.socket() as held:  # the first port of the range is taken: the search moves on
        held.bind(("127.0.0.1", base))
        held.listen()
        cmd = f"{PY} -m http.server $PORT --bind 127.0.0.1"
        first = tsm.run("start", cmd, "--name", "site", "--port", f"{base}+", check=True).stdout
        name = re.search(r"Started: (site-\d+)", first).group(1)
        again = tsm.run("start", cmd + " --directory /", "--name", "site", "--port", f"{base}+", check=True).stdout
        assert again.startswith(f"Restarted with the new spec: {name} ")
        third = tsm.run("start", cmd + " --directory /", "--name", "site", "--port", f"{base}+", check=True).stdout
        assert third.startswith(f"Already running (same spec): {name} ")
    assert [r["name"] for r in tsm.call("ls", all=True)] == [name]


def test_logs_plain_drops_colour_codes(tsm, tmp_path):
    script = tmp_path / "colour.py"
    script.write_text("import time\nprint('\\x1b[31mred alert\\x1b[0m', flush=True)\ntime.sleep(600)\n")
    tsm.run("start", "--name", "colour", "--", PY, str(script), check=True)
    wait_for(lambda: "alert" in tsm.run("logs", "colour").stdout, message="the coloured line")
    assert "\x1b[31m" in tsm.run("logs", "colour").stdout  # as written: a terminal shows the colour
    for args in (["--plain"], ["--plain", "--raw"], ["--plain", "--json"]):
        out = tsm.run("logs", "colour", *args, check=True).stdout
        assert "red alert" in out and "\x1b" not in out and "\\u001b" not in out, (args, out)
