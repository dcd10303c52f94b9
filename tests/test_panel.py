"""The panel's widgets against a real daemon and real processes, with no kernel and no browser:
auto-refresh off, ``refresh()`` called by the test, trait values asserted."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from conftest import PY, pid_alive, wait_for
from tsm_notebook.client import commands
from tsm_notebook.client.client import Client
from tsm_notebook.core.errors import ProcessNotFound, UsageError
from tsm_notebook.notebook.panel import LogTail, Panel

TICKER = """\
import sys, time
i = 0
while True:
    print("tick", i, flush=True)
    if i % 4 == 0:
        print("warn", i, file=sys.stderr, flush=True)
    i += 1
    time.sleep(0.05)
"""


@pytest.fixture
def home(tsm):
    """A home whose daemon samples often (charts fill fast) and launches quickly."""
    (tsm.home / "config.toml").write_text('[history]\nsample_interval = "0.2s"\n[daemon]\nlaunch_window = "50ms"\n')
    return tsm


def start(tsm, command: str, name: str, port: str | None = None) -> dict:
    argv = ["start", command, "--name", name] + (["--port", port] if port else [])
    return commands.start(tsm.client, commands.spec_from_args(commands.parse(argv)))


def ticker(tsm, tmp_path, name: str = "ticker") -> dict:
    script = tmp_path / "tick.py"
    script.write_text(TICKER)
    return start(tsm, f"{PY} {script}", name)


def refreshed(panel: Panel, predicate, timeout: float = 10.0, message: str = "panel state"):
    """Refresh the panel until ``predicate(panel)`` holds."""
    return wait_for(lambda: (panel.refresh(), predicate(panel))[1], timeout, interval=0.02, message=message)


def row(panel: Panel, name: str) -> dict | None:
    return next((r for r in panel.rows if r["name"] == name), None)


@pytest.fixture
def panels():
    made: list = []
    yield made
    for p in made:
        p.close()


def test_rows_statuses_and_log_text(home, tmp_path, panels):
    ticker(home, tmp_path)
    start(home, "sleep 600", "idle")
    home.call("stop", target="idle")
    p = Panel(home=home.home, refresh=None)
    panels.append(p)
    assert not p.live and "paused" in p.header.value
    assert [r["name"] for r in p.rows] == ["ticker", "idle"]
    assert p.selector.options == ("ticker", "idle") and p.selected == "ticker"
    table = p.table.value
    assert table.count("<tr data-name=") == 2
    assert 'data-name="ticker" class="tsm-selected"' in table
    assert "tsm-status-online" in table and "tsm-status-stopped" in table
    assert "2 processes" in p.header.value and "1 online" in p.header.value and "1 stopped" in p.header.value
    pid = row(p, "ticker")["pid"]
    assert f'pid <b class="tsm-pid">{pid}</b>' in p.detail.value
    # the log tail: stdout lines, stderr lines in red, and newer lines after a later refresh
    refreshed(p, lambda p: "tick 3" in p.logs.text and "warn 0" in p.logs.text, message="first lines")
    assert '<span class="err">warn 0</span>' in p.logs.output.value
    newest = max(int(line.split()[1]) for line in p.logs.text.splitlines() if line.startswith("tick"))
    refreshed(p, lambda p: f"tick {newest + 12}" in p.logs.text, message="newer lines")
    p.logs.stream_picker.value = "out"  # what a click in the browser does
    p.logs.lines_picker.value = 10
    assert len(p.logs.text.splitlines()) == 10 and "warn" not in p.logs.text
    p.logs.stream_picker.value = "err"
    assert "warn 0" in p.logs.text and "tick" not in p.logs.text
    # selecting another process shows its row, detail and (empty) log at once, without a refresh
    p.selector.value = "idle"
    assert p.selected == "idle" and 'data-name="idle" class="tsm-selected"' in p.table.value
    assert "tsm-status-stopped" in p.detail.value and "no log lines yet" in p.logs.output.value
    assert p.stop_button.disabled and not p.start_button.disabled
    # the charts come from the metric history of the selected process
    p.selector.value = "ticker"
    home.call("history_flush")
    refreshed(p, lambda p: p.charts.value.count("<path class=\"line\" d=\"M") == 2, message="both charts drawn")
    assert "CPU" in p.charts.value and "Memory" in p.charts.value and "MB" in p.charts.value


def test_buttons_restart_stop_start_and_delete_with_confirmation(home, panels):
    start(home, "sleep 600", "svc")
    p = Panel(home=home.home, refresh=None)
    panels.append(p)
    old = row(p, "svc")["pid"]

    p.restart_button.click()  # runs on a worker thread: the kernel is never held by a stop
    new = refreshed(p, lambda p: not p.busy and row(p, "svc")["pid"] not in (None, old) and row(p, "svc")["pid"],
                    message="a new pid")
    assert not pid_alive(old)
    assert row(p, "svc")["status"] == "online" and row(p, "svc")["restarts"] >= 1
    assert f"restarted svc (pid {new})" in p.message.value
    assert f'<b class="tsm-pid">{new}</b>' in p.detail.value

    p.stop_button.click()
    refreshed(p, lambda p: not p.busy and row(p, "svc")["status"] == "stopped", message="stopped")
    wait_for(lambda: not pid_alive(new), message="the stopped pid to be gone")
    assert "stopped svc" in p.message.value
    assert p.stop_button.disabled and not p.start_button.disabled

    p.start_button.click()
    refreshed(p, lambda p: not p.busy and row(p, "svc")["status"] == "online", message="started again")
    again = row(p, "svc")["pid"]
    assert again not in (None, old, new) and "started svc" in p.message.value

    # delete asks first: nothing happens until the confirmation, and cancel keeps the process
    p.delete_button.click()
    assert p.confirm_box.layout.display == "flex" and "svc" in p.confirm_label.value
    p.refresh()
    assert row(p, "svc") is not None and not p.busy
    p.cancel_button.click()
    assert p.confirm_box.layout.display == "none"
    p.delete_button.click()
    p.confirm_button.click()
    assert p.confirm_box.layout.display == "none"
    refreshed(p, lambda p: not p.busy and p.rows == [], message="deleted")
    assert "deleted svc" in p.message.value
    assert not (home.home / "runtime" / "processes" / "svc").exists()
    wait_for(lambda: not pid_alive(again), message="the deleted pid to be gone")
    assert p.selected is None and p.restart_button.disabled and "no processes yet" in p.table.value


def test_start_form_reports_a_taken_port_in_the_panel(home, panels):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    taken = holder.getsockname()[1]
    try:
        p = Panel(home=home.home, refresh=None)
        panels.append(p)
        p.form_command.value = f"{PY} -m http.server {taken} --bind 127.0.0.1"
        p.form_name.value = "web"
        p.form_port.value = str(taken)
        p.form_button.click()
        refreshed(p, lambda p: not p.busy and "error" in p.message.value, message="the error message")
        assert "PortInUse" in p.message.value and str(taken) in p.message.value
        assert p.rows == []
    finally:
        holder.close()
    # a bad value is a message too, not a traceback
    p.form_port.value = "not-a-port"
    p.form_button.click()
    refreshed(p, lambda p: not p.busy and "UsageError" in p.message.value, message="usage error")
    # and a good start shows the new process, selected
    p.form_command.value = "sleep 600"
    p.form_name.value = "nap"
    p.form_port.value = ""
    p.form_button.click()
    refreshed(p, lambda p: not p.busy and row(p, "nap") is not None, message="the new process")
    assert "started nap" in p.message.value and p.selected == "nap"
    assert row(p, "nap")["status"] == "online"


def test_background_thread_refreshes_and_stops_on_close(home, panels):
    p = Panel(home=home.home, refresh=0.05)
    panels.append(p)
    assert p.live and "live" in p.header.value
    thread = p._thread
    start(home, "sleep 600", "late")
    # nobody calls refresh(): the thread does
    wait_for(lambda: 'data-name="late"' in p.table.value, message="the thread to show the new process")
    q = Panel(home=home.home, refresh=0.05)  # several panels in one kernel
    panels.append(q)
    assert q.live and q._thread is not thread
    p.close()
    assert not thread.is_alive() and not p.live and p.comm is None
    shown = p.table.value
    home.call("stop", target="late")
    wait_for(lambda: "tsm-status-stopped" in q.table.value, message="the other panel to go on")
    assert p.table.value == shown  # the closed one stays as it was
    q.close()
    assert not q.live


def test_interpreter_exit_with_a_live_panel_is_clean(home):
    script = f"""
