"""Bring-up of a 10-app stack with a dependency chain three deep: ``tsm up`` beside its floor and
beside ``pm2 start ecosystem.json`` of the same apps.

The stack: two databases (ready when their port accepts, after a warm-up), three middle apps
(two APIs on ports and a one-shot migration) and five front apps (workers and webs) that depend on
them. Every app, when it starts, checks whether each of its dependencies is ready at that moment
(the port accepts, or the migration's marker exists) and appends the answer to a shared file: the
count of dependants that started too early is read from there, for every manager alike.

* **floor**: the same apps started by hand (``Popen``) in this run, each alone, timing spawn to
  ready; the floor is the sum of those times along the longest chain (what any manager that
  waits on readiness must at least spend).
* **tsm**: ``tsm up stack.toml`` in a scratch home, wall time until it returned (everything ready).
* **pm2**: ``pm2 start ecosystem.json`` (PM2 7.0.4 from ``bench/.cache``), wall time until it
  returned and until every app was ready; PM2 starts everything at once.

Run: ``.venv/bin/python bench/stack_bringup.py [--runs 3] [--no-pm2]`` (about a minute).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PY = os.path.realpath(sys.executable)
#: app -> (warm-up seconds, depends on, kind): "port" apps listen after the warm-up, "exit" ones exit
APPS: dict[str, tuple[float, list[str], str]] = {
    "db1": (0.50, [], "port"),
    "db2": (0.30, [], "port"),
    "api1": (0.40, ["db1", "db2"], "port"),
    "api2": (0.30, ["db1"], "port"),
    "migrate": (0.25, ["db1"], "exit"),
    "worker1": (0.20, ["api1"], "port"),
    "worker2": (0.20, ["api1"], "port"),
    "worker3": (0.20, ["api1", "migrate"], "port"),
    "web1": (0.15, ["api2", "migrate"], "port"),
    "web2": (0.15, ["api2"], "port"),
}

APP = textwrap.dedent('''
    import os, socket, sys, time
    name, warm = sys.argv[1], float(sys.argv[2])
    deps = [d.split("=", 1) for d in sys.argv[3:]]   # dep=port, or dep=file for a one-shot job
    def ready(target):
        if target.isdigit():
            try:
                socket.create_connection(("127.0.0.1", int(target)), timeout=0.2).close()
                return True
            except OSError:
                return False
        return os.path.exists(target)
    early = [d for d, t in deps if not ready(t)]
    with open(os.environ["RESULTS"], "a") as f:
        f.write("%s %s\\n" % (name, ",".join(early) or "-"))
    time.sleep(warm)
    if os.environ.get("ONESHOT"):
        open(os.environ["ONESHOT"], "w").close()
        sys.exit(0)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", int(os.environ["PORT"])))
    s.listen(64)
    while True:
        s.accept()[0].close()
''')


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


class Layout:
    """One run's ports, marker file and results file, and each app's argv and environment."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.script = work / "app.py"
        self.script.write_text(APP)
        self.ports = dict(zip(APPS, free_ports(len(APPS))))
        self.marker = work / "migrated"
        self.results = work / "results.txt"

    def target(self, app: str) -> str:
        return str(self.marker) if APPS[app][2] == "exit" else str(self.ports[app])

    def argv(self, app: str) -> list[str]:
        warm, deps, _ = APPS[app]
        return [PY, str(self.script), app, str(warm), *(f"{d}={self.target(d)}" for d in deps)]

    def env(self, app: str) -> dict[str, str]:
        env = {"RESULTS": str(self.results)}
        if APPS[app][2] == "exit":
            env["ONESHOT"] = str(self.marker)
        else:
            env["PORT"] = str(self.ports[app])
        return env

    def reset(self) -> None:
        self.marker.unlink(missing_ok=True)
        self.results.unlink(missing_ok=True)

    def is_ready(self, app: str) -> bool:
        if APPS[app][2] == "exit":
            return self.marker.exists()
        try:
            socket.create_connection(("127.0.0.1", self.ports[app]), timeout=0.2).close()
            return True
        except OSError:
            return False

    def early(self) -> tuple[int, int]:
        """(dependants that started before a dependency was ready, dependants)."""
        lines = self.results.read_text().split("\n") if self.results.exists() else []
        marks = dict(line.split() for line in lines if line.strip())
        dependants = [a for a in APPS if APPS[a][1]]
        return sum(marks.get(a, "-") != "-" for a in dependants), len(dependants)


