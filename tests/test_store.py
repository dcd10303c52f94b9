"""The history store against a real SQLite file: round trips, atomic ticks, retention, a locked and
a corrupt database, and the read-only readers."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from conftest import wait_for
from tsm_notebook.core.errors import TsmError
from tsm_notebook.engine.store import SCHEMA_VERSION, Store
from tsm_notebook.core.history import latest_metrics, read_events, read_metrics


class FakeClock:
    """Epoch seconds that move only when a test says so."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def metric(t: float, tsm_id: int = 1, name: str = "web", **values) -> dict:
    row = {
        "time": t, "tsm_id": tsm_id, "name": name, "pid": 4242, "cpu": 12.5, "rss": 50_000_000,
        "vms": 400_000_000, "threads": 3, "fds": 9, "read_bytes": 4096, "write_bytes": 8192,
        "children": 1, "ports": [8000, 5678],
    }  # fmt: skip
    row.update(values)
    return row


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "db" / "tsm.sqlite"


@pytest.fixture
def store(db: Path):
    s = Store(db)
    yield s
    s.close()


def test_events_and_metrics_round_trip_with_types(db, store):
    store.event(tsm_id=1, name="web", event="start", pid=4242, time=100.0)
    store.event(tsm_id=1, name="web", event="exit", pid=4242, exit_code=None, signal=9, reason="killed", time=101.5)
    store.event(tsm_id=None, name=None, event="daemon-start")
    store.metrics([metric(100.0), metric(100.0, tsm_id=2, name="worker", cpu=None, ports=None)])
    store.metrics([metric(102.0, ports=[]), metric(102.0, tsm_id=2, name="worker")])
    assert store.flush()
    assert store.problem is None

    events = read_events(db)
    assert [e["event"] for e in events] == ["start", "exit", "daemon-start"]
    exit_ = events[1]
    assert exit_ == {"id": exit_["id"], "time": 101.5, "tsm_id": 1, "name": "web", "event": "exit", "pid": 4242,
                     "exit_code": None, "signal": 9, "reason": "killed"}
    assert isinstance(events[2]["time"], float) and events[2]["time"] > 1e9  # stamped by the clock

    rows = read_metrics(db)
    assert [(r["time"], r["name"]) for r in rows] == [(100.0, "web"), (100.0, "worker"), (102.0, "web"), (102.0, "worker")]
    first = rows[0]
    assert first == metric(100.0)  # every key back, ports as the list of ints it was given
    assert type(first["time"]) is float and type(first["cpu"]) is float
    assert all(type(first[k]) is int for k in ("rss", "vms", "threads", "fds", "read_bytes", "write_bytes", "pid"))
    assert rows[1]["cpu"] is None and rows[1]["ports"] is None  # unknown stays unknown
    assert [r["ports"] for r in read_metrics(db, name="web")] == [[8000, 5678], []]  # none is not unknown

    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == (str(SCHEMA_VERSION),)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_reader_filters_and_limit(db, store):
    for i in range(10):
        store.event(tsm_id=i % 2, name=f"p{i % 2}", event=f"e{i}", time=1000.0 + i)
        store.metrics([metric(1000.0 + i, tsm_id=i % 2, name=f"p{i % 2}")])
    assert store.flush()
    assert [e["event"] for e in read_events(db, name="p1")] == ["e1", "e3", "e5", "e7", "e9"]
    assert [e["event"] for e in read_events(db, since=1007.0)] == ["e7", "e8", "e9"]
    assert [e["event"] for e in read_events(db, limit=3)] == ["e7", "e8", "e9"]  # the newest, oldest first
    assert [e["event"] for e in read_events(db, name="p0", limit=2)] == ["e6", "e8"]
    assert [r["time"] for r in read_metrics(db, name="p0", since=1004.0)] == [1004.0, 1006.0, 1008.0]
    latest = latest_metrics(db)
    assert sorted(latest) == [0, 1]
    assert latest[0]["time"] == 1008.0 and latest[1]["time"] == 1009.0
    assert latest[1]["ports"] == [8000, 5678]