import sys, time
from tsm_notebook.notebook.panel import Panel
p = Panel(home={str(home.home)!r}, refresh=0.02)
while p.refresh_seconds is None or not p.live:
    time.sleep(0.01)
print("live", p.live, flush=True)
"""  # and exit with the thread running: the atexit hook stops it
    r = subprocess.run([sys.executable, "-c", script], env=home.env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout == "live True\n", r.stderr
    assert r.stderr == ""


def test_a_killed_daemon_is_reported_and_not_restarted(home, panels):
    p = Panel(home=home.home, refresh=None)  # the first refresh starts the daemon
    panels.append(p)
    pid = home.daemon_pid()
    assert pid and pid_alive(pid)
    Client(home.home).kill()
    p.refresh()
    assert "not running" in p.header.value and p.rows == []
    assert not (home.home / "daemon.sock").exists() and home.daemon_pid() in (None, pid)
    assert not pid_alive(pid)


def test_logtail_follows_new_lines(home, tmp_path):
    ticker(home, tmp_path, "tk")
    with pytest.raises(ProcessNotFound):
        LogTail("ghost", home.home, refresh=None)
    with pytest.raises(UsageError):
        LogTail("tk", home.home, stream="both!", refresh=None)
    tail = LogTail("tk", home.home, lines=5, stream="out", refresh=None)
    try:
        wait_for(lambda: (tail.refresh(), "tick 6" in tail.text)[1], message="first lines")
        assert "<b>tk</b>" in tail.title.value and "warn" not in tail.text
        last = tail.text.splitlines()[-1]
        wait_for(lambda: (tail.refresh(), tail.text.splitlines()[-1] != last)[1], message="a newer line")
        assert len(tail.text.splitlines()) == 5
    finally:
        tail.close()
    live = LogTail("tk", home.home, lines=3, refresh=0.05)  # the -f form: its own thread
    try:
        seen = live.text
        wait_for(lambda: live.text != seen, message="the thread to show new lines")
    finally:
        live.close()
    assert not live.live


def test_fifty_processes_in_the_table(home, panels):
    # the cost of a refresh with 50 processes is measured by bench/panel_refresh.py, not here
    for i in range(50):
        start(home, "sleep 600", f"s{i:02d}")
    p = Panel(home=home.home, refresh=None)
    panels.append(p)
    assert len(p.rows) == 50 and p.table.value.count("<tr data-name=") == 50
    home.call("stop", target="s07")
    p.refresh()
    assert {r["name"]: r["status"] for r in p.rows}["s07"] == "stopped"
