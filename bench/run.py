"""Benchmark harness: the same rows on every process manager, taken in turns (A B C A B C ...).

Usage::

    python bench/run.py                      # full run: bench/results/<date>.json + docs/benchmarks.md
    python bench/run.py --quick              # one repetition, few processes, small logs (seconds)
    python bench/run.py --drivers pm2,supervisor --groups idle,log --json out.json --markdown out.md
    python bench/run.py --drivers tsm@../old,tsm@. --groups many --many 500 --reps 3   # a before/after
    python bench/run.py --render bench/results/<date>.json   # rewrite docs/benchmarks.md only

The page embeds ``bench/results/<date>.notes.md`` when it exists: the analysis, with profiles, of
the goals a run missed (written by hand after looking at the run; never measured numbers).

Drivers: ``tsm`` (``TsmDriver`` from ``bench/tsm_driver.py``, constructed without arguments, used
when that file exists), ``pm2`` and ``supervisor`` (``bench/peers.py``). Groups of rows:

* ``idle``  - status command wall time at 1/10/50/200 processes (and the in-process status of a
  driver with ``status_in_process()``); daemon RSS at 0/10/50/200; daemon CPU over 60 s with 50
  idle processes (quick: 1/2/5 processes, 3 s).
* ``start`` - start ``python -m http.server PORT`` until the command returns and until the port
  accepts, daemon cold and warm, beside plain ``subprocess.Popen`` (the floor).
* ``crash`` - kill -9 of a managed server: until a new pid, and until the port accepts again.
* ``stop``  - stop a child that exits on SIGTERM, and one that ignores it.
* ``log``   - 2,000,000 (quick: 20,000) 60-byte lines, per line and in 64 KiB blocks (a driver
  with ``log_bytes(name)`` reports its captured size itself: logs that rotate and compress).
* ``many``  - 500 (quick: 5) processes: start all, status, stop all.

Every group run brings the driver's daemon up cold and shuts it down (proving nothing is left), so
a failure in one cannot leak into the next; what a driver cannot do is recorded as ``null`` with
the reason. Run it in one foreground command: a run spread across pauses of a machine is noise.
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402

from bench import measure, report  # noqa: E402
from bench.driver import Driver, Unsupported  # noqa: E402
from bench.peers import PM2Driver, SupervisorDriver  # noqa: E402
from bench.workloads.flood import LINE_BYTES  # noqa: E402

PYTHON = os.path.realpath(sys.executable)
WORKLOADS = ROOT / "bench" / "workloads"
GROUPS = ("idle", "start", "crash", "stop", "log", "many")
#: Seconds to wait for anything a manager should do within about a second.
READY_TIMEOUT = 30.0


@dataclass(frozen=True)
class Plan:
    """How big and how often: the full run and ``--quick`` differ only here."""

    reps: int
    status_sizes: tuple[int, ...]
    rss_sizes: tuple[int, ...]
    cpu_sizes: tuple[int, ...]
    cpu_window: float
    list_samples: int
    log_lines: int
    many: tuple[int, ...]


FULL = Plan(reps=3, status_sizes=(1, 10, 50, 200), rss_sizes=(0, 10, 50, 200), cpu_sizes=(10, 50, 200),
            cpu_window=60.0, list_samples=5, log_lines=2_000_000, many=(500, 2000))
QUICK = Plan(reps=1, status_sizes=(1, 2, 5), rss_sizes=(0, 2, 5), cpu_sizes=(5,),
             cpu_window=3.0, list_samples=2, log_lines=20_000, many=(5,))

Record = Callable[[str, str, float | int], None]


def sleeper(stubborn: bool = False) -> list[str]:
    """argv of an idle child (``stubborn`` ignores SIGTERM and SIGINT)."""
    return [PYTHON, str(WORKLOADS / ("stubborn.py" if stubborn else "sleeper.py"))]


def server(port: int) -> list[str]:
    """argv of ``python -m http.server PORT`` bound to the loopback address."""
    return [PYTHON, "-m", "http.server", str(port), "--bind", "127.0.0.1"]


def wait_pids(d: Driver, names: list[str], timeout: float) -> dict[str, int]:
    """Wait until every one of ``names`` has a pid; return them. Raises ``TimeoutError``."""
    seen: dict[str, int | None] = {}

    def all_up() -> bool:
        seen.update(d.pids(names))
        return all(seen.get(n) for n in names)

    measure.wait_until(all_up, timeout, f"{len(names)} processes of {d.name} to have a pid")
    return {n: p for n, p in seen.items() if p}


def processes(n: int) -> str:
    """``"1 process"``, ``"10 processes"``: the param label of a row measured at ``n`` processes."""
    return f"{n} process" if n == 1 else f"{n} processes"


def time_list(d: Driver) -> float:
    """Wall time of one run of the driver's status command."""
    return measure.wall(d.list_cmd(), d.env, ok=d.list_ok)


