"""What watching costs the daemon: 20 processes watching one tree of 10,000 files, idle and
during a burst of 1,000 file writes; tsm_notebook's daemon beside PM2 7.0.4's (``watch``), one
after the other in the same run, on the same tree.

Run: ``.venv/bin/python bench/watch_cpu.py [--window SECONDS] [--files N] [--procs N] [--writes N]``
(defaults 20 s, 10,000, 20, 1,000). For each manager it prints the daemon's CPU time (user +
system, the daemon process alone: the watched children are sleepers) over an idle window once
every watch is in place, and over a window of the same length that starts with the burst of
writes (every write a small overwrite of an existing file, as fast as Python makes them), the
daemon's RSS after the burst, and the restarts the burst caused (one per process is the goal).
A first row runs tsm_notebook's daemon with the same processes unwatched: what it spends anyway
(the metric sampler, the one-second tick), so the difference is what watching costs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.measure import wait_until  # noqa: E402
from bench.peers import PM2Driver  # noqa: E402

SLEEPER = "import time; time.sleep(3600)"


def make_tree(root: Path, files: int) -> list[Path]:
    per_dir = 100
    paths = []
    for i in range(files):
        d = root / f"pkg{i // per_dir:03d}"
        if i % per_dir == 0:
            d.mkdir(parents=True)
        p = d / f"mod{i % per_dir:03d}.py"
        p.write_text(f"x = {i}\n")
        paths.append(p)
    return paths


def cpu(pid: int) -> float:
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def window(pid: int, seconds: float, action=None) -> float:
    """CPU seconds ``pid`` spent over ``seconds`` of wall time (``action`` runs at its start)."""
    before = cpu(pid)
    start = time.monotonic()
    if action is not None:
        action()
    time.sleep(max(0.0, seconds - (time.monotonic() - start)))
    return cpu(pid) - before


def burst(paths: list[Path], writes: int):
    def go() -> None:
        step = max(1, len(paths) // writes)
        for n, p in enumerate(paths[::step][:writes]):
            p.write_text(f"x = {n}  # edited\n")
    return go


def run_tsm_unwatched(tree: Path, paths: list[Path], work: Path, args) -> dict:
    """The baseline: the same daemon and processes with no watch (sampling, ticks: the rest)."""
    return run_tsm(tree, paths, work, args, watch=False)


def run_tsm(tree: Path, paths: list[Path], work: Path, args, watch: bool = True) -> dict:
    from tsm_notebook.client.client import Client
    from tsm_notebook.core import report
    from tsm_notebook.core.paths import Home
    from tsm_notebook.core.spec import build_spec

    home = Home(Path(tempfile.mkdtemp(prefix="tsm-wb-", dir="/tmp")))
    env = dict(os.environ, TSM_HOME=str(home.root))
    c = Client(home)
    try:
        for i in range(args.procs):
            spec = build_spec(argv=[sys.executable, "-c", SLEEPER], name=f"w{i}", cwd=str(tree), watch=watch)
            c.call("start", spec=spec.to_dict(), env=env)
        names = {f"w{i}" for i in range(args.procs)}

        def watching() -> bool:
            c.call("history_flush")
            return names <= {e["name"] for e in report.events(home, None) if e["event"] == "watching"}

        if watch:
            wait_until(watching, 120, "every watch in place")
        pid = c.call("ping")["pid"]
        idle = window(pid, args.window)
        busy = window(pid, args.window, burst(paths, args.writes))
        rss = psutil.Process(pid).memory_info().rss
        restarts = sum(r["restarts"] for r in c.call("ls"))
        return {"idle_cpu_s": idle, "burst_cpu_s": busy, "rss": rss, "restarts": restarts}
    finally:
        try:
            c.kill(timeout=60)
        finally:
            c.close()
            import shutil

            shutil.rmtree(home.root, ignore_errors=True)


def run_pm2(tree: Path, paths: list[Path], work: Path, args) -> dict:
    pm2 = PM2Driver()
    pm2.setup(work)
    try:
        pm2.start_daemon()
        apps = []
        for i in range(args.procs):
            app = pm2._app(f"w{i}", [sys.executable, "-c", SLEEPER])
            app.update({"watch": [str(tree)], "cwd": str(tree)})
            apps.append(app)
        pm2._start_file("watch", apps)
        pid = pm2.daemon_pid()
        # chokidar walks the tree once per app on start: wait until the daemon is quiet again
        last = cpu(pid)
        while True:
            time.sleep(1.0)
            now = cpu(pid)
            if now - last < 0.05:
                break
            last = now
        idle = window(pid, args.window)
        busy = window(pid, args.window, burst(paths, args.writes))
        rss = psutil.Process(pid).memory_info().rss
        out = subprocess.run([str(pm2.bin), "jlist"], env=pm2.env, capture_output=True, text=True, timeout=120).stdout
        restarts = sum(p["pm2_env"].get("restart_time", 0) for p in json.loads(out[out.index("["):]))
        return {"idle_cpu_s": idle, "burst_cpu_s": busy, "rss": rss, "restarts": restarts}
    finally:
        pm2.delete_all()
        pm2.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--window", type=float, default=20.0)
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--procs", type=int, default=20)
    ap.add_argument("--writes", type=int, default=1_000)
    ap.add_argument("--only", choices=("tsm", "pm2"), help="one manager (tsm: with its no-watch baseline)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="watch-bench-") as tmp:
        work = Path(tmp)
        tree = work / "tree"
        paths = make_tree(tree, args.files)
        results = {}
        runs = (("tsm, no watch", run_tsm_unwatched), ("tsm_notebook", run_tsm), ("pm2 7.0.4", run_pm2))
        for name, fn in runs:
            if args.only and not name.startswith(args.only):
                continue
            results[name] = r = fn(tree, paths, work, args)
            print(f"{name:13s} idle {r['idle_cpu_s']:7.3f} s CPU / {args.window:g} s "
                  f"({100 * r['idle_cpu_s'] / args.window:5.2f}%)   burst {r['burst_cpu_s']:7.3f} s CPU / "
                  f"{args.window:g} s ({100 * r['burst_cpu_s'] / args.window:5.2f}%)   "
                  f"rss {r['rss'] / 2**20:6.1f} MiB   restarts {r['restarts']} (of {args.procs} processes)",
                  flush=True)
        print(json.dumps({"files": args.files, "procs": args.procs, "writes": args.writes,
                          "window_s": args.window, "results": results}))


if __name__ == "__main__":
    main()