def test_each_tick_lands_in_one_transaction(db, store):
    """A reader polling the row count only ever sees whole ticks, never half of one."""
    tick_rows, ticks = 20_000, 4
    store.event(tsm_id=None, name=None, event="daemon-start")
    assert store.flush()
    seen: set[int] = set()
    stop = threading.Event()

    def poll() -> None:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        while not stop.is_set():
            seen.add(conn.execute("SELECT count(*) FROM metrics").fetchone()[0])
        conn.close()

    reader = threading.Thread(target=poll)
    reader.start()
    try:
        for t in range(ticks):
            store.metrics([metric(float(t), tsm_id=i, name=f"p{i}") for i in range(tick_rows)])
        assert store.flush(30)
        wait_for(lambda: tick_rows * ticks in seen, message="the reader to see every row")
    finally:
        stop.set()
        reader.join()
    assert seen <= {tick_rows * k for k in range(ticks + 1)}, sorted(seen)


def test_retention_deletes_old_rows_in_batches(db):
    clock = FakeClock(1_000_000.0)
    store = Store(db, retention=3600.0, clock=clock)
    try:
        old, new = clock.now - 7200.0, clock.now - 60.0
        store.metrics([metric(old + i * 1e-3, tsm_id=i % 50) for i in range(12_000)])  # more than one batch
        store.metrics([metric(new, tsm_id=i) for i in range(50)])
        store.event(tsm_id=1, name="web", event="start", time=old)
        store.event(tsm_id=1, name="web", event="stop", time=new)
        assert store.flush()
        assert len(read_metrics(db)) == 12_050

        store.prune()
        assert store.flush(30)
        assert {r["time"] for r in read_metrics(db)} == {new}
        assert len(read_metrics(db)) == 50
        assert [e["event"] for e in read_events(db)] == ["stop"]

        clock.now += 3600.0  # an hour later the newer rows expire too
        store.prune()
        assert store.flush()
        assert read_metrics(db) == [] and read_events(db) == []
    finally:
        store.close()


