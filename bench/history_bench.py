"""What the history costs: the sampler, the daemon at rest, the read paths, the database's growth.

Run: ``.venv/bin/python bench/history_bench.py [--procs 50] [--seconds 60] [--no-peers]``
(about two minutes). In a scratch ``TSM_HOME`` with the default configuration (a sample every
2 s) it starts ``--procs`` idle processes (``bench/workloads/sleeper.py``) and measures:

* the daemon's CPU over ``--seconds`` (utime + stime from ``/proc/<pid>/stat``), as a percent
  of one core, and the metric rows it wrote meanwhile;
* the sampler's cost per process per tick (``Sampler.sample`` on the same trees, in-process);
* ``tsm_notebook.frames.processes()`` in-process, 50 calls on one client (median/min/max);
* ``tsm ls`` wall time, median of 20 runs of the real command, beside ``supervisorctl status``
  with as many programs (bench/peers.py; skipped with ``--no-peers`` or when not installed);
* database size per process-day at the default interval, extrapolated from the bytes per row
  of a scratch database filled with 50 000 copies of the rows the daemon really wrote.

Prints one table. Everything it starts is stopped by pid at the end, and proven gone.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.measure import wait_until  # noqa: E402
from tsm_notebook.client import commands  # noqa: E402
from tsm_notebook.client.client import Client  # noqa: E402
from tsm_notebook.core.config import Config  # noqa: E402
from tsm_notebook.engine.sampler import Sampler  # noqa: E402
from tsm_notebook.engine.store import Store  # noqa: E402

PY = os.path.realpath(sys.executable)
SLEEPER = str(ROOT / "bench" / "workloads" / "sleeper.py")
TICK = os.sysconf("SC_CLK_TCK")
DAY = 86400.0


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` in seconds (its own, not its children's)."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # fields 14 and 15 of proc(5)


def ms(values: list[float]) -> str:
    v = [x * 1e3 for x in values]
    return f"median {statistics.median(v):.2f} ms, min {min(v):.2f}, max {max(v):.2f}"


def start_all(home: Path, n: int) -> None:
    def one(i: int) -> None:
        ns = commands.parse(["start", "--name", f"idle{i}", "--", PY, SLEEPER])
        with Client(home) as c:
            commands.start(c, commands.spec_from_args(ns))

    with Client(home) as c:
        c.call("ping")  # one daemon, started once, before the parallel starts
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(n)))


def metric_rows(db: Path) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT count(*) FROM metrics").fetchone()[0]
    finally:
        conn.close()


def bytes_per_row(sample_rows: list[dict], interval: float, workdir: Path, ticks: int = 1000) -> float:
    """Bytes per metric row (indexes included) of a database filled with copies of real rows."""
    db = workdir / "size.sqlite"
    store = Store(db)
    store.event(tsm_id=None, name=None, event="daemon-start")
    store.flush()
    empty = _checkpointed_size(db)
    t0 = time.time()
    for k in range(ticks):
        store.metrics([dict(r, time=t0 + k * interval) for r in sample_rows])
    if not store.flush(120):
        raise SystemExit(f"the scratch store did not flush: {store.problem}")
    store.close()
    return (_checkpointed_size(db) - empty) / (ticks * len(sample_rows))


def _checkpointed_size(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return db.stat().st_size


def tsm_ls_times(home: Path, runs: int) -> list[float]:
    env = dict(os.environ, TSM_HOME=str(home))
    tsm = ROOT / ".venv" / "bin" / "tsm"
    argv = [str(tsm), "ls"] if tsm.exists() else [sys.executable, "-m", "tsm_notebook", "ls"]
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, check=True)
        times.append(time.perf_counter() - t)
    return times


def supervisor_status_times(n: int, runs: int, workdir: Path) -> list[float] | str:
    """``supervisorctl status`` wall times with ``n`` idle programs, or why they were not measured."""
    try:
        from bench.install_peers import CACHE
        from bench.peers import SupervisorDriver

        if not any(CACHE.glob("supervisor-*")):
            return "supervisor is not installed (bench/install_peers.py)"
        driver = SupervisorDriver()
    except Exception as exc:  # the peers' tooling is optional here
        return f"not available: {exc}"
    try:
        driver.setup(workdir)
        driver.start_daemon()
        names = [f"idle{i}" for i in range(n)]
        driver.start_many([(name, [PY, SLEEPER]) for name in names])
        wait_until(lambda: all(driver.pids(names).values()), 60, "supervisor's programs")
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            subprocess.run(driver.list_cmd(), env=driver.env, capture_output=True, stdin=subprocess.DEVNULL)
            times.append(time.perf_counter() - t)
        return times
    except Exception as exc:
        return f"failed: {exc}"
    finally:
        driver.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--procs", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--no-peers", action="store_true")
    a = ap.parse_args()
    n = a.procs
    interval = Config().sample_interval
    workdir = Path(tempfile.mkdtemp(prefix="tsm-hb-", dir="/tmp"))
    home = workdir / "home"
    results: list[tuple[str, str]] = []
    client = Client(home)
    children: list[int] = []
    try:
        t = time.monotonic()
        start_all(home, n)
        rows = client.call("ls", all=True)
        assert sum(r["status"] == "online" for r in rows) == n, [r["status"] for r in rows]
        children = [r["pid"] for r in rows]
        daemon = client.call("ping")["pid"]
        print(f"{n} idle processes online in {time.monotonic() - t:.1f} s; daemon pid {daemon}; "
              f"sample interval {interval} s; {os.cpu_count()} cpus", flush=True)
        # let the first ticks (new psutil objects) and the starts' own work pass
        db = home / "db" / "tsm.sqlite"
        wait_until(lambda: db.exists() and metric_rows(db) >= 2 * n, 30, "two sampling ticks")

        rows_before, cpu_before, t0 = metric_rows(db), cpu_seconds(daemon), time.monotonic()
        time.sleep(a.seconds)  # the measured window: nothing else talks to the daemon meanwhile
        cpu_after, t1 = cpu_seconds(daemon), time.monotonic()
        client.call("history_flush")
        written = metric_rows(db) - rows_before
        share = (cpu_after - cpu_before) / (t1 - t0) * 100
        results.append((f"daemon CPU, {n} idle, {a.seconds:.0f} s", f"{share:.2f} % of one core "
                        f"({cpu_after - cpu_before:.2f} s cpu; goal < 1 %)"))
        results.append(("metric rows written", f"{written} ({written / (t1 - t0):.1f}/s, "
                        f"{n / interval:.1f}/s expected)"))

        targets = {r["tsm_id"]: (r["name"], r["pid"]) for r in client.call("ls", all=True)}
        sampler = Sampler()
        sampler.sample(targets)
        ticks = []
        for _ in range(20):
            time.sleep(0.05)
            s = time.perf_counter()
            got = sampler.sample(targets)
            ticks.append(time.perf_counter() - s)
            assert len(got) == n
        med = statistics.median(ticks)
        results.append(("sampler, one tick", ms(ticks)))
        results.append(("sampler, per process per tick", f"{med / n * 1e6:.0f} us"))

        from tsm_notebook.notebook import frames

        frames.processes(client=client)  # warm: pandas' first-use paths
        calls = []
        for _ in range(50):
            s = time.perf_counter()
            frame = frames.processes(client=client)
            calls.append(time.perf_counter() - s)
        assert len(frame) == n
        results.append((f"frames.processes(), {n} rows", ms(calls) + " (goal < 10 ms)"))

        ls = tsm_ls_times(home, 20)
        results.append((f"tsm ls, {n} processes", ms(ls)))

        per_row = bytes_per_row(list(got), interval, workdir)
        per_day = per_row * DAY / interval
        results.append(("database, bytes per metric row", f"{per_row:.0f} B"))
        results.append(("database per process-day", f"{per_day / 2**20:.2f} MiB at {interval:g} s "
                        f"({per_day * 7 / 2**20:.1f} MiB per process over the 7-day retention)"))
    finally:
        client.close()
        pid = Client(home, autostart=False).kill(timeout=60)
        if pid is not None:
            wait_until(lambda: not os.path.exists(f"/proc/{pid}"), 30, "the daemon to exit")
        left = [p for p in children if os.path.exists(f"/proc/{p}")]
        for p in left:
            os.kill(p, 9)
        if left:
            raise SystemExit(f"processes left alive after tsm kill (killed now): {left}")

    if not a.no_peers:
        sv = supervisor_status_times(n, 20, workdir)
        if isinstance(sv, str):
            results.append((f"supervisorctl status, {n} programs", sv))
        else:
            results.append((f"supervisorctl status, {n} programs", ms(sv)))
            results.append(("tsm ls / supervisorctl status", f"{statistics.median(ls) / statistics.median(sv):.2f} "
                            "(goal < 0.5)"))
    shutil.rmtree(workdir, ignore_errors=True)

    width = max(len(k) for k, _ in results)
    print()
    for key, value in results:
        print(f"{key.ljust(width)}  {value}")


if __name__ == "__main__":
    main()
