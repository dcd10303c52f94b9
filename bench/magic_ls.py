"""What `%tsm ls` costs inside an IPython shell with 50 managed processes (goal: median < 10 ms).

Run: ``.venv/bin/python bench/magic_ls.py [N_PROCESSES] [N_CALLS]`` (defaults 50 and 50). Starts
N sleepers in a private TSM home, then times, call by call:

* ``%tsm ls``           the line magic in a real InteractiveShell (parse, request, DataFrame);
* ``%tsm ls --json``    the same without the DataFrame;
* ``tsm.processes()``   the frames function as a user calls it (its own connection each time);
* ``client.call('ls')`` the raw request on the shared client, the floor of every answer above.

Prints median, min and max in milliseconds. Everything it started is stopped at the end.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SLEEPER = [os.path.realpath(sys.executable), "-c", "import time; time.sleep(3600)"]


def timed(fn, calls: int) -> list[float]:
    fn()  # warm: imports, the first connection
    out = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1e3)
    return out


def main(argv: list[str]) -> int:
    n = int(argv[0]) if argv else 50
    calls = int(argv[1]) if len(argv) > 1 else 50
    home = Path(tempfile.mkdtemp(prefix="tsm-bench-", dir="/tmp"))
    os.environ["TSM_HOME"] = str(home)

    import tsm_notebook as tsm
    from tsm_notebook.notebook import api

    try:
        t0 = time.perf_counter()
        for i in range(n):
            tsm.start(SLEEPER, name=f"sleeper{i:02d}", min_uptime=0.1)
        print(f"started {n} sleepers in {time.perf_counter() - t0:.1f} s")

        from IPython.core.interactiveshell import InteractiveShell
        from traitlets.config import Config

        cfg = Config()
        cfg.HistoryManager.hist_file = ":memory:"
        ip = InteractiveShell.instance(config=cfg)
        ip.run_line_magic("load_ext", "tsm_notebook")
        df = ip.run_line_magic("tsm", "ls")
        assert len(df) == n, f"{len(df)} rows for {n} processes"

        client = api.shared_client()
        results = {
            "%tsm ls": timed(lambda: ip.run_line_magic("tsm", "ls"), calls),
            "%tsm ls --json": timed(lambda: ip.run_line_magic("tsm", "ls --json"), calls),
            "tsm.processes()": timed(tsm.processes, calls),
            "client.call('ls')": timed(lambda: client.call("ls"), calls),
        }
        print(f"\n{n} processes, {calls} calls each (ms)")
        print(f"{'':<20}{'median':>8}{'min':>8}{'max':>8}")
        for label, ms in results.items():
            print(f"{label:<20}{statistics.median(ms):>8.2f}{min(ms):>8.2f}{max(ms):>8.2f}")
        median = statistics.median(results["%tsm ls"])
        print(f"\n%tsm ls median {median:.2f} ms: {'meets' if median < 10 else 'misses'} the 10 ms goal")
    finally:
        api.kill()
        shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
