"""LogWriter against real files: every write pattern, rotation, compression, retention, failures.

Failures are made real for root (who ignores permissions) in three ways: a process directory
that is a regular file (open fails: ENOTDIR), ``current.out`` as a symlink to ``/dev/full``
(every write fails: ENOSPC), and a directory moved away with a regular file left at its path
(rename fails: ENOTDIR, while the open descriptor still writes).
"""

from __future__ import annotations

import gzip
import os
import stat
import random
import re
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tsm_notebook.core.logread import parse_rotated_name
from tsm_notebook.engine.logwriter import IDLE_CHECK, LogWriter

MAX = 4096
FOREVER = dict(retain=None, max_age=None, rotate_every=None)


class Clock:
    """A settable clock (epoch seconds) for the writer's ``clock`` seam."""

    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def make_lines(seed: int, count: int = 6000) -> list[bytes]:
    """Lines (with newlines) of mixed lengths: text, binary, invalid UTF-8, some longer than MAX."""
    rng = random.Random(seed)
    lines = []
    for i in range(count):
        kind = rng.random()
        if kind < 0.01:
            body = b"L%d:" % i + b"y" * rng.randint(MAX, 3 * MAX)  # longer than max_size
        elif kind < 0.15:
            body = bytes(rng.choice([b for b in range(256) if b != 10]) for _ in range(rng.randint(0, 200)))
        elif kind < 0.2:
            body = b"bad \xff\xfe \xc3\x28 \xe2\x82 utf8 %d" % i
        elif kind < 0.22:
            body = b""
        else:
            body = b"line %d " % i + "héllo wörld ✓ ".encode() * rng.randint(0, 12)
        lines.append(body + b"\n")
    lines.append(b"final line without newline")
    return lines


def read_back(directory: Path, stream: str = "out") -> list[bytes]:
    """The contents of every file of ``stream``, decompressed, oldest first (sorted by name)."""
    names = sorted(n for n in os.listdir(directory) if parse_rotated_name(n) and n.startswith(stream))
    stamps = [parse_rotated_name(n)[1] for n in names]
    assert stamps == sorted(set(stamps)), "one file per stamp, names sort chronologically"
    contents = []
    for name in names:
        path = directory / name
        contents.append(gzip.decompress(path.read_bytes()) if name.endswith(".gz") else path.read_bytes())
    current = directory / f"current.{stream}"
    if current.exists():
        contents.append(current.read_bytes())
    return contents


def check_files(contents: list[bytes], data: bytes, max_size: int = MAX, sized: bool = True) -> None:
    """All of ``data`` once, in order; no line across two files; rotations only where the size rule says."""
    assert b"".join(contents) == data
    for i, content in enumerate(contents[:-1]):
        assert content, f"rotated file {i} is empty"
        assert content.endswith(b"\n"), f"file {i} ends mid-line"
        if not sized:
            continue
        last_start = content.rfind(b"\n", 0, len(content) - 1) + 1
        assert last_start < max_size, f"file {i} went on past max_size for more than one line"
        following = contents[i + 1]
        first_line = following[: following.find(b"\n") + 1] if b"\n" in following else following
        assert len(content) + len(first_line) >= max_size, f"file {i} rotated too early"


def cut_random(data: bytes, seed: int, low: int = 1, high: int = 20000) -> list[bytes]:
    rng = random.Random(seed)
    chunks, pos = [], 0
    while pos < len(data):
        size = rng.randint(low, high)
        chunks.append(data[pos : pos + size])
        pos += size
    return chunks


def blocks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


PATTERNS = {
    "per_line": lambda lines, data: list(lines),
    "blocks_64k": lambda lines, data: blocks(data, 64 * 1024),
    "blocks_1m": lambda lines, data: blocks(data, 1 << 20),
    "random_cuts": lambda lines, data: cut_random(data, 7),
    "tiny_cuts": lambda lines, data: cut_random(data[:200_000], 8, 1, 9) + [data[200_000:]],
}


@pytest.mark.parametrize("pattern", sorted(PATTERNS))
def test_every_write_pattern_keeps_every_line_once_in_order(tmp_path: Path, pattern: str) -> None:
    lines = make_lines(seed=len(pattern))
    data = b"".join(lines)
    w = LogWriter(tmp_path, "out", max_size=MAX, **FOREVER)
    for chunk in PATTERNS[pattern](lines, data):
        assert w.write(chunk) is True
    assert w.pending == 0 and w.problem is None
    w.close()
    contents = read_back(tmp_path)
    assert len(contents) > 100, "hundreds of rotations expected"
    check_files(contents, data)
    leftovers = [n for n in os.listdir(tmp_path) if n.endswith((".log", ".tmp"))]
    assert leftovers == [], "every rotated file is compressed once close() returns"


