"""History end to end: events and metrics written by a real daemon, read back as text, JSON and
DataFrames; retention; a locked or corrupt database; `tsm monit` in a real pseudo-terminal."""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import json
import os
import pty
import select
import signal
import sqlite3
import struct
import subprocess
import sys
import termios
import textwrap
import time

import pandas as pd
import pytest

from conftest import PY, pid_alive, wait_for
from tsm_notebook.notebook import frames
from tsm_notebook.core import report
from tsm_notebook.core import states
from tsm_notebook.core.errors import UsageError
from tsm_notebook.core.paths import Home
from tsm_notebook.core.history import read_metrics

SLEEP = f"{PY} -c 'import time; time.sleep(600)'"
STR = pd.Series(["x"]).dtype  # the dtype pandas gives text (object before pandas 3)
UTC_NS, DELTA_NS = "datetime64[ns, UTC]", "timedelta64[ns]"


def fast(tsm, **history: str) -> Home:
    """Sample every 200 ms (and any other [history] keys) from the daemon's first start."""
    keys = {"sample_interval": "200ms", **history}
    (tsm.home / "config.toml").write_text("[history]\n" + "".join(f'{k} = "{v}"\n' for k, v in keys.items()))
    return Home.resolve(tsm.home)


def names(rows: list[dict]) -> list[str]:
    return [r["event"] for r in rows]


def check_dtypes(frame: pd.DataFrame, expected: dict[str, object]) -> None:
    got = {c: str(frame[c].dtype) for c in expected}
    assert got == {c: str(pd.api.types.pandas_dtype(d)) for c, d in expected.items()}
    assert list(frame.columns[: len(expected)]) == [c for c in expected if c in frame.columns]


# ---------------------------------------------------------------------- events


def test_kill9_gives_exit_with_signal_then_crash_restart_online(tsm):
    home = fast(tsm)
    tsm.run("start", SLEEP, "--name", "sl", check=True)
    old = tsm.wait_status("sl", "online")["pid"]
    os.kill(old, signal.SIGKILL)
    new = wait_for(lambda: (lambda r: r["status"] == "online" and r["pid"] != old and r)(tsm.row("sl")),
                   message="a new online run")["pid"]
    rows = wait_for(lambda: (lambda rs: rs if names(rs).count("online") == 2 else None)(report.events(home, "sl")),
                    message="the second online event")
    assert names(rows) == ["start", "online", "exit", "crash", "restart", "online"]
    start, online, exit_, crash, restart, online2 = rows
    assert start["pid"] == online["pid"] == exit_["pid"] == old
    assert (exit_["signal"], exit_["exit_code"], exit_["signal_name"]) == (signal.SIGKILL, None, "SIGKILL")
    assert restart["pid"] == online2["pid"] == new
    assert all(r["name"] == "sl" and r["tsm_id"] == start["tsm_id"] for r in rows)
    assert [r["time"] for r in rows] == sorted(r["time"] for r in rows)

    text = tsm.run("events", "sl", check=True).stdout
    exit_line = next(line for line in text.splitlines() if " exit " in line)
    assert "SIGKILL" in exit_line and str(old) in exit_line
    as_json = json.loads(tsm.run("events", str(start["tsm_id"]), "--json", check=True).stdout)
    assert names(as_json) == names(rows) and as_json[2]["signal"] == 9
    every = json.loads(tsm.run("events", "--json", check=True).stdout)
    assert every[0]["event"] == "daemon-start" and every[0]["name"] is None

    frame = frames.events("sl", home=tsm.home)
    assert list(frame["event"].astype(str)) == names(rows)
    assert frame.loc[frame["event"] == "exit", "signal_name"].tolist() == ["SIGKILL"]

    rep = {r["name"]: r for r in json.loads(tsm.run("report", "--json", check=True).stdout)}["sl"]
    assert (rep["restarts"], rep["crashes"]) == (1, 1)
    assert 0 < rep["availability"] < 100 and rep["mtbf"] == pytest.approx(rep["online"])
    assert "sl" in tsm.run("report", check=True).stdout


