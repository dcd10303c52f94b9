"""The floor of the ``many`` rows: ``subprocess.Popen`` of N sleepers (the workload ``bench/run.py``
starts) from one Python process, then SIGTERM to all and wait, in one run.

Run: ``.venv/bin/python bench/popen_many.py [N ...]`` (default 500 2000). Prints seconds until
every Popen returned (start all), and from the first SIGTERM until every child was reaped (stop
all), per N.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

SLEEPER = Path(__file__).resolve().parent / "workloads" / "sleeper.py"


def once(n: int) -> tuple[float, float]:
    """(seconds to start ``n`` sleepers, seconds to stop them all)."""
    py = os.path.realpath(sys.executable)
    procs = []
    t = time.perf_counter()
    try:
        for _ in range(n):
            procs.append(subprocess.Popen([py, str(SLEEPER)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL, start_new_session=True))
        started = time.perf_counter() - t
    finally:
        t = time.perf_counter()
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait()
    return started, time.perf_counter() - t


def main(argv: list[str]) -> int:
    """Measure each size given (default 500 and 2000) and print the figures."""
    for n in [int(a) for a in argv] or [500, 2000]:
        start, stop = once(n)
        print(f"Popen floor, {n} sleepers: start all {start:.2f} s, stop all {stop:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