def test_locked_database_queues_writes_without_blocking(db, store):
    store.event(tsm_id=1, name="web", event="start", time=1.0)
    assert store.flush()
    locker = sqlite3.connect(db, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        # the calls return while the lock is held (how long they take is bench/locked_db.py's)
        for i in range(20):
            store.metrics([metric(10.0 + i)])
            store.event(tsm_id=1, name="web", event=f"e{i}", time=10.0 + i)
        assert not store.flush(0.3)  # nothing can land while the lock is held
        wait_for(lambda: store.problem and "locked" in store.problem, message="the store to report the lock")
        assert [e["event"] for e in read_events(db)] == ["start"]  # readers still read (WAL)
    finally:
        locker.execute("COMMIT")
        locker.close()
    assert store.flush(10)
    assert store.problem is None
    assert len(read_metrics(db)) == 20
    assert [e["event"] for e in read_events(db)] == ["start"] + [f"e{i}" for i in range(20)]


def test_full_queue_drops_oldest_metrics_never_events(db):
    store = Store(db, max_pending=100)
    try:
        store.event(tsm_id=None, name=None, event="daemon-start", time=0.0)
        assert store.flush()
        locker = sqlite3.connect(db, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        try:
            for t in range(30):  # 300 rows queued against a bound of 100
                store.metrics([metric(float(t), tsm_id=i, name=f"p{i}") for i in range(10)])
                store.event(tsm_id=1, name="p1", event=f"e{t}", time=float(t))
            assert store.dropped >= 190
            wait_for(lambda: store.problem and "locked" in store.problem, message="the lock to be seen")
            assert f"{store.dropped} metric rows dropped" in store.problem
        finally:
            locker.execute("COMMIT")
            locker.close()
        assert store.flush(10)
        assert store.problem is None
        times = sorted({r["time"] for r in read_metrics(db)})
        assert times[-10:] == [float(t) for t in range(20, 30)]  # the newest ticks survive, whole
        assert len(read_metrics(db)) == 300 - store.dropped
        assert [e["event"] for e in read_events(db)] == ["daemon-start"] + [f"e{t}" for t in range(30)]
    finally:
        store.close()


def test_corrupt_database_is_moved_aside_and_recreated(db):
    db.parent.mkdir(parents=True)
    garbage = b"this is not a database, whatever the daemon thinks " * 200
    db.write_bytes(garbage)
    with pytest.raises(TsmError, match="history database is unreadable"):
        read_events(db)

    store = Store(db)
    try:
        store.event(tsm_id=1, name="web", event="start", pid=10)
        store.metrics([metric(5.0)])
        assert store.flush()
        aside = list(db.parent.glob("tsm.sqlite.corrupt-*"))
        assert len(aside) == 1 and aside[0].read_bytes() == garbage
        events = read_events(db)
        assert {e["event"] for e in events} == {"start", "db-recovered"}
        recovered = [e for e in events if e["event"] == "db-recovered"][0]
        assert aside[0].name in recovered["reason"] and "not a database" in recovered["reason"]
        store.metrics([metric(6.0)])  # and it keeps writing
        assert store.flush()
        assert [r["time"] for r in read_metrics(db)] == [5.0, 6.0]
        assert store.problem is None
    finally:
        store.close()


def test_database_deleted_while_running_is_recreated(db, store):
    store.event(tsm_id=1, name="web", event="start")
    assert store.flush()
    for f in db.parent.iterdir():
        f.unlink()
    db.parent.rmdir()
    store.event(tsm_id=1, name="web", event="stop")
    assert store.flush()
    assert [e["event"] for e in read_events(db)] == ["stop"]


def test_bad_input_never_raises_and_writing_goes_on(db, store):
    store.metrics([{"time": 1.0, "name": "web", "cpu": {"not": "a number"}}])  # SQLite cannot bind a dict
    store.metrics(["not a row"])  # type: ignore[list-item]
    store.event(tsm_id=2**80, name="web", event="start")  # too large for an SQLite integer
    assert store.flush()
    assert store.problem is not None
    store.event(tsm_id=1, name="web", event="stop")
    assert store.flush()
    assert store.problem is None
    assert [e["event"] for e in read_events(db)] == ["stop"]
    assert read_metrics(db) == []


def test_close_writes_what_is_queued_and_then_ignores_calls(db):
    store = Store(db)
    store.metrics([metric(1.0)])
    store.close()
    assert len(read_metrics(db)) == 1
    store.event(tsm_id=1, name="web", event="late")  # no raise after close
    assert not store.flush(0.1)
    assert read_events(db) == []
    assert not any(t.name == "tsm-store" and t.is_alive() for t in threading.enumerate())


def test_readers_on_missing_empty_and_corrupt_files(tmp_path):
    missing = tmp_path / "nope" / "tsm.sqlite"
    assert read_events(missing) == [] and read_metrics(missing) == [] and latest_metrics(missing) == {}
    assert not missing.exists()  # a reader never creates the database
    empty = tmp_path / "empty.sqlite"
    empty.write_bytes(b"")
    assert read_events(empty) == [] and latest_metrics(empty) == {}
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"\x00garbage" * 1000)
    for reader in (read_events, read_metrics, latest_metrics):
        with pytest.raises(TsmError, match="history database is unreadable"):
            reader(bad)


def test_unusable_directory_keeps_rows_until_it_is_fixed(tmp_path):
    blocker = tmp_path / "db"
    blocker.write_text("a file where the db directory should be")
    store = Store(blocker / "tsm.sqlite")
    try:
        store.event(tsm_id=1, name="web", event="start")
        assert not store.flush(0.3)
        assert "cannot create" in store.problem
        blocker.unlink()
        assert store.flush(10)
        assert store.problem is None
        assert [e["event"] for e in read_events(blocker / "tsm.sqlite")] == ["start"]
    finally:
        store.close()