def test_nonzero_exit_code_then_stop_with_autorestart_off(tsm, tmp_path):
    home = fast(tsm)
    go = tmp_path / "go"
    code = f"import os, sys, time\nwhile not os.path.exists({str(go)!r}): time.sleep(0.01)\nsys.exit(3)"
    script = tmp_path / "exit3.py"
    script.write_text(code)
    tsm.run("start", f"{PY} {script}", "--name", "ex", "--no-autorestart", check=True)
    pid = tsm.wait_status("ex", "online")["pid"]
    go.touch()
    tsm.wait_status("ex", "stopped")
    rows = wait_for(lambda: (lambda rs: rs if "stop" in names(rs) else None)(report.events(home, "ex")))
    assert names(rows) == ["start", "online", "exit", "stop"]
    exit_ = rows[2]
    assert (exit_["pid"], exit_["exit_code"], exit_["signal"]) == (pid, 3, None)
    assert "autorestart off" in rows[3]["reason"]
    line = next(ln for ln in tsm.run("events", "ex", check=True).stdout.splitlines() if " exit " in ln)
    assert line.split()[4:6] == [str(pid), "3"]


# ---------------------------------------------------------------------- metrics


def test_metrics_of_a_process_tree_count_a_grandchild_memory(tsm, tmp_path):
    home = fast(tsm)
    ready = tmp_path / "ready"
    grandchild = f"import time; data = bytearray(b'x') * (50 << 20); open({str(ready)!r}, 'w').close(); time.sleep(600)"
    child = f"import subprocess, sys; subprocess.Popen([sys.executable, '-c', {grandchild!r}]).wait()"
    script = tmp_path / "tree.py"
    script.write_text(f"import subprocess, sys\nsubprocess.Popen([sys.executable, '-c', {child!r}]).wait()\n")
    tsm.run("start", f"{PY} {script}", "--name", "tree", check=True)
    wait_for(ready.exists, message="the grandchild to allocate")
    big = 50 << 20

    def fat_row():
        rows = read_metrics(home.db_file, name="tree")
        return next((r for r in reversed(rows) if r["children"] == 2 and r["rss"] >= big and r["cpu"] is not None), None)

    row = wait_for(fat_row, message="a sample that counts the grandchild")
    assert row["threads"] >= 3 and row["fds"] >= 3 and row["vms"] >= row["rss"] and row["ports"] == []
    wait_for(lambda: (tsm.row("tree")["memory"] or 0) >= big, message="ls to show the tree's memory")

    m = frames.metrics("tree", home=tsm.home)
    assert isinstance(m.index, pd.DatetimeIndex) and m.index.name == "time" and str(m.index.dtype) == UTC_NS
    assert m.index.is_monotonic_increasing and (m["name"] == "tree").all()
    assert m["rss"].max() >= big and m["children"].max() == 2
    assert pd.isna(m["cpu"].iloc[0])  # a tree's first sample has no cpu figure, not a fake 0
    per_second = m["rss"].resample("1s").mean()
    assert len(per_second) >= 1 and per_second.max() >= big
    assert m.resample("1s").mean(numeric_only=True)["rss"].max() >= big
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    ax = m["rss"].plot()
    assert len(ax.lines[0].get_xdata()) == len(m)
    import matplotlib.pyplot as plt

    plt.close("all")
    recent = frames.metrics("tree", since=m.index[-1] - pd.Timedelta("1ms"), home=tsm.home)  # a Timestamp works
    assert len(recent) >= 1 and recent.index.min() > m.index[-2]