def test_size_rotation_rule_exactly(tmp_path: Path) -> None:
    w = LogWriter(tmp_path, "out", max_size=10, compress=False, **FOREVER)
    w.write(b"aaaa\n")
    w.write(b"bb\ncccccc")  # would reach 10: "bb" ends the old file, the unfinished line starts anew
    w.write(b"c\n")
    w.write(b"dd\n" + b"e" * 16 + b"\nff\n")  # "dd" reaches 10; the 17-byte line is never split
    w.write(b"h" * 12)  # an unfinished line that would overflow starts a new file
    w.write(b"hh")  # over max_size, mid-line: rotation waits for the newline
    w.write(b"\n")
    w.close()
    assert read_back(tmp_path) == [
        b"aaaa\nbb\n",
        b"ccccccc\ndd\n",
        b"e" * 16 + b"\n",
        b"ff\n",
        b"h" * 14 + b"\n",
        b"",
    ]


def test_uncompressed_rotation_and_err_stream(tmp_path: Path) -> None:
    data = b"".join(make_lines(seed=3, count=2000))
    w = LogWriter(tmp_path, "err", max_size=MAX, compress=False, **FOREVER)
    for chunk in cut_random(data, 3):
        assert w.write(chunk)
    w.close()
    names = os.listdir(tmp_path)
    assert "current.err" in names and not any(n.endswith(".gz") for n in names)
    assert all(re.fullmatch(r"err-\d{8}T\d{6}\.\d{6}Z\.log|current\.err", n) for n in names)
    check_files(read_back(tmp_path, "err"), data)


