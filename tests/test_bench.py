"""The benchmark on real daemons: the drivers of tsm_notebook, PM2 7.0.4 and supervisor 4.3.0, a
tiny run of the whole harness on all three, and the report with its goals.

The first run installs both peers into ``bench/.cache/`` (npm and pip, a few seconds each).
Timings are never asserted beyond "positive and not absurd".
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import extras, measure, report, run  # noqa: E402
from bench.driver import Driver  # noqa: E402
from bench.peers import PM2Driver, SupervisorDriver  # noqa: E402
from bench.tsm_driver import TsmDriver  # noqa: E402
from bench.workloads.flood import LINE_BYTES  # noqa: E402

PYTHON = os.path.realpath(sys.executable)
SLEEPER = [PYTHON, str(ROOT / "bench" / "workloads" / "sleeper.py")]


def processes_under(path: Path) -> list[psutil.Process]:
    """Live processes whose command line or working directory mentions ``path``."""
    found = []
    for proc in psutil.process_iter(["cmdline", "cwd", "status"]):
        info = proc.info
        if info["status"] == psutil.STATUS_ZOMBIE:
            continue
        text = " ".join(info["cmdline"] or []) + " " + (info["cwd"] or "")
        if str(path) in text:
            found.append(proc)
    return found


def kill_all(procs: list[psutil.Process]) -> None:
    """SIGKILL ``procs`` (psutil refuses a reused pid) and wait until they are gone."""
    for proc in procs:
        try:
            proc.kill()
        except psutil.Error:
            pass
    measure.wait_gone([p.pid for p in procs], 10)


def driver_roots(d: Driver, tmp_path: Path) -> list[Path]:
    """Where a driver's processes show in a command line or working directory: the test's folder,
    and tsm's home (made under /tmp when ``tmp_path`` is too long for a Unix socket)."""
    home = getattr(d, "home", None)
    return [tmp_path] + ([home] if isinstance(home, Path) and home != Path() else [])


def shut_and_check(d: Driver, tmp_path: Path) -> None:
    """Shut ``d`` down (again), kill anything of it still running, fail if there was any."""
    roots = driver_roots(d, tmp_path)
    d.shutdown()  # a second shutdown is harmless; after a failure it cleans up
    left = [p for root in roots for p in processes_under(root)]
    kill_all(left)
    cleanup = getattr(d, "cleanup", None)
    if cleanup is not None:
        cleanup()
    assert not left, f"left running: {[p.pid for p in left]}"


@pytest.fixture(params=[TsmDriver, PM2Driver, SupervisorDriver], ids=["tsm", "pm2", "supervisor"])
def driver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Driver]:
    d: Driver = request.param()
    d.setup(tmp_path)
    yield d
    shut_and_check(d, tmp_path)


def test_driver_starts_lists_stops_and_shuts_down_clean(driver: Driver, tmp_path: Path) -> None:
    driver.start_daemon()
    daemon = driver.daemon_pid()
    assert measure.pid_alive(daemon)

    assert driver.start("one", SLEEPER) > 0
    assert driver.start_many([("two", SLEEPER)]) > 0
    measure.wait_until(lambda: all(driver.pids(["one", "two"]).values()), 15, "two pids")
    pids = driver.pids(["one", "two"])
    for pid in pids.values():
        assert psutil.Process(pid).ppid() == daemon  # the daemon is the parent, not a shell
        assert psutil.Process(pid).cmdline() == SLEEPER

    listing = subprocess.run(driver.list_cmd(), env=driver.env, capture_output=True, text=True, timeout=60)
    assert listing.returncode in driver.list_ok, listing.stderr
    assert "one" in listing.stdout and "two" in listing.stdout

    assert driver.stop("one") > 0
    measure.wait_gone([pids["one"]], 10)
    assert driver.pid("one") is None
    assert measure.pid_alive(pids["two"])

    driver.stop_all()
    measure.wait_gone([pids["two"]], 10)
    driver.delete_all()

    driver.start("three", SLEEPER)  # left running: shutdown must take it down
    measure.wait_until(lambda: driver.pid("three"), 15, "three's pid")
    three = driver.pid("three")
    assert three is not None
    driver.shutdown()
    assert not measure.pid_alive(daemon)
    assert not measure.pid_alive(three)
    assert driver.leftovers == []  # the manager itself stopped everything
    for root in driver_roots(driver, tmp_path):
        assert processes_under(root) == []