def test_retention_removes_old_rows_while_sampling_goes_on(tsm):
    home = fast(tsm, retention="1s")
    tsm.run("start", SLEEP, "--name", "kept", check=True)
    first = wait_for(lambda: read_metrics(home.db_file, name="kept"), message="samples")[0]["time"]

    def pruned():
        rows = read_metrics(home.db_file)
        evs = report.events(home)
        fresh = rows and rows[0]["time"] > first  # the first sample went, later ones stay
        return fresh and "daemon-start" not in names(evs)

    wait_for(pruned, timeout=10, message="rows older than the retention to go")
    now = time.time()
    wait_for(lambda: read_metrics(home.db_file, since=now), message="new samples to land")  # sampling goes on


# ---------------------------------------------------------------------- frames


PROCESS_DTYPES = {
    "tsm_id": "int64", "name": STR, "env_file": STR, "pid": "Int64", "port": "Int64", "status": "category",
    "uptime": DELTA_NS, "cpu": "float64", "memory": "Int64", "restarts": "int64", "unstable_restarts": "int64",
    "start_time": UTC_NS, "created": UTC_NS, "command": STR, "argv": object, "shell": "bool",
}  # fmt: skip
EVENT_DTYPES = {"id": "int64", "tsm_id": "Int64", "name": STR, "event": "category", "pid": "Int64",
                "exit_code": "Int64", "signal": "Int64", "signal_name": STR, "reason": STR}  # fmt: skip
METRIC_DTYPES = {"name": STR, "tsm_id": "Int64", "pid": "Int64", "cpu": "float64", "rss": "Int64", "vms": "Int64",
                 "threads": "Int64", "fds": "Int64", "read_bytes": "Int64", "write_bytes": "Int64",
                 "children": "Int64", "ports": object}  # fmt: skip
REPORT_DTYPES = {"tsm_id": "int64", "name": STR, "availability": "float64", "online": DELTA_NS, "observed": DELTA_NS,
                 "restarts": "int64", "crashes": "int64", "mtbf": DELTA_NS, "cpu_mean": "float64",
                 "cpu_peak": "float64", "memory_mean": "float64", "memory_peak": "Int64", "samples": "int64",
                 "first_seen": UTC_NS, "last_event": "category"}  # fmt: skip


def test_every_frame_has_real_dtypes_and_index(tsm):
    home = fast(tsm)
    tsm.run("start", SLEEP, "--name", "up", check=True)
    tsm.run("start", SLEEP, "--name", "down", check=True)
    tsm.run("stop", "down", check=True)
    wait_for(lambda: len({r["name"] for r in read_metrics(home.db_file) if r["cpu"] is not None}) >= 1)

    (procs,) = wait_for(lambda: (lambda f: (f,) if pd.notna(f.loc[0, "cpu"]) else None)(frames.processes(tsm.home)))
    check_dtypes(procs, PROCESS_DTYPES)
    assert list(procs["status"].cat.categories) == list(states.ALL)
    assert list(procs["name"]) == ["up", "down"] and list(procs["status"].astype(str)) == ["online", "stopped"]
    up, down = procs.iloc[0], procs.iloc[1]
    assert up["memory"] > 1 << 20 and up["uptime"] > pd.Timedelta(0) and pd.isna(down["memory"]) and pd.isna(down["pid"])
    assert abs(up["start_time"] - pd.Timestamp.now(tz="UTC")) < pd.Timedelta("1min")
    assert str(procs["kill_timeout"].dtype) == DELTA_NS and str(procs["pid_create_time"].dtype) == UTC_NS
    assert frames.processes(client=tsm.client)["name"].tolist() == ["up", "down"]

    for frame, expected in ((frames.events(home=tsm.home), EVENT_DTYPES), (frames.metrics(home=tsm.home), METRIC_DTYPES)):
        assert frame.index.name == "time" and str(frame.index.dtype) == UTC_NS and len(frame)
        check_dtypes(frame, expected)
    assert "stop" in list(frames.events("down", home=tsm.home)["event"].astype(str))
    rep = frames.uptime_report(home=tsm.home)
    check_dtypes(rep, REPORT_DTYPES)
    assert list(rep["name"]) == ["up", "down"] and rep.loc[0, "availability"] > 50 and rep.loc[0, "samples"] > 0