def wait(pred, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError("not ready in time")
        time.sleep(0.002)


def floor(layout: Layout) -> tuple[float, dict[str, float]]:
    """Each app started by hand (its dependencies already up), spawn to ready; the longest chain's sum."""
    layout.reset()
    times: dict[str, float] = {}
    procs = []
    try:
        for app in APPS:  # APPS is in dependency order
            t0 = time.monotonic()
            procs.append(subprocess.Popen(layout.argv(app), env={**os.environ, **layout.env(app)}, cwd=layout.work))
            wait(lambda: layout.is_ready(app))
            times[app] = time.monotonic() - t0
    finally:
        for p in procs:
            p.kill()
            p.wait()
    chain: dict[str, float] = {}
    for app in APPS:
        chain[app] = times[app] + max((chain[d] for d in APPS[app][1]), default=0.0)
    return max(chain.values()), times


def toml(layout: Layout) -> str:
    out = ['name = "bench"']
    for app, (warm, deps, kind) in APPS.items():
        out += ["", f"[{app}]", f"argv = {json.dumps(layout.argv(app))}", f"env = {json.dumps(layout.env(app)).replace(':', ' =')}"]
        if kind == "port":
            out.append(f"port = {layout.ports[app]}")
        out.append('ready = "exit"' if kind == "exit" else 'ready = "port"')
        if deps:
            out.append(f"depends_on = {json.dumps(deps)}")
    return "\n".join(out) + "\n"


def run_tsm(layout: Layout) -> tuple[float, tuple[int, int]]:
    layout.reset()
    home = Path(tempfile.mkdtemp(prefix="tsm-bench-", dir="/tmp"))
    env = {**os.environ, "TSM_HOME": str(home), "PYTHONPATH": str(ROOT)}
    (layout.work / "tsm.toml").write_text(toml(layout))
    tsm = [sys.executable, "-m", "tsm_notebook"]
    try:
        subprocess.run([*tsm, "ping"], env=env, check=True, capture_output=True)  # the daemon is not what is timed
        t0 = time.monotonic()
        r = subprocess.run([*tsm, "up", str(layout.work / "tsm.toml")], env=env, capture_output=True, text=True)
        took = time.monotonic() - t0
        if r.returncode != 0:
            raise RuntimeError(f"tsm up failed:\n{r.stdout}\n{r.stderr}")
        return took, layout.early()
    finally:
        subprocess.run([*tsm, "kill"], env=env, capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


def run_pm2(layout: Layout, driver) -> tuple[float, float, tuple[int, int]]:
    layout.reset()
    apps = []
    for app in APPS:
        argv = layout.argv(app)
        apps.append({"name": app, "script": argv[0], "args": argv[1:], "interpreter": "none", "cwd": str(layout.work),
                     "env": layout.env(app), "autorestart": APPS[app][2] != "exit"})
    path = layout.work / "ecosystem.json"
    path.write_text(json.dumps({"apps": apps}))
    t0 = time.monotonic()
    driver._run("start", str(path))
    returned = time.monotonic() - t0
    wait(lambda: all(layout.is_ready(a) for a in APPS))
    all_ready = time.monotonic() - t0
    early = layout.early()
    driver.delete_all()
    return returned, all_ready, early


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-pm2", action="store_true", help="skip PM2")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="stack-bench-"))
    driver = None
    rows: dict[str, list] = {"floor": [], "tsm": [], "pm2": [], "pm2_ready": []}
    early_tsm, early_pm2 = [], []
    try:
        if not args.no_pm2:
            from bench.peers import PM2Driver

            driver = PM2Driver()
            driver.setup(work)
            driver.start_daemon()
        for _ in range(args.runs):
            layout = Layout(work)
            f, _times = floor(layout)
            rows["floor"].append(f)
            t, e = run_tsm(layout)
            rows["tsm"].append(t)
            early_tsm.append(e)
            if driver is not None:
                r, ready, e = run_pm2(layout, driver)
                rows["pm2"].append(r)
                rows["pm2_ready"].append(ready)
                early_pm2.append(e)
    finally:
        if driver is not None:
            driver.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in rows.items() if v}
    print(f"10 apps, chain 3 deep, {args.runs} runs (medians)")
    print(f"  floor (longest chain of by-hand readiness) {med['floor']:.3f} s")
    print(f"  tsm up (returns when all ready)           {med['tsm']:.3f} s   ({med['tsm'] / med['floor']:.2f}x floor); "
          f"dependants started early: {sum(e for e, _ in early_tsm)}/{sum(n for _, n in early_tsm)}")
    if "pm2" in med:
        print(f"  pm2 start ecosystem.json returned         {med['pm2']:.3f} s; all ready after {med['pm2_ready']:.3f} s; "
              f"dependants started early: {sum(e for e, _ in early_pm2)}/{sum(n for _, n in early_pm2)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