def record_status(d: Driver, rec: Record, param: str, samples: int) -> None:
    """``samples`` timings of the status command, and of the in-process status where the driver
    has one (``status_in_process() -> {label: seconds}``, tsm only) as row ``status_api``."""
    for _ in range(samples):
        rec("status", param, time_list(d))
    in_process = getattr(d, "status_in_process", None)
    if in_process is not None:
        for _ in range(samples):
            for label, seconds in in_process().items():
                rec("status_api", f"{param}, {label}", seconds)


# -- groups: each runs once for one driver, with the daemon cold at entry and shut down at exit ----


def run_idle(d: Driver, plan: Plan, rec: Record, work: Path, rep: int) -> None:
    """Rows 1 and 5: status wall time, daemon RSS and daemon CPU as idle processes are added."""
    d.start_daemon()
    daemon = d.daemon_pid()
    names: list[str] = []
    for size in sorted({*plan.status_sizes, *plan.rss_sizes, *plan.cpu_sizes}):
        if size > len(names):
            new = [f"idle{i}" for i in range(len(names), size)]
            d.start_many([(n, sleeper()) for n in new])
            names += new
            wait_pids(d, names, READY_TIMEOUT + size)
        if size in plan.status_sizes:
            record_status(d, rec, processes(size), plan.list_samples)
        else:
            time_list(d)  # one request served before memory is read, as at every other size
        if size in plan.rss_sizes:
            rec("rss", processes(size), measure.rss(daemon))
        if size in plan.cpu_sizes:
            before, deadline = measure.cpu_seconds(daemon), time.monotonic() + plan.cpu_window
            while (left := deadline - time.monotonic()) > 0:
                time.sleep(min(left, 0.5))  # a measuring window, checked for a dead daemon
                if not measure.pid_alive(daemon):
                    raise RuntimeError(f"{d.name} daemon died during the CPU window")
            rec("cpu", f"{processes(size)}, {plan.cpu_window:g} s", measure.cpu_seconds(daemon) - before)


def run_start(d: Driver, plan: Plan, rec: Record, work: Path, rep: int) -> None:
    """Row 2: start an HTTP server, daemon cold then warm."""
    for case in ("cold", "warm"):
        port = measure.free_port()
        started = time.monotonic()
        if case == "cold":
            d.start_daemon()
        d.start(f"web-{port}", server(port), port=port)
        rec("start_return", case, time.monotonic() - started)
        measure.wait_port(port, READY_TIMEOUT)
        rec("start_port", case, time.monotonic() - started)