def test_frames_of_an_empty_home_keep_their_dtypes(tmp_path):
    # no daemon and no database: the readers need neither, and start nothing
    for frame, expected in ((frames.events(home=tmp_path), EVENT_DTYPES), (frames.metrics(home=tmp_path), METRIC_DTYPES)):
        assert frame.empty and frame.index.name == "time" and str(frame.index.dtype) == UTC_NS
        check_dtypes(frame, expected)
    check_dtypes(frames.uptime_report(home=tmp_path), REPORT_DTYPES)
    assert not (tmp_path / "daemon.sock").exists() and not (tmp_path / "db").exists()


def test_command_line_never_imports_pandas(tsm):
    fast(tsm)
    tsm.run("start", SLEEP, "--name", "light", check=True)
    probe = "import sys; from tsm_notebook.cli.main import main; {extra}rc = main(sys.argv[1:]); print('MODULES', *sorted(sys.modules))"
    heavy = ("pandas", "numpy", "IPython", "ipywidgets")

    def modules(*argv: str, extra: str = "") -> set[str]:
        r = subprocess.run([sys.executable, "-c", probe.format(extra=extra), *argv], env=tsm.env,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return set(r.stdout.rsplit("MODULES", 1)[1].split())

    for argv in (["ls"], ["events"], ["report"], ["ls", "--json"]):
        mods = modules(*argv)
        assert "tsm_notebook.cli.main" in mods and "tsm_notebook.client.client" in mods
        assert not {m.split(".")[0] for m in mods} & set(heavy), argv
    assert "pandas" in modules("ls", extra="import tsm_notebook.notebook.frames; ")  # the probe does see an import


# ---------------------------------------------------------------------- a bad database


def test_locked_database_never_stops_the_daemon(tsm):
    home = fast(tsm)
    tsm.run("ping", check=True)
    daemon = tsm.daemon_pid()
    wait_for(lambda: "daemon-start" in names(report.events(home)))
    lock = sqlite3.connect(home.db_file, timeout=5, isolation_level=None)
    try:
        lock.execute("BEGIN EXCLUSIVE")
        locked_at = time.time()
        tsm.run("start", SLEEP, "--name", "locked", check=True)
        tsm.wait_status("locked", "online")
        # the daemon answers while several 200 ms sampling ticks run against the lock (by its own
        # uptime figure); how fast it answers is bench/locked_db.py's
        wait_for(lambda: (lambda r: r["name"] == "locked" and r["uptime"] and r["uptime"] > 1.2)(tsm.call("ls")[0]),
                 message="five sampling ticks against the lock")
        assert report.events(home, "locked") == []  # readers still read; nothing got past the lock
        unlocked_at = time.time()
    finally:
        lock.close()  # ends the transaction and its lock
    rows = wait_for(lambda: (lambda rs: rs if "online" in names(rs) else None)(report.events(home, "locked")),
                    message="the queued events to land")
    assert names(rows) == ["start", "online"]
    # the ticks sampled during the lock were queued, not lost: they land once it is gone
    assert tsm.call("history_flush") is True
    during = [r for r in read_metrics(home.db_file, name="locked") if locked_at <= r["time"] <= unlocked_at]
    assert len(during) >= 3, during
    t = time.time()
    wait_for(lambda: read_metrics(home.db_file, name="locked", since=t), message="samples after the lock")
    assert tsm.daemon_pid() == daemon and pid_alive(daemon)


def test_corrupt_database_is_set_aside_and_history_goes_on(tsm):
    home = fast(tsm)
    tsm.run("ping", check=True)
    wait_for(lambda: "daemon-start" in names(report.events(home)))
    tsm.run("kill", check=True)
    home.db_file.write_bytes(b"this is no database " * 500)
    for suffix in ("-wal", "-shm"):
        home.db_file.with_name(home.db_file.name + suffix).unlink(missing_ok=True)
    with pytest.raises(Exception):
        report.events(home)  # the file really is unreadable
    tsm.run("start", SLEEP, "--name", "after", check=True)
    daemon = tsm.daemon_pid()
    rows = wait_for(lambda: (lambda rs: rs if "online" in names(rs) else None)(report.events(home, "after")),
                    message="events in the fresh database")
    assert names(rows) == ["start", "online"]
    every = names(report.events(home))
    assert every.count("db-recovered") == 1 and every.index("db-recovered") < every.index("start")
    assert "daemon-start" in every  # the event that met the corrupt file was kept and written
    aside = list(home.db_dir.glob("tsm.sqlite.corrupt-*"))
    assert aside and aside[0].read_bytes().startswith(b"this is no database")
    wait_for(lambda: read_metrics(home.db_file, name="after"), message="samples")
    assert tsm.run("ping", check=True) and tsm.daemon_pid() == daemon and pid_alive(daemon)


# ---------------------------------------------------------------------- tsm monit


def _monit(tsm) -> tuple[int, int]:
    pid, master = pty.fork()
    if pid == 0:  # the child: a session of its own with the pty as its controlling terminal
        try:
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 110, 0, 0))
            os.execve(sys.executable, [sys.executable, "-m", "tsm_notebook", "monit"], tsm.env)
        finally:
            os._exit(127)
    return pid, master