def test_every_current_file_is_readable_by_all_and_writable_by_its_owner(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        w = LogWriter(tmp_path, "out", max_size=64, compress=False, **FOREVER)
        modes = [stat.S_IMODE(os.stat(tmp_path / "current.out").st_mode)]
        assert w.write(b"x" * 70 + b"\n") and w.rotate() is False  # the line filled it: rotated already
        assert w.write(b"next\n") and w.rotate() is True
        modes.append(stat.S_IMODE(os.stat(tmp_path / "current.out").st_mode))
        w.close()
    finally:
        os.umask(umask)
    assert len(rotated_files(tmp_path)) == 2
    assert modes == [0o644, 0o644]  # the file a rotation opens is like the first one


def expected_prefix(t: float) -> bytes:
    millis = int(t * 1000)
    stamp = datetime.fromtimestamp(millis // 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{millis % 1000:03d}Z ".encode()


@pytest.mark.parametrize("cutter", ["blocks_64k", "random_cuts", "tiny_cuts"])
def test_timestamps_one_prefix_per_line_with_the_time_of_its_first_byte(tmp_path: Path, cutter: str) -> None:
    lines = make_lines(seed=11, count=3000)
    data = b"".join(lines)
    chunks = PATTERNS[cutter](lines, data)
    clock = Clock()
    w = LogWriter(tmp_path, "out", max_size=MAX, timestamps=True, clock=clock, **FOREVER)
    chunk_times = []
    for chunk in chunks:
        clock.t += 0.0137
        chunk_times.append(clock.t)
        assert w.write(chunk)
    w.close()

    # The expected file: each line gets the time of the chunk holding its first byte.
    expected, offset, k, line_start = [], 0, 0, 0
    ends = []
    for chunk in chunks:
        offset += len(chunk)
        ends.append(offset)
    for line in lines:
        while ends[k] <= line_start:
            k += 1
        expected.append(expected_prefix(chunk_times[k]) + line)
        line_start += len(line)
    contents = read_back(tmp_path)
    assert len(contents) > 50
    check_files(contents, b"".join(expected), sized=False)
    for content in contents[:-1]:  # each file ends at a line end, so starts with a prefix
        assert re.match(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z ", content)


def test_time_rotation_with_a_fake_clock(tmp_path: Path) -> None:
    clock = Clock()
    start = clock.t
    w = LogWriter(tmp_path, "out", rotate_every=10.0, clock=clock, retain=None, max_age=None, compress=False)
    clock.t = start + 20
    w.tick()
    assert os.listdir(tmp_path) == ["current.out"], "an empty file is not rotated"
    w.write(b"a\n")
    w.tick()  # 20 s since the file was opened, non-empty, at a line boundary
    rotated = sorted(n for n in os.listdir(tmp_path) if n != "current.out")
    assert rotated == ["out-20270115T080020.000000Z.log"]
    clock.t = start + 25
    w.write(b"b\n")
    w.tick()
    assert len(os.listdir(tmp_path)) == 2, "only 5 s since the last rotation"
    clock.t = start + 31
    w.write(b"partial")
    w.tick()
    assert len(os.listdir(tmp_path)) == 2, "mid-line: rotation waits for the newline"
    clock.t = start + 32
    w.write(b" line\nnext")
    assert len(os.listdir(tmp_path)) == 3
    w.close()
    assert read_back(tmp_path) == [b"a\n", b"b\npartial line\n", b"next"]
    assert sorted(os.listdir(tmp_path))[-1] == "out-20270115T080032.000000Z.log"


def test_rotate_now_and_at_the_next_newline(tmp_path: Path) -> None:
    w = LogWriter(tmp_path, "out", compress=False, **FOREVER)
    assert w.rotate() is False, "nothing to rotate"
    w.write(b"one\n")
    assert w.rotate() is True
    w.write(b"tw")
    assert w.rotate() is False
    w.write(b"o\nthree\n")
    w.close()
    assert read_back(tmp_path) == [b"one\n", b"two\n", b"three\n"]


def rotate_times(w: LogWriter, clock: Clock, count: int, step: float) -> None:
    for i in range(count):
        clock.t += step
        w.write(b"file %d\n" % i)
        assert w.rotate()


def wait_until(predicate, timeout: float = 10.0, tick=None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        if tick is not None:
            tick()
        time.sleep(0.01)


def rotated_files(directory: Path) -> list[str]:
    return sorted(n for n in os.listdir(directory) if parse_rotated_name(n))


def test_retention_by_count(tmp_path: Path) -> None:
    clock = Clock()
    w = LogWriter(tmp_path, "out", retain=3, max_age=None, rotate_every=None, clock=clock)
    rotate_times(w, clock, 10, 1.0)
    def settled() -> bool:
        names = rotated_files(tmp_path)
        return len(names) == 3 and all(n.endswith(".gz") for n in names)

    wait_until(settled, tick=w.tick)
    w.close()
    kept = [gzip.decompress((tmp_path / n).read_bytes()) for n in rotated_files(tmp_path)]
    assert kept == [b"file 7\n", b"file 8\n", b"file 9\n"]


def test_retention_by_age(tmp_path: Path) -> None:
    clock = Clock()
    w = LogWriter(tmp_path, "out", retain=100, max_age=100.0, rotate_every=None, clock=clock, compress=False)
    rotate_times(w, clock, 10, 20.0)  # stamps at +20 .. +200
    w.tick()
    assert len(rotated_files(tmp_path)) == 6, "stamps older than now - 100 s are gone"
    clock.t += 45.0  # now +245: +140 is older than 100 s now
    w.tick()
    kept = [(tmp_path / n).read_bytes() for n in rotated_files(tmp_path)]
    assert kept == [b"file 7\n", b"file 8\n", b"file 9\n"]
    w.close()


def test_unopenable_directory_keeps_bytes_pending_until_it_is_fixed(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    proc.write_bytes(b"a regular file where the process directory should be")
    w = LogWriter(proc, "out", max_size=MAX, **FOREVER)  # does not raise
    assert w.problem is not None and "Not a directory" in w.problem
    assert w.write(b"first\n") is False
    assert w.pending == 6
    assert w.write(b"second\nthi") is False, "later chunks queue behind, in order"
    assert w.retry() is False
    w.tick()
    assert w.pending == 16 and "Not a directory" in w.problem
    proc.unlink()
    proc.mkdir()
    assert w.retry() is True
    assert w.pending == 0 and w.problem is None
    assert w.write(b"rd\n") is True
    w.close()
    assert (proc / "current.out").read_bytes() == b"first\nsecond\nthird\n"


def full_device(path: Path) -> None:
    """Put a "full disk" at ``path``: a node of the kernel's full device (1, 7), where every write
    fails with ENOSPC (needs the right to make device nodes)."""
    import stat

    try:
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 7))
    except PermissionError:
        pytest.skip("needs the right to make a device node")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_full_disk_mid_stream_applies_back_pressure_and_loses_nothing(tmp_path: Path) -> None:
    data = b"".join(make_lines(seed=5, count=3000))
    chunks = blocks(data, 64 * 1024)
    half = len(chunks) // 2
    w = LogWriter(tmp_path, "out", max_size=MAX, **FOREVER)
    for chunk in chunks[:half]:
        assert w.write(chunk)
    before = {parse_rotated_name(n)[1] for n in rotated_files(tmp_path)}
    current = tmp_path / "current.out"
    saved = current.read_bytes()  # the file is about to be replaced by a full "disk"
    current.unlink()
    full_device(current)  # a device node, not a symlink: the writer never follows one
    w.tick()  # sees its file was deleted and reopens the path: now every write fails
    failures = 0
    for chunk in chunks[half:]:
        ok = w.write(chunk)
        while not ok:  # what the daemon does: stop reading, retry later
            failures += 1
            assert w.pending > 0 and "No space left on device" in w.problem
            if failures == 3:
                current.unlink()
            ok = w.retry()
    assert failures == 3 and w.problem is None and w.pending == 0
    w.close()
    names = rotated_files(tmp_path)
    old = [n for n in names if parse_rotated_name(n)[1] in before]
    assert len(old) == len(before) and names[: len(old)] == old
    contents = read_back(tmp_path)
    contents.insert(len(old), saved)
    assert b"".join(contents) == data


def test_failed_rotation_keeps_writing_then_rotates_when_fixed(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    proc.mkdir()
    data = b"".join(make_lines(seed=9, count=2000))
    chunks = cut_random(data, 9)
    third = len(chunks) // 3
    w = LogWriter(proc, "out", max_size=MAX, compress=False, **FOREVER)
    for chunk in chunks[:third]:
        assert w.write(chunk)
    moved = tmp_path / "moved"
    os.rename(proc, moved)
    proc.write_bytes(b"")  # renames inside proc/ now fail; the open descriptor still works
    for chunk in chunks[third : 2 * third]:
        assert w.write(chunk) is True, "the old file still takes the bytes"
    assert w.problem is not None and "Not a directory" in w.problem
    proc.unlink()
    os.rename(moved, proc)
    rotations = len(rotated_files(proc))
    w.tick()  # allows the rotation again: it happens at the next line boundary
    for chunk in chunks[2 * third :]:
        assert w.write(chunk)
    assert w.problem is None and len(rotated_files(proc)) > rotations + 10
    w.close()
    check_files(read_back(proc), data, sized=False)


def test_rotate_says_whether_it_rotated(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    proc.mkdir()
    w = LogWriter(proc, "out", compress=False, **FOREVER)
    assert w.rotate() is False  # nothing written: nothing to rotate
    assert w.write(b"one\n")
    moved = tmp_path / "moved"
    os.rename(proc, moved)
    proc.write_bytes(b"")  # the rename inside proc/ fails
    assert w.rotate() is False and "Not a directory" in w.problem
    proc.unlink()
    os.rename(moved, proc)
    assert w.rotate() is True and w.problem is None
    assert len(rotated_files(proc)) == 1
    w.close()


def test_a_file_grown_past_max_size_while_rotation_failed_rotates_before_the_next_line(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    proc.mkdir()
    w = LogWriter(proc, "out", max_size=64, compress=False, **FOREVER)
    moved = tmp_path / "moved"
    os.rename(proc, moved)
    proc.write_bytes(b"")  # rotations fail: the old file takes everything
    assert w.write(b"x" * 100 + b"\n") and w.write(b"y" * 30 + b"\n")
    proc.unlink()
    os.rename(moved, proc)
    w.tick()  # rotation allowed again
    assert w.write(b"after\n")
    w.close()
    assert (proc / "current.out").read_bytes() == b"after\n"  # not one more line into the oversized file
    assert read_back(proc) == [b"x" * 100 + b"\n" + b"y" * 30 + b"\n", b"after\n"]


def test_a_pending_time_rotation_never_rotates_an_empty_file(tmp_path: Path) -> None:
    clock = Clock()
    w = LogWriter(tmp_path, "out", rotate_every=60, retain=None, max_age=None, compress=False, clock=clock)
    assert w.write(b"half a line")
    clock.t += 61
    w.tick()  # the time rotation is due, and waits for the newline
    assert rotated_files(tmp_path) == []
    (tmp_path / "current.out").unlink()  # removed under the writer
    w.tick()  # a new, empty current.out
    assert rotated_files(tmp_path) == [], "an empty file was rotated"
    assert w.write(b"next\n")
    w.close()
    assert (tmp_path / "current.out").read_bytes() == b"next\n"


def test_a_line_that_overflows_a_file_holding_one_newline_starts_the_next_file(tmp_path: Path) -> None:
    w = LogWriter(tmp_path, "out", max_size=2, compress=False, **FOREVER)
    assert w.write(b"\n") and w.write(b"abc")  # a line that would overflow: it starts anew
    w.close()
    assert read_back(tmp_path) == [b"\n", b"abc"]


def test_a_newline_that_fills_the_file_ends_it_there(tmp_path: Path) -> None:
    w = LogWriter(tmp_path, "out", max_size=4, compress=False, **FOREVER)
    assert w.write(b"abc") and w.write(b"\nde\n")  # the newline makes 4 bytes: the rest goes on
    w.close()
    assert read_back(tmp_path) == [b"abc\n", b"de\n"]


def test_a_file_put_in_place_of_current_after_a_rotation_is_taken_over_not_rotated(tmp_path: Path) -> None:
    w = LogWriter(tmp_path, "out", compress=False, **FOREVER)
    assert w.write(b"one\n") and w.rotate() is True
    theirs = tmp_path / "theirs"
    theirs.write_bytes(b"theirs\n")
    os.replace(theirs, tmp_path / "current.out")  # another tool's file now stands at the path
    w.tick()  # follows the path
    assert w.write(b"two\n")
    w.close()
    assert len(rotated_files(tmp_path)) == 1  # the rotation asked for was done once, not again
    assert (tmp_path / "current.out").read_bytes() == b"theirs\ntwo\n"


def test_a_file_filled_exactly_while_rotation_failed_rotates_once_it_works_again(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    proc.mkdir()
    w = LogWriter(proc, "out", max_size=64, compress=False, **FOREVER)
    moved = tmp_path / "moved"
    os.rename(proc, moved)
    proc.write_bytes(b"")  # the rotation at the 64th byte fails
    assert w.write(b"x" * 63 + b"\n")
    proc.unlink()
    os.rename(moved, proc)
    w.tick()
    assert w.write(b"after\n")
    w.close()
    assert read_back(proc) == [b"x" * 63 + b"\n", b"after\n"]


def test_the_end_of_a_run_adds_no_newline_to_a_file_just_rotated(tmp_path: Path) -> None:
    w = LogWriter(tmp_path, "out", max_size=2, compress=False, **FOREVER)
    assert w.write(b"a\n")  # fills the file: rotated at once
    assert w.end_line()  # the run's pipe closed on a whole line: nothing to end
    w.close()
    assert read_back(tmp_path) == [b"a\n", b""]


def test_new_writer_continues_the_file_on_a_new_line(tmp_path: Path) -> None:
    (tmp_path / "current.out").write_bytes(b"old run, cut off")
    w = LogWriter(tmp_path, "out")
    assert w.write(b"new run\n")
    w.close()
    assert (tmp_path / "current.out").read_bytes() == b"old run, cut off\nnew run\n"


def test_time_rotation_counts_from_when_current_was_created(tmp_path: Path) -> None:
    clock = Clock()
    w = LogWriter(tmp_path, "out", rotate_every=3600.0, clock=clock, compress=False)
    w.write(b"a\n")
    clock.t += 10
    assert w.rotate()
    w.write(b"b\n")
    w.close()
    clock.t += 3600  # a restarted writer: current.out began at the rotation an hour ago
    w2 = LogWriter(tmp_path, "out", rotate_every=3600.0, clock=clock, compress=False)
    w2.tick()
    w2.close()
    assert read_back(tmp_path) == [b"a\n", b"b\n", b""]


def test_deleted_current_file_is_reopened(tmp_path: Path) -> None:
    w = LogWriter(tmp_path, "out")
    w.write(b"before\n")
    (tmp_path / "current.out").unlink()
    w.tick()
    assert w.write(b"after\n")
    w.close()
    assert (tmp_path / "current.out").read_bytes() == b"after\n"


def test_a_quiet_writer_ticked_every_second_still_rotates_and_reopens_on_time(tmp_path: Path) -> None:
    # idle ticks return at once until something is due: the due things still happen at their tick
    clock = Clock()
    start = clock.t
    w = LogWriter(tmp_path, "out", rotate_every=10.0, clock=clock, retain=None, max_age=None, compress=False)
    w.write(b"a\n")
    for second in range(1, 10):
        clock.t = start + second
        w.tick()
    assert not rotated_files(tmp_path), "9 s after the open: not yet"
    clock.t = start + 10
    w.tick()
    assert len(rotated_files(tmp_path)) == 1, "the tick at 10 s rotates"
    (tmp_path / "current.out").unlink()
    for second in range(11, 11 + int(IDLE_CHECK) + 1):
        clock.t = start + second
        w.tick()
    assert (tmp_path / "current.out").exists(), "a deleted file is reopened within IDLE_CHECK"
    w.write(b"b\n")
    for second in range(12 + int(IDLE_CHECK), 14 + int(IDLE_CHECK)):
        clock.t = start + second
        w.tick()  # quiet again
    assert w.rotate() is True, "a request on a quiet writer acts now, not at its next check"
    w.close()
    assert len(rotated_files(tmp_path)) == 2


def test_flush_logs_empties_current_and_removes_rotated(tmp_path: Path) -> None:
    w = LogWriter(tmp_path, "out", max_size=MAX, **FOREVER)
    other = LogWriter(tmp_path, "err", max_size=MAX, **FOREVER)
    data = b"".join(make_lines(seed=2, count=500))
    for chunk in blocks(data, 64 * 1024):
        w.write(chunk)
        other.write(chunk)
    assert len(rotated_files(tmp_path)) > 20
    w.flush_logs()  # compressions may still be running: they are dropped
    assert w.write(b"fresh\n")
    w.close()
    other.close()
    assert not any(n.startswith("out-") for n in os.listdir(tmp_path))
    assert (tmp_path / "current.out").read_bytes() == b"fresh\n"
    check_files(read_back(tmp_path, "err"), data)


def test_close_is_final(tmp_path: Path) -> None:
    w = LogWriter(tmp_path, "out")
    w.close()
    w.close()
    with pytest.raises(ValueError):
        w.write(b"x\n")


def test_idle_writer_checks_its_path_every_idle_check_seconds(tmp_path: Path) -> None:
    from tsm_notebook.engine.logwriter import IDLE_CHECK

    clock = Clock()
    w = LogWriter(tmp_path, "out", clock=clock, compress=False)
    try:
        w.write(b"first\n")
        w.tick()  # a full check: it wrote since the last one
        moved = tmp_path / "moved.out"
        os.replace(w.path, moved)  # an outside tool renames the file away
        clock.t += 1.0
        w.tick()  # idle and checked a second ago: no path check yet
        assert not w.path.exists()
        clock.t += IDLE_CHECK
        w.tick()  # now it looks, and follows the path with a new file
        w.write(b"second\n")
        assert moved.read_bytes() == b"first\n" and w.path.read_bytes() == b"second\n"
    finally:
        w.close()


def test_compression_waits_for_the_stream_to_calm(tmp_path: Path) -> None:
    from tsm_notebook.engine.logwriter import DEFER_MAX

    w = LogWriter(tmp_path, "out", max_size=1024, **FOREVER)
    try:
        line = b"x" * 99 + b"\n"
        for _ in range(30):
            assert w.write(line)
        w.tick()  # the stream wrote since the last tick: a burst, nothing is compressed yet
        rotated = rotated_files(tmp_path)
        assert rotated and all(name.endswith(".log") for name in rotated)
        w.tick()  # a tick with no write in between: the stream is quiet, compress
        wait_until(lambda: all(n.endswith(".gz") for n in rotated_files(tmp_path)), tick=w.tick)
        # a long flood still compresses in batches, never more than DEFER_MAX files behind
        for _ in range(11 * (DEFER_MAX + 2)):
            assert w.write(line)
        # (those handed to the compressor finish in the background; no tick, so no quiet-stream flush)
        wait_until(lambda: sum(n.endswith(".log") for n in rotated_files(tmp_path)) <= DEFER_MAX)
        assert sum(n.endswith(".gz") for n in rotated_files(tmp_path)) > len(rotated)
    finally:
        w.close()
    assert all(n.endswith(".gz") for n in rotated_files(tmp_path))


def test_a_one_byte_file_rotates(tmp_path: Path) -> None:
    clock = Clock()
    w = LogWriter(tmp_path, "out", compress=False, retain=None, max_age=None, rotate_every=10.0, clock=clock)
    assert w.write(b"\n")
    assert w.rotate()  # by request
    assert w.write(b"\n")
    clock.t += 11
    w.tick()  # by time
    w.close()
    assert read_back(tmp_path) == [b"\n", b"\n", b""]
