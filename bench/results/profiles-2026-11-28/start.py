"""Where the warm `tsm start` time goes: CLI, daemon spawn, launch window (daemon events), and the
same start with the launch window set to 0 in config.toml (a control, not the benchmark)."""
import os, sqlite3, statistics, subprocess, sys, tempfile, time
ROOT = __import__("pathlib").Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
from bench import measure, run
from bench.tsm_driver import TsmDriver
from pathlib import Path
def trial(window):
    d = TsmDriver(); w = Path(tempfile.mkdtemp(prefix="ps-", dir="/tmp")); d.setup(w)
    if window is not None:
        (d.home / "config.toml").write_text(f'[daemon]\nlaunch_window = "{window}"\n')
    d.start_daemon()
    res = []
    for i in range(7):
        port = measure.free_port(); name = f"web-{port}"
        t0w = time.time(); t0 = time.monotonic()
        ret = d.start(name, run.server(port), port=port)
        measure.wait_port(port, 30); acc = time.monotonic() - t0
        res.append((name, t0w, ret, acc))
    d._call("history_flush")
    db = sqlite3.connect(str(d.home / "db" / "tsm.sqlite"))
    ev = {(n, e): t for t, n, e in db.execute("select time, name, event from events")}
    d.shutdown(); d.cleanup()
    rows = [(ev[(n, "start")] - t0w, ev[(n, "online")] - ev[(n, "start")], ret, acc) for n, t0w, ret, acc in res]
    med = lambda i: statistics.median(r[i] for r in rows) * 1000
    print(f"launch_window={window or 'default 250ms'}: CLI invoked -> daemon 'start' event (spawned) {med(0):.0f} ms; "
          f"'start' -> 'online' event {med(1):.0f} ms; command returned {med(2):.0f} ms; port accepts {med(3):.0f} ms")
trial(None); trial("0ms")