def run_floor(rec: Record) -> None:
    """Row 2's floor: ``subprocess.Popen`` of the same server until its port accepts."""
    port = measure.free_port()
    started = time.monotonic()
    child = subprocess.Popen(server(port), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        rec("start_return", "cold", time.monotonic() - started)
        measure.wait_port(port, READY_TIMEOUT)
        rec("start_port", "cold", time.monotonic() - started)
    finally:
        child.kill()
        child.wait(READY_TIMEOUT)


def run_crash(d: Driver, plan: Plan, rec: Record, work: Path, rep: int) -> None:
    """Row 3: SIGKILL a managed server; time the new pid and the port accepting again."""
    d.start_daemon()
    port = measure.free_port()
    name = f"web-{port}"
    d.start(name, server(port), port=port)
    measure.wait_port(port, READY_TIMEOUT)
    measure.wait_until(lambda: d.online(name), READY_TIMEOUT, f"{name} online")
    old = d.pid(name)
    assert old is not None
    os.kill(old, signal.SIGKILL)
    killed = time.monotonic()
    waited, _new = measure.wait_pid_change(lambda: d.pid(name), old, READY_TIMEOUT)
    rec("crash_pid", "SIGKILL", waited)
    measure.wait_gone([old], READY_TIMEOUT)  # the old socket may accept until its owner is gone
    measure.wait_port(port, READY_TIMEOUT)
    rec("crash_port", "SIGKILL", time.monotonic() - killed)


def run_stop(d: Driver, plan: Plan, rec: Record, work: Path, rep: int) -> None:
    """Row 4: stop a child that exits on SIGTERM and one that ignores it."""
    d.start_daemon()
    cases = {"exits on SIGTERM": ("polite", sleeper()), "ignores SIGTERM": ("stubborn", sleeper(True))}
    for name, argv in cases.values():
        d.start(name, argv)
    for name, _ in cases.values():
        measure.wait_until(lambda: d.online(name), READY_TIMEOUT, f"{name} online")
    for case, (name, _) in cases.items():
        pid = d.pid(name)
        assert pid is not None
        rec("stop", case, d.stop(name))
        measure.wait_gone([pid], READY_TIMEOUT)


def count_lines(paths: list[Path], expected: int) -> int:
    """How many distinct intact flood lines numbered below ``expected`` the files hold
    (``.gz`` files, a manager's rotated logs, are read decompressed)."""
    seen = bytearray(expected)
    for path in paths:
        if not path.exists():
            continue
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as log:
            for line in log:
                if len(line) == LINE_BYTES and line[10:11] == b" " and line[:10].isdigit():
                    number = int(line[:10])
                    if number < expected:
                        seen[number] = 1
    return sum(seen)


def log_size(d: Driver, name: str) -> int:
    """Bytes of ``name``'s stdout the manager has captured so far: the driver's ``log_bytes`` where
    it has one (logs that rotate and compress), else the size of its ``log_files``."""
    log_bytes = getattr(d, "log_bytes", None)
    if log_bytes is not None:
        return int(log_bytes(name))
    return sum(p.stat().st_size for p in d.log_files(name) if p.exists())


def run_log(d: Driver, plan: Plan, rec: Record, work: Path, rep: int) -> None:
    """Row 6: log capture throughput and loss, one ``write`` per line and in 64 KiB blocks."""
    d.start_daemon()
    count = plan.log_lines
    expected = count * LINE_BYTES
    for mode in ("line", "block"):
        name = f"flood-{mode}-{rep}"
        marker = work / f"{d.name}-{name}.json"
        d.start(name, [PYTHON, str(WORKLOADS / "flood.py"), str(count), mode, str(marker)])
        size, grew_at, grew_mono = -1, time.time(), time.monotonic()
        deadline = time.monotonic() + 120 + count / 5000
        while True:  # done at the full size, or once the child is done and the log stops growing
            now = time.monotonic()
            current = log_size(d, name)
            if current != size:
                size, grew_at, grew_mono = current, time.time(), now
            if size >= expected or (marker.exists() and now - grew_mono > 3.0):
                break
            if now > deadline:
                raise TimeoutError(f"{d.name}: log of {name} stuck at {size} of {expected} bytes")
            time.sleep(0.005)
        measure.wait_until(marker.exists, READY_TIMEOUT, "the flooder's marker")
        begun = json.loads(marker.read_text())["start"]
        files = d.log_files(name)  # listed once the capture is over: rotated files included
        rec("log_rate", f"{count:,} lines, {mode}", count / max(grew_at - begun, 1e-9))
        rec("log_lost", f"{count:,} lines, {mode}", count - count_lines(files, count))
        d.stop(name)
        for path in files:  # hundreds of MB per run: do not keep them
            path.unlink(missing_ok=True)


def run_many(d: Driver, plan: Plan, rec: Record, work: Path, rep: int) -> None:
    """Row 7: start many sleepers in one command, list them, stop them all, at each size of
    ``plan.many`` (500 and 2,000 in a full run); the daemon's RSS is read with all of them up."""
    d.start_daemon()
    daemon = d.daemon_pid()
    for many in plan.many:
        names = [f"many{i}" for i in range(many)]
        param = processes(many)
        started = time.monotonic()
        rec("many_start", param, d.start_many([(n, sleeper()) for n in names]))
        pids = wait_pids(d, names, READY_TIMEOUT + many)
        rec("many_up", param, time.monotonic() - started)
        record_status(d, rec, param, 1)  # the status row at 500 and 2,000 processes
        if daemon is not None and measure.pid_alive(daemon):
            rec("rss", param, measure.rss(daemon))
        rec("many_stop", param, d.stop_all())
        measure.wait_gone(pids.values(), READY_TIMEOUT + many / 10)
        d.delete_all()


RUNNERS = {"idle": run_idle, "start": run_start, "crash": run_crash, "stop": run_stop,
           "log": run_log, "many": run_many}
#: The rows each group fills, so a failed group marks all of them null with its reason.
GROUP_ROWS = {"idle": ("status", "status_api", "rss", "cpu"), "start": ("start_return", "start_port"),
              "crash": ("crash_pid", "crash_port"), "stop": ("stop",), "log": ("log_rate", "log_lost"),
              "many": ("many_start", "many_up", "status", "status_api", "rss", "many_stop")}


# -- the harness ------------------------------------------------------------------------------------


def available_drivers(wanted: list[str] | None) -> list[Driver]:
    """Drivers named in ``wanted`` (default: tsm if ``bench/tsm_driver.py`` exists, pm2, supervisor)."""
    factories: dict[str, Callable[[], Driver]] = {}
    if (ROOT / "bench" / "tsm_driver.py").exists():
        try:
            from bench.tsm_driver import TsmDriver  # written beside this harness, may be absent
        except Exception:
            if wanted and "tsm" in wanted:
                raise
            print("bench/tsm_driver.py failed to import, running the peers only:", file=sys.stderr)
            traceback.print_exc()
        else:
            factories["tsm"] = TsmDriver
    factories["pm2"] = PM2Driver
    factories["supervisor"] = SupervisorDriver
    names = wanted or list(factories)
    if "tsm" in factories:  # tsm@TREE: another checkout's package, for a before/after in one run
        for n in names:
            if n.startswith("tsm@"):
                factories[n] = (lambda tree: lambda: factories["tsm"](tree=Path(tree)))(n[4:])
    unknown = [n for n in names if n not in factories]
    if unknown:
        raise SystemExit(f"unknown or unavailable driver(s): {', '.join(unknown)}; have {', '.join(factories)}")
    return [factories[n]() for n in names]


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:200]