def _read(master: int, out: bytearray, timeout: float) -> bool:
    """Append what the pty has within ``timeout`` seconds; False once the child side is closed."""
    ready, _, _ = select.select([master], [], [], timeout)
    if not ready:
        return True
    try:
        data = os.read(master, 65536)
    except OSError as exc:
        if exc.errno == errno.EIO:
            return False
        raise
    out += data
    return bool(data)


def _read_until(master: int, out: bytearray, predicate, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate(bytes(out)):
        assert time.monotonic() < deadline, f"monit output never matched; got {bytes(out)[-800:]!r}"
        assert _read(master, out, 0.05), f"monit ended early: {bytes(out)[-800:]!r}"


def _wait_exit(pid: int, master: int, out: bytearray, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError(f"monit did not quit; output {bytes(out)[-500:]!r}")
        _read(master, out, 0.02)


@pytest.mark.parametrize("key", [b"q", b"\x03", None], ids=["q", "ctrl-c", "sigint"])
def test_monit_refreshes_and_quits_cleanly(tsm, key):
    fast(tsm)
    tsm.run("start", SLEEP, "--name", "watched", check=True)
    tsm.wait_status("watched", "online")
    pid, master = _monit(tsm)
    out = bytearray()
    try:
        _read_until(master, out, lambda b: b"watched" in b and b"online" in b and b"Recent events" in b)
        frames_seen = out.count(b"\x1b[H")
        _read_until(master, out, lambda b: b.count(b"\x1b[H") > frames_seen, timeout=5)  # redrawn
        assert out.startswith(b"\x1b[?1049h")
        if key is None:
            os.kill(pid, signal.SIGINT)
        else:
            os.write(master, key)  # Ctrl-C: the terminal turns it into SIGINT for monit
        code = _wait_exit(pid, master, out)
    finally:
        os.close(master)
    assert code == 0, bytes(out)[-500:]
    assert out.rstrip(b"\r\n").endswith(b"\x1b[?25h\x1b[?1049l") and b"Traceback" not in out


def test_monit_without_a_terminal_is_a_usage_error(tsm):
    r = tsm.run("monit")
    assert r.returncode == 2 and "needs a terminal" in r.stderr
    assert not (tsm.home / "daemon.sock").exists()


# ---------------------------------------------------------------------- the report's arithmetic


def _ev(t: float, event: str, tsm_id: int = 0, name: str = "w", **kw) -> dict:
    return {"time": t, "tsm_id": tsm_id, "name": name, "event": event, "pid": kw.get("pid"),
            "exit_code": kw.get("exit_code"), "signal": kw.get("signal"), "reason": None}


CRASHY = [_ev(0, "start"), _ev(1, "online"), _ev(11, "exit", signal=9), _ev(11, "crash"),
          _ev(12, "restart"), _ev(13, "online")]  # fmt: skip


def test_uptime_arithmetic_whole_history_and_since():
    (row,) = report.uptime(CRASHY, now=21)
    assert (row["observed"], row["online"], row["crashes"], row["restarts"]) == (21, 18, 1, 1)
    assert row["availability"] == pytest.approx(100 * 18 / 21) and row["mtbf"] == 18 and row["last_event"] == "online"
    (row,) = report.uptime(CRASHY, since=5, now=21)  # opens online: the online event at 1 is before it
    assert (row["observed"], row["online"], row["first_seen"]) == (16, 6 + 8, 5)
    (row,) = report.uptime(CRASHY[:2], since=15, now=21)  # nothing in the window, up all along
    assert (row["availability"], row["crashes"], row["mtbf"]) == (100.0, 0, None)


def test_uptime_of_stopped_deleted_and_other_processes():
    evs = CRASHY + [_ev(15, "stop"), _ev(20, "delete"), _ev(3, "start", 1, "b"), _ev(4, "online", 1, "b"),
                    _ev(8, "memory-limit", 1, "b"), _ev(8, "restart", 1, "b"), _ev(9, "online", 1, "b"),
                    _ev(0, "daemon-start", None, None)]  # fmt: skip
    a, b = report.uptime(evs, now=30, samples={1: {"samples": 4, "cpu_mean": 2.5, "cpu_peak": 4.0,
                                                   "memory_mean": 10.0, "memory_peak": 12}})
    assert (a["tsm_id"], a["observed"], a["online"], a["last_event"]) == (0, 20, 12, "delete")
    assert (b["name"], b["observed"], b["online"], b["restarts"], b["crashes"]) == ("b", 27, 25, 1, 0)
    assert (b["samples"], b["cpu_peak"], b["memory_peak"], a["samples"], a["cpu_mean"]) == (4, 4.0, 12, 0, None)
    assert [r["tsm_id"] for r in report.uptime(evs, since=25, now=30)] == [1]  # deleted before the window


def test_since_accepts_text_datetimes_deltas_and_epochs():
    now = 1_800_000_000.0
    assert report.since_epoch("10m", now=now) == now - 600
    assert report.since_epoch(dt.timedelta(hours=2), now=now) == now - 7200
    assert report.since_epoch(dt.datetime(2027, 1, 15, tzinfo=dt.timezone.utc)) == 1_800_000_000 - 1_800_000_000 % 86400
    assert report.since_epoch(pd.Timestamp("2027-01-15", tz="UTC")) == 1_800_000_000 - 1_800_000_000 % 86400
    assert report.since_epoch(12) == 12.0 and report.since_epoch(None) is None
    for bad in ("yesterday", True, [1]):
        with pytest.raises(UsageError):
            report.since_epoch(bad)
    assert report.signal_name(9) == "SIGKILL" and report.signal_name(None) is None


def test_report_table_and_events_table_render_raw_rows():
    rows = report.uptime(CRASHY, now=21)
    text = report.report_table(rows)
    assert "85.7%" in text and text.splitlines()[2].split()[:2] == ["0", "w"]
    lines = report.events_table([dict(e, id=i, signal_name=None) for i, e in enumerate(CRASHY)]).splitlines()
    assert len(lines) == 2 + len(CRASHY) and "SIGKILL" in lines[4]