def test_harness_quick_run_writes_results_and_table(tmp_path: Path) -> None:
    # work is short (under /tmp) so tsm's home, and with it its daemon, is inside it
    work = Path(tempfile.mkdtemp(prefix="tsmq-", dir="/tmp"))
    out_json, out_md, notes = work / "r.json", tmp_path / "b.md", work / "r.notes.md"
    notes.write_text("## Why\n\nA note kept beside the results.\n")
    (work / "r.extras.md").write_text(extras.markdown([{"title": "Stack bring-up", "command": "`x`", "seconds": 1.0,
                                                         "rc": 0, "report": "tsm up 1.2 s"}], "today"))
    try:
        done = subprocess.run(
            [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--drivers", "tsm,pm2,supervisor",
             "--groups", "idle,start,crash,log,many", "--json", str(out_json), "--markdown", str(out_md),
             "--workdir", str(work)],
            capture_output=True, text=True, timeout=240,
        )
        left = processes_under(work)
        kill_all(left)
        assert done.returncode == 0, done.stderr
        assert not left, f"the harness left running: {[p.pid for p in left]}"
        result = json.loads(out_json.read_text())
    finally:
        shutil.rmtree(work, ignore_errors=True)

    assert result["errors"] == [], result["errors"]
    assert result["columns"] == ["tsm", "pm2", "supervisor", "floor"]
    rows = {(r["row"], r["param"]): r["results"] for r in result["rows"]}
    tools = ("tsm", "pm2", "supervisor")
    for key in [("status", "1 process"), ("status", "5 processes"), ("start_port", "cold"),
                ("start_port", "warm"), ("crash_pid", "SIGKILL"), ("crash_port", "SIGKILL"),
                ("many_up", "5 processes"), ("many_stop", "5 processes")]:
        for tool in tools:
            assert 0 < rows[key][tool]["median"] < 30, (key, tool)
    for key in [("rss", "0 processes"), ("rss", "5 processes")]:
        for tool in tools:
            assert 1 << 20 < rows[key][tool]["median"] < 1 << 30, (key, tool)
    assert 0 < rows[("start_port", "cold")]["floor"]["median"] < 30
    for mode in ("line", "block"):
        for tool in tools:
            assert rows[("log_lost", f"20,000 lines, {mode}")][tool]["median"] == 0, (mode, tool)
            assert rows[("log_rate", f"20,000 lines, {mode}")][tool]["median"] > 1000, (mode, tool)
    for label in ("tsm_notebook.processes()", 'Client.call("ls")'):
        cells = rows[("status_api", f"2 processes, {label}")]
        assert 0 < cells["tsm"]["median"] < 30
        assert cells["pm2"]["reason"] == report.NOT_APPLICABLE

    page = out_md.read_text()
    assert "| what | case | tsm | pm2 | supervisor | floor | tsm/pm2 | tsm/supervisor |" in page
    assert "kill -9 of a managed server" in page
    assert "## Goals" in page and "A note kept beside the results." in page
    assert page.index("A note kept beside") < page.index("## Other benchmarks") < page.index("## How each row")
    assert "tsm up 1.2 s" in page


