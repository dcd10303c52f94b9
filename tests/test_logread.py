"""logread against real files written by a real LogWriter (and a few laid out by hand)."""

from __future__ import annotations

import gzip
import os
import random
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tsm_notebook.core.errors import UsageError
from tsm_notebook.core.logfollow import POLL_BYTES, follow
from tsm_notebook.core.logread import LogLine, log_files, parse_since, rotated_name, tail
from tsm_notebook.engine.logwriter import LogWriter

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def numbered(count: int, tag: str = "line") -> list[bytes]:
    rng = random.Random(count)
    return [b"%s %05d %s" % (tag.encode(), i, b"." * rng.randint(0, 120)) for i in range(count)]


def write_rotated(directory: Path, lines: list[bytes]) -> None:
    """Write ``lines`` through a LogWriter in 64 KiB blocks; the last one without its newline."""
    data = b"\n".join(lines)
    w = LogWriter(directory, "out", max_size=4096, retain=None, max_age=None, rotate_every=None)
    for i in range(0, len(data), 65536):
        assert w.write(data[i : i + 65536])
    w.close()


def stamp_us(t: float) -> int:
    return int(t * 1_000_000)


def test_log_files_lists_rotated_in_order_once_then_current(tmp_path: Path) -> None:
    names = [rotated_name("out", stamp_us(T0 + dt)) for dt in (30, 10, 20)]
    (tmp_path / (names[0] + ".gz")).write_bytes(gzip.compress(b"c\n"))
    (tmp_path / names[1]).write_bytes(b"a\n")
    (tmp_path / names[2]).write_bytes(b"b\n")  # mid-compression: both .log and .log.gz
    (tmp_path / (names[2] + ".gz")).write_bytes(gzip.compress(b"b\n"))
    (tmp_path / (names[2] + ".gz.tmp")).write_bytes(b"partial")
    (tmp_path / rotated_name("err", stamp_us(T0))).write_bytes(b"e\n")
    (tmp_path / "notes.txt").write_bytes(b"")
    (tmp_path / "current.out").write_bytes(b"d\n")
    assert log_files(tmp_path, "out") == [
        tmp_path / names[1],
        tmp_path / names[2],
        tmp_path / (names[0] + ".gz"),
        tmp_path / "current.out",
    ]
    assert log_files(tmp_path, "err") == [tmp_path / rotated_name("err", stamp_us(T0))]
    assert log_files(tmp_path / "missing", "out") == []
    with pytest.raises(UsageError):
        log_files(tmp_path, "both")
    assert [line.text for line in tail(tmp_path, stream="out", lines=10)] == ["a", "b", "c", "d"]


def test_tail_spans_rotated_and_compressed_files(tmp_path: Path) -> None:
    lines = numbered(5000)
    write_rotated(tmp_path, lines)
    assert len(log_files(tmp_path, "out")) > 50
    assert all(p.name.endswith(".gz") for p in log_files(tmp_path, "out")[:-1])
    for count in (1, 7, 50, 333, 4999, 5000, 10_000):
        got = tail(tmp_path, stream="out", lines=count)
        assert [line.raw for line in got] == lines[-count:], count
        assert all(line.stream == "out" and line.time is None for line in got)
    assert [line.raw for line in tail(tmp_path, stream="out", lines=None)] == lines
    assert tail(tmp_path, stream="out", lines=0) == []
    assert tail(tmp_path / "missing") == []


def test_tail_handles_long_lines_and_empty_lines(tmp_path: Path) -> None:
    lines = [b"x" * 200_000, b"", b"short", b"", b"y" * 70_000, b"end"]
    (tmp_path / "current.out").write_bytes(b"\n".join(lines) + b"\n")
    for count in range(1, 8):
        assert [line.raw for line in tail(tmp_path, stream="out", lines=count)] == lines[-count:]
    (tmp_path / "current.err").write_bytes(b"\n")
    assert [line.raw for line in tail(tmp_path, stream="err")] == [b""]


