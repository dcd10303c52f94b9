"""Other machines over SSH: real OpenSSH servers on loopback (127.0.0.2, 127.0.0.3), each a "host"
with its own remote TSM home, driven with `tsm -H NAME`, `tsm ls -H all` and the frames."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.request

import pytest

from conftest import PY, wait_for
from sshd import free_port, have_sshd
from tsm_notebook.client.remote import configured_hosts, master_pid
from tsm_notebook.core.paths import Home
from tsm_notebook.core.version import __version__

pytestmark = pytest.mark.skipif((not have_sshd() or os.getuid() != 0) and not os.environ.get("CI"), reason="needs openssh-server and root (make test installs it)")

TICKER = "import itertools, time\nfor i in itertools.count():\n    print('tick', i, flush=True)\n    time.sleep(0.1)\n"


def ok(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r.stdout


def test_start_ls_logs_restart_stop_describe_on_a_remote_host(tsm, hosts):
    script = hosts.base / "ticker.py"
    script.write_text(TICKER)
    out = ok(tsm.run("-H", "a", "start", "--name", "tick", "--", PY, str(script)))
    assert "Started: tick" in out
    # the process belongs to host a's home, not to the local one nor to b's
    assert (hosts.servers["a"].remote_home / "runtime" / "processes" / "tick").is_dir()
    assert not (tsm.home / "runtime" / "processes" / "tick").exists()
    assert "tick" in ok(tsm.run("@a", "ls"))
    assert "tick" not in ok(tsm.run("-H", "b", "ls"))
    card = ok(tsm.run("-H", "a", "describe", "tick"))
    assert "status" in card and "online" in card and str(hosts.servers["a"].remote_home) in card
    wait_for(lambda: "out | tick 3" in tsm.run("-H", "a", "logs", "tick", "--lines", "50").stdout, 15, 0.2, "remote log lines")

    follower = subprocess.Popen([sys.executable, "-m", "tsm_notebook", "-H", "a", "logs", "tick", "-f", "--lines", "1"],
                                env=tsm.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        seen: list[str] = []
        reader = threading.Thread(target=lambda: [seen.append(line) for line in follower.stdout], daemon=True)
        reader.start()
        # the tail line, then new ones as they are written: numbers keep rising, none repeated
        wait_for(lambda: len(seen) >= 6, 20, 0.05, "followed remote lines")
        numbers = [int(line.split()[-1]) for line in seen[:6]]
        assert numbers == list(range(numbers[0], numbers[0] + 6)), seen
    finally:
        follower.send_signal(signal.SIGINT)
        follower.wait(timeout=15)
    assert follower.returncode == 0, follower.stderr.read()

    assert "Restarted: tick" in ok(tsm.run("-H", "a", "restart", "tick"))
    assert "restarts           1" in ok(tsm.run("-H", "a", "describe", "tick"))
    updated = ok(tsm.run("-H", "a", "update"))
    old_pid, new_pid = updated.split("pid ", 1)[1].split(" (", 1)[0].split(" -> ")
    assert old_pid != new_pid and "kept 1 processes" in updated
    wait_for(lambda: " online " in tsm.run("-H", "a", "ls").stdout, 15, 0.2, "tick online under the new daemon")
    assert "Stopped: tick" in ok(tsm.run("-H", "a", "stop", "tick"))
    assert "stopped" in ok(tsm.run("-H", "a", "ls", "-a"))
    events = ok(tsm.run("-H", "a", "events", "tick"))
    assert "restart" in events and "stop" in events


def test_ls_all_shows_an_unreachable_host_as_one_row_and_the_others(tsm, hosts):
    ok(tsm.run("-H", "a", "start", "--name", "alpha", "--", PY, "-c", "import time; time.sleep(600)"))
    ok(tsm.run("-H", "b", "start", "--name", "beta", "--", PY, "-c", "import time; time.sleep(600)"))
    # c accepts connections and never speaks: only the timeout can end its wait
    silent = socket.socket()
    silent.bind(("127.0.0.4", 0))
    silent.listen(8)
    c = dict(hosts.entries["a"], ssh="root@127.0.0.4", timeout="2s")
    c["ssh_options"] = [o if o != str(hosts.servers["a"].port) else str(silent.getsockname()[1]) for o in c["ssh_options"]]
    hosts.add("c", c)
    try:
        out = ok(tsm.run("ls", "-H", "a,b"))
        assert "alpha" in out and "beta" in out and out.splitlines()[0].startswith("Host")
        hosts.servers["b"].stop()
        r = tsm.run("ls", "-H", "all", timeout=60)
    finally:
        silent.close()
    assert r.returncode == 1
    rows = {line.split()[0]: line for line in r.stdout.splitlines()[2:]}
    assert "alpha" in rows["a"] and "online" in rows["a"]
    assert "unreachable" in rows["b"] and "unreachable" in rows["c"]
    assert "local" in rows or r.stdout.count("\n") >= 4
    assert "b: host b (root@127.0.0.3)" in r.stderr and "c: host c" in r.stderr


def test_processes_across_hosts_has_a_host_column(tsm, hosts):
    import tsm_notebook as api

    ok(tsm.run("-H", "a", "start", "--name", "alpha", "--", PY, "-c", "import time; time.sleep(600)"))
    ok(tsm.run("-H", "b", "start", "--name", "beta", "--", PY, "-c", "import time; time.sleep(600)"))
    ok(tsm.run("start", "--name", "here", "--", PY, "-c", "import time; time.sleep(600)"))
    df = api.processes(hosts="all", home=tsm.home)
    assert str(df["host"].dtype) == "category" and list(df["host"].cat.categories) == ["local", "a", "b"]
    assert dict(zip(df["name"], df["host"])) == {"here": "local", "alpha": "a", "beta": "b"}
    assert df.groupby("host", observed=True).size().to_dict() == {"local": 1, "a": 1, "b": 1}
    ev = api.events(hosts=["a", "b"], home=tsm.home)
    assert set(ev[ev["event"] == "online"]["name"]) == {"alpha", "beta"}
    assert str(ev["host"].dtype) == "category"


def test_a_forwarded_remote_port_answers_here(tsm, hosts):
    remote_port = free_port("127.0.0.1")
    ok(tsm.run("-H", "a", "start", "--name", "web", "--port", str(remote_port), "--wait-port", "--",
               PY, "-m", "http.server", str(remote_port), "--bind", "127.0.0.1", "--directory", str(hosts.base)))
    (hosts.base / "hello.txt").write_text("over ssh\n")
    out = ok(tsm.run("forward", f"a:{remote_port}", "--local-port", f"{free_port('127.0.0.1')}+"))
    local = int(out.split("http://127.0.0.1:", 1)[1].split()[0])
    with urllib.request.urlopen(f"http://127.0.0.1:{local}/hello.txt", timeout=10) as resp:
        assert resp.read() == b"over ssh\n"
    assert "a-fwd" in ok(tsm.run("ls"))


def test_a_remote_daemon_of_another_version_is_named_with_the_fix(tsm, hosts):
    old = dict(hosts.entries["a"], home=str(hosts.base / "old-home"))
    old["ssh_options"] = old["ssh_options"] + ["-o", "SetEnv=TSM_DAEMON_VERSION=0.0.1-old"]
    hosts.add("old", old, remote_home=hosts.base / "old-home")
    r = tsm.run("-H", "old", "ls")
    assert r.returncode == 1
    assert f"host old runs tsm_notebook 0.0.1-old, this machine runs {__version__}" in r.stderr
    assert "tsm -H old update" in r.stderr
    r = tsm.run("ls", "-H", "a,old")
    assert "version-mismatch" in r.stdout


def test_hosts_add_ls_check_rm(tsm, hosts):
    e = hosts.entries["a"]
    (tsm.home / "config.toml").write_text("[logs]\nretain = 3\n")
    args = ["hosts", "add", "gpu", e["ssh"], "--remote-home", e["home"], "--tsm", e["tsm"]]
    args += [f"--ssh-option={o}" for o in e["ssh_options"]]
    ok(tsm.run(*args))
    assert "gpu" in ok(tsm.run("hosts", "ls"))
    assert "already" not in ok(tsm.run("hosts", "check", "gpu"))
    assert "gpu: ok: tsm_notebook" in ok(tsm.run("hosts", "check", "gpu"))
    assert tsm.run(*args).returncode == 2  # a second add of the name is refused
    ok(tsm.run("hosts", "rm", "gpu"))
    assert (tsm.home / "config.toml").read_text().strip() == "[logs]\nretain = 3"
    assert tsm.run("-H", "gpu", "ls").returncode == 2
    hosts.entries = {}  # nothing else to tidy: the masters of gpu are a's
    hosts.add("gpu", e)


def test_the_magic_takes_a_host(tsm, hosts, monkeypatch):
    from tsm_notebook.notebook import remote_magic
    from tsm_notebook.notebook.magics import run_line

    monkeypatch.setenv("TSM_HOME", str(tsm.home))
    try:
        row = run_line(f"-H a start --name job -- {PY} -c 'print(\"from a\", flush=True); import time; time.sleep(600)'")
        assert row["name"] == "job" and row["status"] == "online"
        df = run_line("@a ls")
        assert list(df["name"]) == ["job"] and list(df["host"]) == ["a"]
        wait_for(lambda: "out | from a" in repr(run_line("-H a logs job")), 15, 0.1, "the remote line")
        tail = run_line("-H a logs job -f")
        try:
            assert "from a" in tail.text and "logs on a" in tail.title.value
        finally:
            tail.close()
        assert run_line("-H a stop job")[0]["status"] == "stopped"
        assert len(run_line("ls -H a,b -a")) == 1
    finally:
        remote_magic.close_all()


def test_the_panel_across_hosts_routes_actions_and_shows_a_silent_host(tsm, hosts):
    from tsm_notebook.notebook.panel import Panel

    remote_port = free_port("127.0.0.1")
    ok(tsm.run("-H", "a", "start", "--name", "web", "--port", str(remote_port), "--wait-port", "--",
               PY, "-m", "http.server", str(remote_port), "--bind", "127.0.0.1", "--directory", str(hosts.base)))
    b_home = hosts.remote_homes[1]
    b_home.mkdir(parents=True, exist_ok=True)
    (b_home / "config.toml").write_text('[history]\nsample_interval = "0.5s"\n')  # charts fill in quickly
    ok(tsm.run("-H", "b", "start", "--name", "beta", "--", PY, "-c", TICKER))
    (hosts.base / "hello.txt").write_text("panel\n")
    panel = Panel(home=tsm.home, hosts="a,b", autostart=False)
    try:
        assert {(r["host"], r["name"]) for r in panel.rows} == {("a", f"a:web-{remote_port}"), ("b", "b:beta")}
        assert '<th class="tsm-host">host</th>' in panel.table.value
        panel.selected = "b:beta"

        def shown():  # the log tail and the charts of a remote row come from its host's daemon
            panel.refresh()
            return "tick 3" in panel.logs.text and 'class="line"' in panel.charts.value

        wait_for(shown, 30, 0.2, "b:beta's log lines and charts in the panel")
        assert "b:beta" in panel.logs.title.value
        panel.restart_button.click()
        wait_for(lambda: not panel.busy and "restarted b:beta" in panel.message.value, 30, 0.05, "the restart on b")
        assert "restarts           1" in ok(tsm.run("-H", "b", "describe", "beta"))
        assert "restarts           0" in ok(tsm.run("-H", "a", "describe", f"web-{remote_port}"))

        panel.selected = f"a:web-{remote_port}"
        panel.forward_button.click()
        wait_for(lambda: not panel.busy and "forwarding …" not in panel.message.value, 30, 0.05, "the forward")
        assert "tsm-message-ok" in panel.message.value, panel.message.value
        def forwarded():
            panel.refresh()
            return next((r for r in panel.rows if r["host"] == "a" and r["port"]), None)

        row = wait_for(forwarded, 15, 0.1, "the forwarded port in the panel's row")
        with urllib.request.urlopen(f"http://127.0.0.1:{row['port']}/hello.txt", timeout=10) as resp:
            assert resp.read() == b"panel\n"
        assert f'href="http://localhost:{row["port"]}"' in panel.table.value or "proxy" in panel.table.value

        hosts.servers["b"].stop()

        def statuses():
            panel.refresh()
            return {r["host"]: r["status"] for r in panel.rows}

        wait_for(lambda: statuses()["b"] == "unreachable", 20, 0.1, "b shown unreachable")
        assert statuses() == {"a": "online", "b": "unreachable"}
        assert "unreachable" in panel.table.value and f"a:web-{remote_port}" in panel.table.value
        panel.selected = "b:(unreachable)"
        panel.refresh()
        assert "b:beta" not in panel.logs.title.value  # nothing stale of b shown as if live
    finally:
        panel.close()


def test_a_host_that_hangs_does_not_hold_the_panel(tsm, hosts):
    from tsm_notebook.notebook.panel import Panel

    ok(tsm.run("-H", "a", "start", "--name", "alpha", "--", PY, "-c", "import time; time.sleep(600)"))
    silent = socket.socket()  # accepts, never speaks: only c's timeout (30s) would end a wait on it
    silent.bind(("127.0.0.4", 0))
    silent.listen(8)
    c = dict(hosts.entries["a"], ssh="root@127.0.0.4", timeout="30s")
    c["ssh_options"] = [o if o != str(hosts.servers["a"].port) else str(silent.getsockname()[1]) for o in c["ssh_options"]]
    hosts.add("c", c)
    panel = None
    try:
        panel = Panel(home=tsm.home, hosts="a,c", autostart=False)  # returns while c has not answered
        rows = {r["host"]: r for r in panel.rows}
        assert rows["a"]["status"] == "online" and rows["c"]["status"] == "unreachable"
        assert "no answer yet" in rows["c"]["command"]
    finally:
        if panel is not None:
            panel.close()
        silent.close()


def test_a_frame_of_unreachable_hosts_is_empty_with_its_columns_and_says_why(tsm, hosts):
    import tsm_notebook as api

    hosts.servers["b"].stop()
    with pytest.warns(UserWarning, match="host b: HostUnreachable"):
        df = api.processes(hosts="b", home=tsm.home)
    assert len(df) == 0 and list(df.columns[:3]) == ["host", "tsm_id", "name"]
    assert "HostUnreachable" in df.attrs["unreachable"]["b"]
    assert tsm.daemon_pid() is None  # asking another host starts no daemon here


def test_warm_requests_take_the_masters_forward_and_fall_back_to_the_bridge(tsm, hosts):
    from tsm_notebook.client.remote import RemoteClient

    host = configured_hosts(Home(tsm.home))["a"]
    with RemoteClient(host) as c:
        c.call("ping")
        assert not c.transport.direct  # the first contact: tsm bridge (it starts the daemon there)
    with RemoteClient(host) as c:
        first = c.call("ping")["pid"]
        assert c.transport.direct  # then the shared connection's forward to the daemon's socket
    assert "Daemon stopped" in ok(tsm.run("-H", "a", "kill"))
    with RemoteClient(host) as c:  # the forward finds no daemon: the bridge starts a new one
        assert c.call("ping")["pid"] != first and not c.transport.direct
    assert master_pid(host) is not None