def test_other_benchmarks_section_says_what_did_not_run_and_what_failed() -> None:
    text = extras.markdown([
        {"title": "Remote hosts over SSH", "command": "`r`", "skipped": "needs root"},
        {"title": "Watch", "command": "`w`", "seconds": 3.0, "rc": 2, "error": ["Traceback", "boom"], "report": ""},
        {"title": "Stack bring-up", "command": "`s`", "seconds": 30.0, "rc": 0, "report": "floor 1.8 s\ntsm 2.0 s"},
    ], "2026-12-01")
    assert "### Remote hosts over SSH\n\n`r`\n\nNot run here: needs root." in text
    assert "Failed with exit code 2:" in text and "boom" in text
    assert "`s` (30 s)\n\n```\nfloor 1.8 s\ntsm 2.0 s\n```" in text
    assert set(extras.EXTRAS) == {"stack", "remote", "watch", "tracking"}
    for _title, argv, _problem in extras.EXTRAS.values():  # every script it names exists
        assert (ROOT / argv[0]).is_file(), argv[0]


def test_wait_port_times_a_real_listener_and_times_out_without_one() -> None:
    port = measure.free_port()
    with pytest.raises(TimeoutError):
        measure.wait_port(port, 0.05)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", port))
        listener.listen()
        assert 0 <= measure.wait_port(port, 5) < 5


def test_wait_pid_change_returns_the_new_value() -> None:
    started = time.monotonic()
    waited, new = measure.wait_pid_change(lambda: 7 if time.monotonic() - started > 0.02 else 3, 3, 5)
    assert new == 7 and waited >= 0.02
    with pytest.raises(TimeoutError):
        measure.wait_pid_change(lambda: None, 3, 0.05)


def test_median_minmax_and_process_readings() -> None:
    assert measure.median_minmax([3, None, 1, 2]) == {"median": 2, "min": 1, "max": 3, "n": 3}
    assert measure.median_minmax([None])["median"] is None
    assert measure.rss(os.getpid()) > 1 << 20
    assert measure.cpu_seconds(os.getpid()) > 0
    assert measure.wall([PYTHON, "-c", "pass"]) > 0
    with pytest.raises(subprocess.CalledProcessError):
        measure.wall([PYTHON, "-c", "raise SystemExit(3)"])
    assert measure.wall([PYTHON, "-c", "raise SystemExit(3)"], ok=(0, 3)) > 0


def test_report_gives_tsm_over_peer_ratios_and_keeps_null_reasons() -> None:
    from bench import report

    samples = {("status", "1 process"): {"tsm": [0.05, 0.07, 0.06], "pm2": [0.12]}}
    reasons = {"status": {"supervisor": "Unsupported: no status here"}}
    rows = report.summarise(samples, reasons, ["tsm", "pm2", "supervisor"])
    assert rows[0]["results"]["tsm"]["median"] == 0.06
    assert rows[0]["results"]["supervisor"] == {"median": None, "min": None, "max": None, "n": 0,
                                                "samples": [], "reason": "Unsupported: no status here"}
    result = {"columns": ["tsm", "pm2", "supervisor"], "quick": True, "date": "2000-01-01",
              "plan": {"reps": 3}, "rows": rows,
              "drivers": {"tsm": {"version": "0"}, "pm2": {"version": "7.0.4"}, "supervisor": {"version": "4.3.0"}},
              "machine": {"cpus": 2, "memory_bytes": 2**30, "platform": "linux", "python": "3", "node": "v20"}}
    page = report.markdown(result)
    assert "| what | case | tsm | pm2 | supervisor | tsm/pm2 | tsm/supervisor |" in page
    assert "| status command wall time | 1 process | 60 ms (50 ms – 70 ms) | 120 ms | " \
           "null (Unsupported: no status here) | 0.50 | – |" in page


