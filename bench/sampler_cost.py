"""What one sampling tick costs: 50 sleeping single-process trees, 20 ticks.

Run: ``.venv/bin/python bench/sampler_cost.py [N_PROCESSES] [N_TICKS] [--listen]`` (``--listen``:
each child also listens on a loopback port, so the port lookup has work). Prints the median, min
and max wall time per tick and per process, with and without the listening-port lookup, and the
cost of reading the process table alone (which grows with every process on the machine).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

from tsm_notebook.engine.sampler import Sampler, _process_table


SLEEPER = "import time; time.sleep(600)"
LISTENER = "import socket, time; s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); time.sleep(600)"


def start_children(n: int, code: str) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL) for _ in range(n)]


def wait_settled(children: list[subprocess.Popen], timeout: float = 30.0) -> None:
    """Wait until every child is asleep with unchanged cpu time (its interpreter is up)."""
    import psutil

    deadline = time.monotonic() + timeout
    pending = {c.pid: psutil.Process(c.pid) for c in children}
    last: dict[int, float] = {}
    while pending:
        if time.monotonic() > deadline:
            raise SystemExit(f"{len(pending)} children did not settle in {timeout} s")
        for pid, proc in list(pending.items()):
            t = sum(proc.cpu_times()[:2])
            if proc.status() == psutil.STATUS_SLEEPING and last.get(pid) == t:
                del pending[pid]
            last[pid] = t
        time.sleep(0.1)


def measure(sampler: Sampler, targets: dict[int, tuple[str, int]], ticks: int, *, ports: bool) -> list[float]:
    sampler.sample(targets, ports=ports)  # the first tick creates the psutil objects
    times = []
    for _ in range(ticks):
        time.sleep(0.05)
        start = time.perf_counter()
        rows = sampler.sample(targets, ports=ports)
        times.append(time.perf_counter() - start)
        assert len(rows) == len(targets), f"{len(rows)} rows for {len(targets)} targets"
    return times


def report(label: str, times: list[float], n: int) -> None:
    ms = [t * 1e3 for t in times]
    print(
        f"{label:<28} per tick: median {statistics.median(ms):6.2f} ms  min {min(ms):6.2f}  max {max(ms):6.2f}"
        f"   per process: median {statistics.median(ms) / n * 1e3:5.0f} us"
    )


def main() -> None:
    args = [a for a in sys.argv[1:] if a != "--listen"]
    listen = "--listen" in sys.argv[1:]
    n = int(args[0]) if args else 50
    ticks = int(args[1]) if len(args) > 1 else 20
    children = start_children(n, LISTENER if listen else SLEEPER)
    try:
        wait_settled(children)
        targets = {i: (f"p{i}", c.pid) for i, c in enumerate(children)}
        sampler = Sampler()
        print(f"{n} {'listening' if listen else 'sleeping'} children, {ticks} ticks, {len(os.listdir('/proc'))} /proc entries, {os.cpu_count()} cpus")
        report("sample(ports=True)", measure(sampler, targets, ticks, ports=True), n)
        report("sample(ports=False)", measure(sampler, targets, ticks, ports=False), n)
        table = []
        for _ in range(ticks):
            start = time.perf_counter()
            _process_table()
            table.append(time.perf_counter() - start)
        report("process table alone", table, n)
    finally:
        for child in children:
            child.kill()
        for child in children:
            child.wait(timeout=10)
    alive = [c.pid for c in children if c.returncode is None]
    print("children left:", alive or "none")


if __name__ == "__main__":
    main()
