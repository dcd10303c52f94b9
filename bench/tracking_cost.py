"""What descendant tracking costs: `ls`, one start, one stop, `stop all` and the idle daemon's CPU
with 50 and 500 managed processes, for this tree and a tree without tracking, in one run.

    python bench/tracking_cost.py --before /path/to/old/checkout [--sizes 50,500] [--idle 5] [--rounds 2]

Each tree runs in its own interpreter (``PYTHONPATH`` points at it) against a fresh home; the
processes are ``sleep`` (brought up together through ``resurrect``). Figures: milliseconds
(median of the repeats) and the daemon's CPU in percent of one core while nothing happens.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
REPEATS = 7


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def worker(n: int, idle: float) -> dict:
    """Runs inside the tree under test (imported from PYTHONPATH)."""
    from tsm_notebook.client.client import Client
    from tsm_notebook.core.spec import build_spec

    home = Path(tempfile.mkdtemp(prefix="tsm-bench-", dir="/tmp"))
    c = Client(home, timeout=600)
    try:
        c.call("ping")
        items = []
        for i in range(n):
            spec = build_spec(f"sleep {600 + i}", name=f"p{i}").to_dict()
            items.append({"name": f"p{i}", "tsm_id": i, "spec": spec, "env": {}, "port": None})
        (home / "dump.json").write_text(json.dumps({"version": "bench", "saved": time.time(), "processes": items}))
        t = time.perf_counter()
        r = c.call("resurrect")
        bring_up = time.perf_counter() - t
        assert len(r["started"]) == n, r["failed"]
        time.sleep(1.0)
        out = {"n": n, "resurrect_s": round(bring_up, 2)}
        ls = []
        for _ in range(REPEATS):
            t = time.perf_counter()
            c.call("ls")
            ls.append(time.perf_counter() - t)
        out["ls_ms"] = round(statistics.median(ls) * 1e3, 1)
        starts, stops = [], []
        for i in range(REPEATS):
            spec = build_spec(f"sleep {5000 + i}", name=f"extra{i}").to_dict()
            t = time.perf_counter()
            c.call("start", spec=spec, env={})
            starts.append(time.perf_counter() - t)
        for i in range(REPEATS):
            t = time.perf_counter()
            c.call("stop", target=f"extra{i}")
            stops.append(time.perf_counter() - t)
        out["start_ms"] = round(statistics.median(starts) * 1e3, 1)
        out["stop_ms"] = round(statistics.median(stops) * 1e3, 1)
        pid = c.call("ping")["pid"]
        time.sleep(1.0)
        cpu0, t0 = _cpu_seconds(pid), time.monotonic()
        time.sleep(idle)
        out["idle_cpu_pct"] = round(100 * (_cpu_seconds(pid) - cpu0) / (time.monotonic() - t0), 2)
        t = time.perf_counter()
        c.call("stop", target="all")
        out["stop_all_s"] = round(time.perf_counter() - t, 2)
        return out
    finally:
        try:
            c.kill(timeout=120)
        except Exception:
            pass
        shutil.rmtree(home, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True, help="a checkout without descendant tracking")
    ap.add_argument("--sizes", default="50,500")
    ap.add_argument("--idle", type=float, default=5.0, help="seconds of idle CPU measured")
    ap.add_argument("--rounds", type=int, default=1, help="before/after pairs, alternated (the machine is noisy)")
    ap.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker is not None:
        print(json.dumps(worker(a.worker, a.idle)))
        return 0
    rows = []
    for n in (int(s) for s in a.sizes.split(",")):
        for label, tree in (("before", Path(a.before).resolve()), ("after", HERE)) * a.rounds:
            env = dict(os.environ, PYTHONPATH=str(tree))
            env.pop("TSM_HOME", None)
            r = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--before", a.before, "--idle",
                                str(a.idle), "--worker", str(n)], env=env, capture_output=True, text=True,
                               cwd="/tmp", timeout=900)
            if r.returncode != 0:
                print(r.stderr, file=sys.stderr)
                return 1
            rows.append({"tree": label, **json.loads(r.stdout.strip().splitlines()[-1])})
            print(json.dumps(rows[-1]), flush=True)
    keys = ["n", "tree", "ls_ms", "start_ms", "stop_ms", "stop_all_s", "idle_cpu_pct", "resurrect_s"]
    print()
    print("  ".join(f"{k:>12}" for k in keys))
    for r in rows:
        print("  ".join(f"{r[k]!s:>12}" for k in keys))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