def test_tsm_log_capture_is_counted_across_rotated_gzipped_files(tmp_path: Path) -> None:
    d = TsmDriver(log_max_size="64K")  # 20,000 lines (1.2 MB) rotate about 18 times
    d.setup(tmp_path)
    try:
        d.start_daemon()
        count, marker = 20_000, tmp_path / "flood.json"
        d.start("flood", [run.PYTHON, str(run.WORKLOADS / "flood.py"), str(count), "line", str(marker)])
        measure.wait_until(marker.exists, 60, "the flooder to finish")
        measure.wait_until(lambda: d.log_bytes("flood") == count * LINE_BYTES, 60, "every byte captured")
        files = d.log_files("flood")
        assert len([p for p in files if p.name.endswith(".log.gz")]) >= 10
        assert files[-1].name == "current.out"
        assert run.count_lines(files, count) == count
        assert d.log_bytes("flood") == count * LINE_BYTES  # compressed files still count in full
    finally:
        shut_and_check(d, tmp_path)


def test_goals_are_checked_from_medians_of_the_same_run() -> None:
    samples = {
        ("status", "1 process"): {"tsm": [0.04], "pm2": [0.15], "supervisor": [0.09]},
        ("start_port", "cold"): {"tsm": [0.5], "pm2": [0.8], "floor": [0.05]},
        ("start_port", "warm"): {"tsm": [0.06], "pm2": [0.3]},
        ("log_rate", "2,000,000 lines, line"): {"tsm": [600_000.0], "pm2": [270_000.0]},
        ("log_lost", "2,000,000 lines, line"): {"tsm": [0, 3], "pm2": [0]},
    }
    rows = report.summarise(samples, {}, ["tsm", "pm2", "supervisor", "floor"])
    checked = {g["goal"].label: g for g in report.check_goals({"rows": rows})}
    assert checked["`tsm ls` at most 0.5x `supervisorctl status` (1 process)"]["met"] is True
    assert checked["`tsm ls` at most 0.3x `pm2 ls` (1 process)"]["met"] is True
    assert checked["`tsm ls` at most 0.3x `pm2 ls` (10 processes)"]["met"] is None
    cold = checked["start until the port accepts within 1.3x of plain `Popen` (cold)"]
    assert cold["met"] is False and cold["ratio"] == pytest.approx(10.0)
    warm = checked["start until the port accepts within 1.3x of plain `Popen` (warm)"]
    assert warm["met"] is True and warm["ratio"] == pytest.approx(1.2)  # against the floor's cold start
    log = checked["per-line log throughput at least 2x PM2's, zero lines lost"]
    assert log["ratio"] > 2 and log["met"] is False  # fast enough, but a repetition lost 3 lines


def test_growth_plots_from_a_results_file(tmp_path: Path) -> None:
    from bench import plots

    def row(name: str, param: str, values: dict[str, float]) -> dict:
        return {"row": name, "param": param, "results": {
            tool: {"median": v, "min": v * 0.9, "max": v * 1.1, "n": 3} for tool, v in values.items()}}

    result = {"date": "2026-12-01", "rows": [
        row("status", "1 process", {"tsm": 0.03, "pm2": 0.15}),
        row("status", "50 processes", {"tsm": 0.04, "pm2": 0.16}),
        row("status", "50 processes, Client.call(\"ls\")", {"tsm": 0.001}),  # not a status-command point
        row("cpu", "50 processes, 30 s", {"tsm": 0.07}),
        row("cpu", "200 processes, 30 s", {"tsm": 0.2}),
        row("many_stop", "500 processes", {"tsm": 3.0, "supervisor": 1.4}),
    ]}
    status = plots.series(result, "status")
    assert {tool: [(n, m) for n, m, _, _ in points] for tool, points in status.items()} == {
        "tsm": [(1, 0.03), (50, 0.04)], "pm2": [(1, 0.15), (50, 0.16)]}
    assert [p[1] for p in plots.series(result, "cpu")["tsm"]] == pytest.approx([0.14, 0.4])  # per 60 s
    written = plots.plot(result, tmp_path)
    assert sorted(p.name for p in written) == ["bench-cpu.png", "bench-status.png"]  # one point: no curve
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in written)
    page = report.markdown({**json.loads((ROOT / "bench" / "results" / "2026-11-29.json").read_text())},
                           None, tuple(p.name for p in written))
    assert "![bench-status](bench-status.png)" in page