def _node_version() -> str | None:
    try:
        return subprocess.run(["node", "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    except OSError:
        return None


def source_state() -> dict[str, Any]:
    """The git commit of the tree and its uncommitted files under ``tsm_notebook/`` (what a fresh
    tsm daemon runs), or ``None`` values outside a git checkout."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30)
        except OSError:
            return None
        return done.stdout if done.returncode == 0 else None

    commit = git("rev-parse", "--short", "HEAD")
    status = git("status", "--porcelain", "--", "tsm_notebook")
    return {"commit": commit.strip() if commit else None,
            "dirty": sorted(line[3:] for line in status.splitlines()) if status is not None else None}


def run(drivers: list[Driver], plan: Plan, groups: list[str], workdir: Path, *, quick: bool) -> dict[str, Any]:
    """Run ``groups`` on ``drivers`` in turns and return the results document (see ``report``)."""
    source = source_state()
    samples: dict[report.Key, dict[str, list[float | int]]] = defaultdict(lambda: defaultdict(list))
    reasons: dict[str, dict[str, str]] = defaultdict(dict)
    errors: list[dict[str, Any]] = []
    started = time.time()
    for d in drivers:
        d.setup(workdir)  # each makes its own sub-folder
    scratch = workdir / "scratch"
    scratch.mkdir(exist_ok=True)
    for group in groups:
        for rep in range(plan.reps):
            turn = [*drivers, None] if group == "start" else drivers  # None: the Popen floor
            for d in turn:
                column = d.name if d else "floor"

                def rec(row: str, param: str, value: float | int, column: str = column) -> None:
                    samples[(row, param)][column].append(value)

                began = time.monotonic()
                try:
                    if d is None:
                        run_floor(rec)
                    else:
                        RUNNERS[group](d, plan, rec, scratch, rep)
                    outcome = "ok"
                except Exception as exc:
                    outcome = _reason(exc)
                    for row_id in GROUP_ROWS[group]:
                        reasons[row_id].setdefault(column, outcome)
                    if not isinstance(exc, Unsupported):
                        traceback.print_exc()
                finally:
                    if d is not None:
                        try:
                            d.shutdown()
                        except Exception as exc:
                            outcome += f"; shutdown: {_reason(exc)}"
                if outcome != "ok":
                    errors.append({"group": group, "rep": rep, "column": column, "reason": outcome})
                print(f"[{group} {rep + 1}/{plan.reps}] {column}: {outcome} "
                      f"({time.monotonic() - began:.1f} s)", file=sys.stderr, flush=True)
    for d in drivers:
        cleanup = getattr(d, "cleanup", None)
        if cleanup is not None:
            cleanup()
    if {"idle", "many"} & set(groups) and any(hasattr(d, "status_in_process") for d in drivers):
        for d in drivers:
            if not hasattr(d, "status_in_process"):
                reasons["status_api"].setdefault(d.name, report.NOT_APPLICABLE)
    columns = [d.name for d in drivers] + (["floor"] if "start" in groups else [])
    return {
        "date": datetime.date.today().isoformat(),
        "started": started,
        "finished": time.time(),
        "quick": quick,
        "plan": asdict(plan),
        "groups": groups,
        "columns": columns,
        "machine": {
            "cpus": os.cpu_count(),
            "memory_bytes": psutil.virtual_memory().total,
            "platform": platform.platform(),
            "python": platform.python_version(),
            "node": _node_version(),
        },
        "drivers": {d.name: {"version": d.version} for d in drivers},
        # each group starts a fresh daemon: it runs the tsm_notebook code on disk at that moment
        "source": {"start": source, "end": source_state()},
        "errors": errors,
        "rows": report.summarise(samples, reasons, columns),
    }


def notes_for(json_path: Path) -> str | None:
    """The hand-written analysis kept beside a results file (``<stem>.notes.md``), if any."""
    path = json_path.with_name(json_path.stem + ".notes.md")
    return path.read_text() if path.exists() else None


def extras_for(json_path: Path) -> str | None:
    """The reports of ``bench/extras.py`` for the same day (``<stem>.extras.md``), if any."""
    path = json_path.with_name(json_path.stem + ".extras.md")
    return path.read_text() if path.exists() else None


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _sizes(parser: argparse.ArgumentParser, text: str) -> tuple[int, ...]:
    """``"50,200"`` -> ``(50, 200)``; anything else is a usage error."""
    try:
        sizes = tuple(int(x) for x in text.split(","))
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        parser.error(f"sizes must be whole numbers >= 1, comma-separated, not {text!r}")
    return sizes


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the benchmark, write the JSON and the Markdown page."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one repetition, few processes, small logs")
    parser.add_argument("--reps", type=int, help="repetitions per row (default 3, quick 1)")
    parser.add_argument("--drivers", help="comma-separated, in turn order (default: tsm if present, pm2, supervisor)")
    parser.add_argument("--groups", help=f"comma-separated subset of {','.join(GROUPS)}")
    parser.add_argument("--many", help="comma-separated sizes of the many group (default 500,2000; quick 5)")
    parser.add_argument("--cpu-sizes", help="comma-separated sizes of the idle CPU rows (default 10,50,200)")
    parser.add_argument("--cpu-window", type=float, help="seconds of each idle CPU window (default 60)")
    parser.add_argument("--json", type=Path, help="results file (default bench/results/<date>[-quick].json)")
    parser.add_argument("--markdown", type=Path, help="page (default docs/benchmarks.md; quick: beside the JSON)")
    parser.add_argument("--workdir", type=Path, help="scratch folder (default: a new temporary one, removed after)")
    parser.add_argument("--render", type=Path, metavar="JSON",
                        help="measure nothing: rewrite the page (--markdown, default docs/benchmarks.md) from a results file")
    args = parser.parse_args(argv)
    if args.render:
        md_path = args.markdown or ROOT / "docs" / "benchmarks.md"
        result = json.loads(args.render.read_text())
        _write(md_path, report.markdown(result, notes_for(args.render), _plots(result, md_path.parent),
                                        extras_for(args.render)))
        print(f"wrote {md_path}", file=sys.stderr)
        return 0

    plan = QUICK if args.quick else FULL
    changes: dict[str, Any] = {}
    if args.reps:
        changes["reps"] = args.reps
    if args.many:
        changes["many"] = _sizes(parser, args.many)
    if args.cpu_sizes:
        changes["cpu_sizes"] = _sizes(parser, args.cpu_sizes)
    if args.cpu_window:
        changes["cpu_window"] = args.cpu_window
    plan = Plan(**{**asdict(plan), **changes})
    groups = args.groups.split(",") if args.groups else list(GROUPS)
    bad = [g for g in groups if g not in GROUPS]
    if bad:
        parser.error(f"unknown group(s) {', '.join(bad)}; choose from {', '.join(GROUPS)}")
    drivers = available_drivers(args.drivers.split(",") if args.drivers else None)
    stem = datetime.date.today().isoformat() + ("-quick" if args.quick else "")
    json_path = args.json or ROOT / "bench" / "results" / f"{stem}.json"
    md_path = args.markdown or (json_path.with_suffix(".md") if args.quick else ROOT / "docs" / "benchmarks.md")

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="tsm-bench-"))
    try:
        result = run(drivers, plan, groups, workdir, quick=args.quick)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    _write(json_path, json.dumps(result, indent=1) + "\n")
    images = _plots(result, md_path.parent) if not args.quick else ()
    _write(md_path, report.markdown(result, notes_for(json_path), images, extras_for(json_path)))
    print(f"wrote {json_path} and {md_path}", file=sys.stderr)
    return 0


def _plots(result: dict[str, Any], folder: Path) -> tuple[str, ...]:
    """The growth curves beside the page (bench/plots.py), by file name; none without matplotlib."""
    try:
        from bench import plots

        paths = plots.plot(result, folder)
    except ImportError as exc:
        print(f"no plots ({exc})", file=sys.stderr)
        return ()
    for path in paths:
        print(f"wrote {path}", file=sys.stderr)
    return tuple(path.name for path in paths)


if __name__ == "__main__":
    raise SystemExit(main())
