"""How long callers wait while someone else holds the history database's lock.

Run: ``.venv/bin/python bench/locked_db.py`` (a few seconds). The suite proves the behaviour (writes
queue and land once the lock is gone, readers still read, the daemon answers); this measures the
times, which depend on the machine:

* ``Store.metrics`` + ``Store.event`` calls while another connection holds ``BEGIN EXCLUSIVE``
  (the store's busy timeout is 0.5 s: a call that blocked on the lock would show it);
* the daemon's ``ls`` reply time while the lock is held across several sampling ticks.

Prints one line per figure. Everything it starts is stopped, and its scratch homes removed.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tsm_notebook.client import commands  # noqa: E402
from tsm_notebook.client.client import Client  # noqa: E402
from tsm_notebook.engine.store import Store  # noqa: E402

PY = os.path.realpath(sys.executable)


def ms(values: list[float]) -> str:
    v = [x * 1e3 for x in values]
    return f"median {statistics.median(v):.2f} ms, max {max(v):.2f} ms ({len(v)} calls)"


def store_calls(work: Path, calls: int = 200) -> list[float]:
    db = work / "db" / "tsm.sqlite"
    store = Store(db)
    try:
        store.event(tsm_id=1, name="web", event="start", time=1.0)
        store.flush()
        locker = sqlite3.connect(db, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        took = []
        try:
            for i in range(calls):
                t0 = time.perf_counter()
                store.metrics([{"time": 10.0 + i, "tsm_id": 1, "name": "web", "pid": 1, "cpu": 1.0, "rss": 1,
                                "vms": 1, "threads": 1, "fds": 1, "read_bytes": 0, "write_bytes": 0,
                                "children": 0, "ports": []}])
                store.event(tsm_id=1, name="web", event=f"e{i}", time=10.0 + i)
                took.append(time.perf_counter() - t0)
        finally:
            locker.execute("COMMIT")
            locker.close()
        store.flush(10)
        return took
    finally:
        store.close()


def daemon_replies(work: Path, seconds: float = 3.0) -> list[float]:
    home = work / "home"
    home.mkdir()
    (home / "config.toml").write_text('[history]\nsample_interval = "200ms"\n')
    client = Client(home)
    try:
        client.call("ping")
        ns = commands.parse(["start", "--name", "s", "--", PY, "-c", "import time; time.sleep(600)"])
        commands.start(client, commands.spec_from_args(ns))
        lock = sqlite3.connect(home / "db" / "tsm.sqlite", timeout=5, isolation_level=None)
        took = []
        try:
            lock.execute("BEGIN EXCLUSIVE")
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                t0 = time.perf_counter()
                client.call("ls")
                took.append(time.perf_counter() - t0)
        finally:
            lock.close()
        return took
    finally:
        try:
            client.kill(timeout=30)
        finally:
            client.close()


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="tsm-lockbench-", dir="/tmp"))
    try:
        print(f"Store calls under an exclusive lock: {ms(store_calls(work))}")
        print(f"daemon `ls` replies under an exclusive lock: {ms(daemon_replies(work))}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