def rchar() -> int:
    with open("/proc/self/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("rchar:"))


@pytest.mark.skipif(not os.path.exists("/proc/self/io"), reason="needs /proc/self/io")
def test_tail_reads_a_large_file_from_its_end_only(tmp_path: Path) -> None:
    lines = numbered(120_000)  # about 10 MB
    (tmp_path / "current.out").write_bytes(b"\n".join(lines) + b"\n")
    assert (tmp_path / "current.out").stat().st_size > 8_000_000
    before = rchar()
    got = tail(tmp_path, stream="out", lines=50)
    read = rchar() - before
    assert [line.raw for line in got] == lines[-50:]
    assert read < 256 * 1024, f"read {read} bytes for 50 lines"


def prefix(t: float) -> bytes:
    millis = int(t * 1000)
    text = datetime.fromtimestamp(millis // 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{millis % 1000:03d}Z ".encode()


def test_since_with_timestamps_across_rotated_files(tmp_path: Path) -> None:
    clock = Clock()
    w = LogWriter(tmp_path, "out", max_size=2048, timestamps=True, clock=clock, retain=None, max_age=None)
    times = []
    for i in range(3000):
        clock.t = T0 + i * 0.25
        times.append(clock.t)
        assert w.write(b"event %d\n" % i)
    w.close()
    assert len(log_files(tmp_path, "out")) > 50
    since = T0 + 400.1  # between lines 1600 and 1601
    got = tail(tmp_path, stream="out", lines=None, since=since)
    assert [line.text for line in got] == ["event %d" % i for i in range(1601, 3000)]
    assert [line.time for line in got] == [int(t * 1000) / 1000 for t in times[1601:]]
    assert [line.raw[:25] for line in got[:2]] == [prefix(times[1601]), prefix(times[1602])]
    assert len(tail(tmp_path, stream="out", lines=10, since=since)) == 10
    assert tail(tmp_path, stream="out", since=T0 + 10_000) == []


def test_since_without_timestamps_decides_by_file_time_range(tmp_path: Path) -> None:
    (tmp_path / rotated_name("out", stamp_us(T0 + 100))).write_bytes(b"a1\na2\n")
    (tmp_path / (rotated_name("out", stamp_us(T0 + 200)) + ".gz")).write_bytes(gzip.compress(b"b1\nb2\n"))
    current = tmp_path / "current.out"
    current.write_bytes(b"c1\nc2")
    os.utime(current, (T0 + 300, T0 + 300))

    def texts(since: float) -> list[str]:
        return [line.text for line in tail(tmp_path, stream="out", lines=None, since=since)]

    assert texts(T0) == ["a1", "a2", "b1", "b2", "c1", "c2"]
    assert texts(T0 + 100) == ["a1", "a2", "b1", "b2", "c1", "c2"], "a file that ended at since is kept"
    assert texts(T0 + 150) == ["b1", "b2", "c1", "c2"]
    assert texts(T0 + 250) == ["c1", "c2"]
    assert texts(T0 + 301) == []


def test_both_streams_merge_by_time_or_come_in_turn(tmp_path: Path) -> None:
    clock = Clock()
    (tmp_path / "t").mkdir()
    out = LogWriter(tmp_path / "t", "out", timestamps=True, clock=clock)
    err = LogWriter(tmp_path / "t", "err", timestamps=True, clock=clock)
    for i in range(10):
        clock.t = T0 + i
        (err if i % 3 == 0 else out).write(b"msg %d\n" % i)
    out.close()
    err.close()
    got = tail(tmp_path / "t", lines=4)  # the last 4 of each stream, merged by time
    assert [(line.stream, line.text) for line in got] == [
        ("err", "msg 0"),
        ("err", "msg 3"),
        ("out", "msg 4"),
        ("out", "msg 5"),
        ("err", "msg 6"),
        ("out", "msg 7"),
        ("out", "msg 8"),
        ("err", "msg 9"),
    ]

    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "current.out").write_bytes(b"o1\no2\n")
    (tmp_path / "p" / "current.err").write_bytes(b"e1\ne2\n")
    assert [(line.stream, line.text) for line in tail(tmp_path / "p")] == [
        ("out", "o1"),
        ("out", "o2"),
        ("err", "e1"),
        ("err", "e2"),
    ]
    with pytest.raises(UsageError):
        tail(tmp_path / "p", stream="stdout")


def test_log_line_text_and_time() -> None:
    line = LogLine.parse("err", b"2026-11-28T23:01:02.123Z caf\xc3\xa9 \xff end\r")
    assert line.time == datetime(2026, 11, 28, 23, 1, 2, 123000, tzinfo=timezone.utc).timestamp()
    assert line.text == "café \ufffd end\r"
    assert line.raw.startswith(b"2026-11-28T23:01:02.123Z ")
    plain = LogLine.parse("out", b"no prefix here")
    assert plain.time is None and plain.text == "no prefix here"
    assert LogLine.parse("out", b"2026-13-45T23:01:02.123Z not a date").time is None
    assert LogLine.parse("out", b"2026-11-28T23:01:02.123Zno space").time is None


def collect(iterator, count: int, timeout: float = 10.0) -> list:
    got = []
    deadline = time.monotonic() + timeout
    for line in iterator:
        got.append(line)
        if len(got) >= count or time.monotonic() > deadline:
            break
    return got


def test_follow_across_many_rotations_loses_and_repeats_nothing(tmp_path: Path) -> None:
    lines = numbered(20_000)
    w = LogWriter(tmp_path, "out", max_size=4096, retain=None, max_age=None, rotate_every=None)
    w.write(b"written before follow\n")
    deadline = time.monotonic() + 20
    got: list[LogLine] = []
    lines_iter = follow(
        tmp_path, stream="out", poll=0.01, stop=lambda: len(got) >= len(lines) or time.monotonic() > deadline
    )

    def produce() -> None:
        rng = random.Random(4)
        data = b"\n".join(lines) + b"\n"
        pos = 0
        while pos < len(data):
            size = rng.randint(1, 30_000)
            assert w.write(data[pos : pos + size])
            pos += size
            if rng.random() < 0.05:
                time.sleep(0.001)  # let the follower see some rotations one at a time
        w.close()

    writer = threading.Thread(target=produce)
    writer.start()
    try:
        for line in lines_iter:
            got.append(line)
    finally:
        writer.join(timeout=20)
    assert not writer.is_alive()
    rotated = len(log_files(tmp_path, "out")) - 1
    assert rotated > 300
    assert [line.raw for line in got] == lines


def test_a_flood_is_followed_a_slice_at_a_time_and_nothing_is_lost(tmp_path: Path) -> None:
    """What was written between two polls (here 3 x POLL_BYTES, across a rotation) is read a slice
    per poll, not into memory at once, and every line comes, in order."""
    lines = numbered(3 * POLL_BYTES // 60)
    w = LogWriter(tmp_path, "out", max_size=2 * POLL_BYTES, retain=None, max_age=None, rotate_every=None)
    w.write(b"before\n")
    f = follow(tmp_path, stream="out", poll=0.01)
    try:
        assert w.write(b"\n".join(lines) + b"\n")
        assert len(log_files(tmp_path, "out")) == 2  # rotated once meanwhile
        slices = []
        deadline = time.monotonic() + 30
        while sum(slices) < len(lines) and time.monotonic() < deadline:
            got = f.take()
            slices.append(len(got))
            assert sum(len(line.raw) + 1 for line in got) <= POLL_BYTES + len(max(lines, key=len)) + 1
            if got:
                assert got[0].raw == lines[sum(slices) - len(got)] and got[-1].raw == lines[sum(slices) - 1]
        assert sum(slices) == len(lines) and len([n for n in slices if n]) >= 3
    finally:
        f.close()
        w.close()


def test_follow_yields_a_line_whole_truncation_and_late_files(tmp_path: Path) -> None:
    current = tmp_path / "current.err"
    deadline = time.monotonic() + 10
    it = follow(tmp_path, stream="err", poll=0.01, stop=lambda: time.monotonic() > deadline)
    current.write_bytes(b"first\nunfin")  # a file that appears after follow() started
    assert [line.raw for line in collect(it, 1)] == [b"first"]
    with open(current, "ab") as f:
        f.write(b"ished\n")
    assert [line.raw for line in collect(it, 1)] == [b"unfinished"]
    w = LogWriter(tmp_path, "err", compress=False)
    w.flush_logs()
    w.write(b"after flush\n")
    assert [line.raw for line in collect(it, 1)] == [b"after flush"]
    w.close()
    it.close()

    current.write_bytes(b"old\npart")
    it2 = follow(tmp_path, stream="err", poll=0.01, stop=lambda: time.monotonic() > deadline)
    with open(current, "ab") as f:
        f.write(b"ial\nnew\n")
    assert [line.raw for line in collect(it2, 2)] == [b"partial", b"new"], "starts at the unfinished line"
    it2.close()


def test_follow_finishes_a_replaced_file_that_ends_mid_line(tmp_path: Path) -> None:
    current = tmp_path / "current.out"
    current.write_bytes(b"")
    deadline = time.monotonic() + 10
    it = follow(tmp_path, stream="out", poll=0.01, stop=lambda: time.monotonic() > deadline)
    with open(current, "ab") as f:
        f.write(b"a\ncut off")
    os.rename(current, tmp_path / "elsewhere")
    current.write_bytes(b"next\n")
    assert [line.raw for line in collect(it, 3)] == [b"a", b"cut off", b"next"]
    it.close()


def test_follow_both_streams_merges_timestamped_lines(tmp_path: Path) -> None:
    clock = Clock()
    out = LogWriter(tmp_path, "out", timestamps=True, clock=clock)
    err = LogWriter(tmp_path, "err", timestamps=True, clock=clock)
    deadline = time.monotonic() + 10
    it = follow(tmp_path, poll=0.01, stop=lambda: time.monotonic() > deadline)
    for i in range(6):
        clock.t = T0 + i
        (out if i % 2 else err).write(b"m%d\n" % i)
    got = collect(it, 6)
    assert [line.text for line in got] == ["m0", "m1", "m2", "m3", "m4", "m5"]
    assert [line.stream for line in got] == ["err", "out"] * 3
    out.close()
    err.close()


def test_follow_stops_and_lets_keyboard_interrupt_through(tmp_path: Path) -> None:
    (tmp_path / "current.out").write_bytes(b"")
    calls = []
    stop_on_fourth = lambda: calls.append(1) or len(calls) > 3  # noqa: E731
    assert list(follow(tmp_path, stream="out", poll=0.01, stop=stop_on_fourth)) == []
    assert len(calls) == 4

    def interrupt() -> bool:
        raise KeyboardInterrupt

    it = follow(tmp_path, stream="out", poll=0.01, stop=interrupt)
    with pytest.raises(KeyboardInterrupt):
        next(it)
    with pytest.raises(StopIteration):
        next(it)


def test_parse_since() -> None:
    now = T0
    assert parse_since("30s", now=now) == now - 30
    assert parse_since("10m", now=now) == now - 600
    assert parse_since("2h", now=now) == now - 7200
    assert parse_since("1d", now=now) == now - 86400
    assert parse_since(" 1.5h ", now=now) == now - 5400
    before = time.time()
    since = parse_since("1m")
    assert before - 60 <= since <= time.time() - 60
    assert parse_since("2026-11-28T23:00Z") == datetime(2026, 11, 28, 23, 0, tzinfo=timezone.utc).timestamp()
    utc = datetime(2026, 11, 28, 22, 0, tzinfo=timezone.utc).timestamp()
    assert parse_since("2026-11-28T23:00:00+01:00") == utc
    assert parse_since("2026-11-28T23:00") == datetime(2026, 11, 28, 23, 0).timestamp()  # local time
    assert parse_since("2026-11-28") == datetime(2026, 11, 28).timestamp()
    for bad in ("", "10", "10 minutes", "yesterday", "2026-13-01", "-5m", "5x"):
        with pytest.raises(UsageError):
            parse_since(bad, now=now)
