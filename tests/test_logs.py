"""Logs end to end: a real daemon capturing real children, read back by the real `tsm logs`.

Every byte a child writes must reach its files exactly once and in order, whatever the write
pattern, across many rotations (64 KiB) and compression; the command line and
``tsm_notebook.logs`` read it back; a broken log directory or a full disk stalls the child
(back-pressure), is reported, and capture resumes without loss once fixed.
"""

from __future__ import annotations

import gzip
import inspect
import json
import os
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import psutil
import pytest

from conftest import PY, wait_for
from tsm_notebook.client import commands
from tsm_notebook.core.errors import ProcessNotFound, UsageError
from tsm_notebook.core.logread import PREFIX_LEN, LogLine, log_files, parse_rotated_name
from tsm_notebook.notebook.logs_api import logs

MAX = 64 * 1024


# ---------------------------------------------------------------------- what the children write
# These functions are the single source of the expected bytes: the child scripts are built from
# their source text, and the tests call them to know what must be in the files.


def content(pattern: str, tag: str, size: int) -> bytes:
    """About ``size`` bytes of numbered lines for ``pattern``; ``tag`` tells the streams apart."""
    import random

    rng = random.Random(f"{pattern}-{tag}")
    lines = []
    total = i = 0
    while total < size:
        if pattern == "binary":
            # any byte but the newline: invalid UTF-8, NUL, CR, escape sequences
            body = rng.randbytes(rng.randrange(0, 90)).replace(b"\n", b"\x0b")
        else:
            body = b"x" * rng.randrange(0, 120)
        one = b"%s %07d %s\n" % (tag.encode(), i, body)
        lines.append(one)
        total += len(one)
        i += 1
    data = b"".join(lines)
    return data[:-1] if pattern == "nonl" else data


def pieces(pattern: str, data: bytes, seed: str) -> list[bytes]:
    """How ``pattern`` cuts ``data`` into writes: per line, 64 KiB blocks, or ragged sizes."""
    import random

    if pattern in ("line", "nonl"):
        return data.splitlines(keepends=True)
    if pattern == "block":
        return [data[i : i + 65536] for i in range(0, len(data), 65536)]
    rng = random.Random(seed)  # "ragged", "binary": writes that ignore line ends
    out, pos = [], 0
    while pos < len(data):
        n = rng.choice([1, 7, 59, 500, 4096, 5000, 65536, 70000])
        out.append(data[pos : pos + n])
        pos += n
    return out


CHILD = (
    "import os, sys, time\n"
    + inspect.getsource(content)
    + inspect.getsource(pieces)
    + """
def write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]

pattern, size = sys.argv[1], int(sys.argv[2])
delay = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
if delay:
    time.sleep(delay)
outs = pieces(pattern, content(pattern, "O", size), "O")
errs = pieces(pattern, content(pattern, "E", size), "E")
for k in range(max(len(outs), len(errs))):  # both streams flow at once
    if k < len(outs):
        write_all(1, outs[k])
    if k < len(errs):
        write_all(2, errs[k])
"""
)

# Writes a numbered line every ``interval`` seconds, forever.
TICKER = """
import os, sys, time
interval = float(sys.argv[1])
i = 0
while True:
    os.write(1, b"%06d tick\\n" % i)
    i += 1
    time.sleep(interval)
"""

# Waits for the file argv[2], then writes argv[1] bytes of 60-byte numbered lines, one write each.
FLOOD = """
import os, sys, time
total, go = int(sys.argv[1]), sys.argv[2]
while not os.path.exists(go):
    time.sleep(0.005)
for i in range(total // 60):
    os.write(1, b"%010d %s\\n" % (i, b"f" * 48))
time.sleep(600)
"""


def flood_bytes(total: int) -> bytes:
    return b"".join(b"%010d %s\n" % (i, b"f" * 48) for i in range(total // 60))


# ---------------------------------------------------------------------- helpers


@pytest.fixture
def scripts(tmp_path: Path) -> dict[str, str]:
    paths = {}
    for name, text in (("child", CHILD), ("ticker", TICKER), ("flood", FLOOD)):
        p = tmp_path / f"{name}.py"
        p.write_text(text)
        paths[name] = str(p)
    return paths


def start(tsm, *argv: str) -> dict:
    """``tsm start ARGV`` through the real grammar, in-process (no interpreter start-up per call)."""
    ns = commands.parse(["start", *argv])
    return commands.start(tsm.client, commands.spec_from_args(ns))


def run_bytes(tsm, *args: str) -> subprocess.CompletedProcess:
    """The real command line, stdout as bytes."""
    return subprocess.run([sys.executable, "-m", "tsm_notebook", *args], env=tsm.env, capture_output=True,
                          timeout=60, stdin=subprocess.DEVNULL)


def read_file(path: Path) -> bytes:
    """A log file's bytes, decompressed; a ``.log`` compressed meanwhile is read from its ``.gz``."""
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except FileNotFoundError:
        with gzip.open(path.with_name(path.name + ".gz"), "rb") as f:
            return f.read()


def rotated(directory: Path, stream: str) -> list[Path]:
    return [p for p in log_files(directory, stream) if not p.name.startswith("current.")]


def stream_bytes(directory: Path, stream: str) -> bytes:
    return b"".join(read_file(p) for p in log_files(directory, stream))


def settled(directory: Path) -> bool:
    """Every rotated file compressed (nothing left for the gzip threads)."""
    return not any(p.name.endswith(".log") for s in ("out", "err") for p in rotated(directory, s))


def ticks(data: bytes) -> list[int]:
    return [int(raw.split()[0]) for raw in data.splitlines()]


def consecutive(numbers: list[int]) -> bool:
    return all(b == a + 1 for a, b in zip(numbers, numbers[1:]))


def events(tsm, name: str) -> list[tuple[str, str]]:
    tsm.call("history_flush")
    with sqlite3.connect(tsm.home / "db" / "tsm.sqlite") as db:
        return list(db.execute("SELECT event, reason FROM events WHERE name = ? ORDER BY id", (name,)))


def daemon_fds_to(pid: int, target: str) -> bool:
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                return True
        except OSError:
            continue
    return False


# ---------------------------------------------------------------------- capture


PATTERNS = ("line", "block", "ragged", "binary", "nonl")


def test_every_write_pattern_lands_whole_across_many_rotations(tsm, scripts):
    size = 1_200_000  # per stream: about 18 rotations of 64 KiB each
    for pattern in PATTERNS:
        start(tsm, "--name", pattern, "--no-autorestart", "--log-max-size", "64K", "--log-retain", "1000",
              "--", PY, scripts["child"], pattern, str(size))
    for pattern in PATTERNS:
        directory = Path(tsm.wait_status(pattern, "stopped", timeout=30)["dir"])
        wait_for(lambda: settled(directory), 10, message=f"{pattern}: compression")
        for stream, tag in (("out", "O"), ("err", "E")):
            expected = content(pattern, tag, size)
            if pattern == "nonl":
                expected += b"\n"  # the daemon ends an unfinished last line when the pipe closes
            files = rotated(directory, stream)
            assert len(files) >= 15, (pattern, stream, len(files))
            assert all(p.name.endswith(".log.gz") for p in files)
            stamps = [parse_rotated_name(p.name)[1] for p in files]
            assert stamps == sorted(set(stamps))
            for p in files:  # each file ends on a line boundary, about the rotation size
                data = read_file(p)
                assert data.endswith(b"\n") and MAX - 300 < len(data) < MAX + 300, (pattern, p.name, len(data))
            got = stream_bytes(directory, stream)
            assert got == expected, f"{pattern}/{stream}: {len(got)} bytes, expected {len(expected)}"
    # --raw gives the bytes exactly as written, across every rotated and compressed file
    r = run_bytes(tsm, "logs", "binary", "--raw", "--err", "--lines", "1000000")
    assert r.returncode == 0 and r.stdout == content("binary", "E", size)


def test_time_prefixes_every_line_of_block_writes(tsm, scripts):
    size = 800_000
    before = time.time()
    start(tsm, "--name", "stamped", "--time", "--no-autorestart", "--log-max-size", "64K", "--log-retain", "1000",
          "--", PY, scripts["child"], "block", str(size))
    directory = Path(tsm.wait_status("stamped", "stopped", timeout=30)["dir"])
    after = time.time()
    wait_for(lambda: settled(directory), 10, message="compression")
    for stream, tag in (("out", "O"), ("err", "E")):
        assert len(rotated(directory, stream)) >= 10
        raws = stream_bytes(directory, stream).split(b"\n")
        assert raws.pop() == b""
        lines = [LogLine.parse(stream, raw) for raw in raws]
        assert all(line.time is not None for line in lines)
        times = [line.time for line in lines]
        assert times == sorted(times) and before - 0.001 <= times[0] and times[-1] <= after
        body = b"".join(raw[PREFIX_LEN:] + b"\n" for raw in raws)
        assert body == content("block", tag, size)


def test_exited_child_is_fully_on_disk_when_its_exit_shows(tsm, scripts):
    # Waits past the launch window, writes 900 KB in one burst (most of it still in the pipe
    # when it exits), exits at once.
    start(tsm, "--name", "burst", "--no-autorestart", "--log-retain", "1000",
          "--", PY, scripts["child"], "block", "900000", "0.4")
    meta = tsm.proc_dir("burst") / "meta.json"
    wait_for(lambda: json.loads(meta.read_text())["status"] == "stopped", 15, interval=0.001,
             message="the exit to be recorded")
    # the very moment the exit is recorded, every byte is already in the files
    assert stream_bytes(tsm.proc_dir("burst"), "out") == content("block", "O", 900000)
    assert stream_bytes(tsm.proc_dir("burst"), "err") == content("block", "E", 900000)
    r = run_bytes(tsm, "logs", "burst", "--out", "--raw", "--lines", "100000")
    assert r.stdout == content("block", "O", 900000)


def test_unfinished_last_line_does_not_merge_into_the_next_run(tsm, tmp_path):
    counter = tmp_path / "runs"
    code = (
        "import os, time, pathlib\n"
        f"p = pathlib.Path({str(counter)!r})\n"
        "n = int(p.read_text()) + 1 if p.exists() else 1\n"
        "p.write_text(str(n))\n"
        "if n == 1:\n"
        "    os.write(1, b'first run, no newline'); time.sleep(0.4); raise SystemExit(3)\n"
        "os.write(1, b'second run\\n'); time.sleep(600)\n"
    )
    start(tsm, "--name", "twice", "--", PY, "-c", code)
    directory = tsm.proc_dir("twice")
    wait_for(lambda: stream_bytes(directory, "out").endswith(b"second run\n"), 10, message="the second run")
    assert stream_bytes(directory, "out") == b"first run, no newline\nsecond run\n"


def test_restart_with_new_log_options_uses_them(tsm):
    start(tsm, "--name", "re", "--no-autorestart", "--", PY, "-c", "print('plain')")
    tsm.wait_status("re", "stopped")
    start(tsm, "--name", "re", "--time", "--no-autorestart", "--", PY, "-c", "print('stamped')")
    tsm.wait_status("re", "stopped")
    lines = logs("re", stream="out", home=tsm.home)
    assert [(line.text, line.time is not None) for line in lines] == [("plain", False), ("stamped", True)]


def test_time_rotation_from_the_home_config(tsm, scripts):
    (tsm.home / "config.toml").write_text('[logs]\nrotate_every = "1s"\n')
    start(tsm, "--name", "tick", "--", PY, scripts["ticker"], "0.02")
    directory = tsm.proc_dir("tick")
    wait_for(lambda: len(rotated(directory, "out")) >= 2, 10, message="two time rotations")
    numbers = ticks(stream_bytes(directory, "out"))
    assert numbers[0] == 0 and consecutive(numbers)


# ---------------------------------------------------------------------- reading


def test_logs_lines_streams_raw_and_json(tsm):
    code = (
        "import os, time\n"
        "for i in range(100):\n"
        "    os.write(1, b'out %d\\n' % i); os.write(2, b'err %d\\n' % i)\n"
        "os.write(1, b'bad \\xff\\xfe end\\n')\n"
        "time.sleep(600)\n"
    )
    start(tsm, "--name", "talk", "--", PY, "-c", code)
    wait_for(lambda: b"bad" in stream_bytes(tsm.proc_dir("talk"), "out"), 10, message="the output")
    r = tsm.run("logs", "talk", "--lines", "2", check=True)
    assert r.stdout.splitlines() == ["out | out 99", "out | bad \ufffd\ufffd end", "err | err 98", "err | err 99"]
    assert tsm.run("logs", "talk", "--out", "--lines", "1", check=True).stdout == "out | bad \ufffd\ufffd end\n"
    assert tsm.run("logs", "talk", "--err", "--lines", "3", check=True).stdout.splitlines() == [
        "err | err 97", "err | err 98", "err | err 99"]
    assert tsm.run("logs", "talk", "--lines", "0", check=True).stdout == ""
    assert len(tsm.run("logs", "talk", check=True).stdout.splitlines()) == 100  # 50 of each by default
    assert run_bytes(tsm, "logs", "talk", "--out", "--raw", "--lines", "2").stdout == b"out 99\nbad \xff\xfe end\n"
    rows = [json.loads(x) for x in tsm.run("logs", "talk", "--json", "--lines", "1", check=True).stdout.splitlines()]
    assert [(j["name"], j["stream"], j["time"]) for j in rows] == [("talk", "out", None), ("talk", "err", None)]
    assert rows[0]["raw"].encode("latin-1") == b"bad \xff\xfe end" and rows[1] == {
        "name": "talk", "stream": "err", "time": None, "text": "err 99", "raw": None}
    # by tsm_id, and several processes at once are labelled with their names
    tsm_id = tsm.row("talk")["tsm_id"]
    assert tsm.run("logs", str(tsm_id), "--err", "--lines", "1", check=True).stdout == "err | err 99\n"
    start(tsm, "--name", "other", "--", PY, "-c", "import os, time; os.write(1, b'hello\\n'); time.sleep(600)")
    wait_for(lambda: stream_bytes(tsm.proc_dir("other"), "out"), 10, message="other's output")
    assert tsm.run("logs", "all", "--out", "--lines", "1", check=True).stdout.splitlines() == [
        "talk|out | bad \ufffd\ufffd end", "other|out | hello"]
    bad = tsm.run("logs", "talk", "--since", "yesterday-ish")
    assert bad.returncode == 2 and "invalid time" in bad.stderr
    assert tsm.run("logs", "ghost").returncode == 1


def test_logs_since_uses_the_time_prefixes(tsm, tmp_path):
    go = tmp_path / "go"
    code = (
        "import os, time\n"
        "for i in range(5): os.write(1, b'early %d\\n' % i)\n"
        f"while not os.path.exists({str(go)!r}): time.sleep(0.005)\n"
        "for i in range(5): os.write(1, b'late %d\\n' % i)\n"
        "time.sleep(600)\n"
    )
    start(tsm, "--name", "phases", "--time", "--", PY, "-c", code)
    early = wait_for(lambda: (lambda got: got if len(got) == 5 else None)(logs("phases", home=tsm.home)), 10)
    middle = early[-1].time + 0.01
    wait_for(lambda: time.time() > middle + 0.002, 1, message="the clock to pass the middle")
    go.touch()
    wait_for(lambda: len(logs("phases", home=tsm.home)) == 10, 10, message="the late lines")
    iso = datetime.fromtimestamp(middle, timezone.utc).isoformat()
    r = tsm.run("logs", "phases", "--since", iso, check=True)
    assert r.stdout.splitlines() == [f"out | late {i}" for i in range(5)]
    assert len(tsm.run("logs", "phases", "--since", "10m", check=True).stdout.splitlines()) == 10
    assert [line.text for line in logs("phases", since=middle, home=tsm.home)] == [f"late {i}" for i in range(5)]
    raw = run_bytes(tsm, "logs", "phases", "--raw", "--lines", "1").stdout
    assert raw.endswith(b"Z late 4\n") and len(raw) == PREFIX_LEN + len(b"late 4\n")


def test_follow_keeps_going_across_a_rotation_and_ends_on_ctrl_c(tsm, scripts):
    start(tsm, "--name", "tick", "--", PY, scripts["ticker"], "0.01")
    directory = tsm.proc_dir("tick")
    wait_for(lambda: len(stream_bytes(directory, "out").splitlines()) >= 5, 10, message="first ticks")
    follower = subprocess.Popen([sys.executable, "-m", "tsm_notebook", "logs", "tick", "--follow", "--out",
                                 "--raw", "--lines", "3"], env=tsm.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    got: queue.Queue[bytes] = queue.Queue()
    reader = threading.Thread(target=lambda: [got.put(x) for x in iter(follower.stdout.readline, b"")], daemon=True)
    reader.start()
    seen: list[int] = []

    def until(n: int) -> bool:
        while True:
            try:
                seen.append(int(got.get_nowait().split()[0]))
            except queue.Empty:
                return bool(seen) and seen[-1] >= n

    try:
        wait_for(lambda: len(seen) >= 10 or until(-1) and len(seen) >= 10, 10, message="followed lines")
        r = tsm.run("logs", "rotate", "tick", check=True)
        assert r.stdout == "Rotated: tick\n"
        wait_for(lambda: rotated(directory, "out"), 5, message="the rotated file")
        first_new = wait_for(lambda: ticks((directory / "current.out").read_bytes())[:1], 5)[0]
        wait_for(lambda: until(first_new + 30), 10, message="lines written after the rotation")
        assert consecutive(seen), seen
        follower.send_signal(signal.SIGINT)
        assert follower.wait(10) == 0
        reader.join(5)
        assert follower.stderr.read() == b""  # ends cleanly: no traceback
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait(5)
        follower.stdout.close()
        follower.stderr.close()


def test_flush_empties_logs_and_capture_goes_on(tsm, tmp_path, scripts):
    go = tmp_path / "go"
    code = (
        "import os, time\n"
        "for i in range(3000): os.write(1, b'before %05d %s\\n' % (i, b'b' * 40))\n"
        "os.write(2, b'an error\\n')\n"
        f"while not os.path.exists({str(go)!r}): time.sleep(0.005)\n"
        "os.write(1, b'after\\n')\n"
        "time.sleep(600)\n"
    )
    start(tsm, "--name", "fl", "--log-max-size", "64K", "--", PY, "-c", code)
    directory = tsm.proc_dir("fl")
    wait_for(lambda: b"an error" in stream_bytes(directory, "err") and rotated(directory, "out"), 10)
    assert tsm.run("flush", "fl", check=True).stdout == "Flushed: fl\n"
    assert rotated(directory, "out") == [] and stream_bytes(directory, "out") == b""
    assert stream_bytes(directory, "err") == b""
    assert tsm.run("logs", "fl", check=True).stdout == ""
    go.touch()
    wait_for(lambda: stream_bytes(directory, "out") == b"after\n", 10, message="capture after the flush")
    wait_for(lambda: settled(directory), 5)
    assert rotated(directory, "out") == []  # a compression running during the flush was dropped
    assert tsm.run("flush", check=True).stdout == "Flushed: fl\n"  # all, by default


def test_retention_keeps_the_newest_rotated_files(tsm, scripts):
    size = 1_000_000
    start(tsm, "--name", "ret", "--no-autorestart", "--log-max-size", "64K", "--log-retain", "2",
          "--", PY, scripts["child"], "line", str(size))
    directory = Path(tsm.wait_status("ret", "stopped", timeout=30)["dir"])
    for stream in ("out", "err"):
        wait_for(lambda: len(rotated(directory, stream)) == 2 and settled(directory), 10,
                 message=f"{stream}: pruning to 2 rotated files")
        kept = stream_bytes(directory, stream)
        expected = content("line", "O" if stream == "out" else "E", size)
        assert len(kept) > 2 * MAX and expected.endswith(kept) and expected[-len(kept) - 1] == 10


def test_logs_function(tsm):
    start(tsm, "--name", "a", "--", PY, "-c", "import os, time; os.write(1, b'a1\\na2\\n'); os.write(2, b'ae\\n'); time.sleep(600)")
    start(tsm, "--name", "b", "--", PY, "-c", "import os, time; os.write(2, b'be\\n'); time.sleep(600)")
    wait_for(lambda: (tsm.proc_dir("a") / "current.err").stat().st_size and (tsm.proc_dir("b") / "current.err").stat().st_size, 10)
    got = logs("a", home=tsm.home)
    assert [(line.name, line.stream, line.text, line.time) for line in got] == [
        ("a", "out", "a1", None), ("a", "out", "a2", None), ("a", "err", "ae", None)]
    assert [line.raw for line in logs("a", lines=1, stream="out", home=str(tsm.home))] == [b"a2"]
    assert [(line.name, line.text) for line in logs("all", stream="err", home=tsm.home)] == [("a", "ae"), ("b", "be")]
    assert logs("a", since="1m", stream="err", home=tsm.home)[0].text == "ae"
    assert logs("a", lines=0, home=tsm.home) == []
    with pytest.raises(ProcessNotFound):
        logs("ghost", home=tsm.home)
    with pytest.raises(UsageError):
        logs("a", stream="stdout", home=tsm.home)
    with pytest.raises(UsageError):
        logs("a", since="soon", home=tsm.home)


# ---------------------------------------------------------------------- failure


def test_full_disk_back_pressures_the_child_then_capture_resumes_without_loss(tsm, tmp_path, scripts):
    total = 6 * 1024 * 1024
    go = tmp_path / "go"
    start(tsm, "--name", "bystander", "--", PY, scripts["ticker"], "0.02")
    victim = start(tsm, "--name", "victim", "--", PY, scripts["flood"], str(total), str(go))
    daemon = tsm.daemon_pid()
    directory = tsm.proc_dir("victim")
    current, aside = directory / "current.out", tmp_path / "aside.out"
    rss_before = psutil.Process(daemon).memory_info().rss
    # The disk "fills": current.out now leads to /dev/full, where every write fails with ENOSPC.
    os.link(current, aside)
    # a device node of the full device, not a symlink (the daemon never writes through one)
    import stat

    try:
        os.mknod(directory / ".full", stat.S_IFCHR | 0o600, os.makedev(1, 7))
    except PermissionError:
        pytest.skip("needs the right to make a device node")
    os.replace(directory / ".full", current)
    wait_for(lambda: daemon_fds_to(daemon, str(current)), 5, message="the writer to follow the path")
    go.touch()
    problem = wait_for(lambda: tsm.row("victim")["problems"], 5, message="the problem to show")
    assert "No space left on device" in problem["log-out"]
    # back-pressure: the child blocks once the pipe is full, far from done
    child = psutil.Process(victim["pid"])
    last = [-1]

    def blocked() -> bool:
        wrote = child.io_counters().write_chars
        still, last[0] = wrote == last[0], wrote
        return still

    wait_for(blocked, 10, interval=0.3, message="the child to block")
    assert 64 * 1024 < last[0] < 4 * 1024 * 1024 < total
    assert psutil.Process(daemon).memory_info().rss - rss_before < 8 * 1024 * 1024
    # the daemon and everyone else go on
    size = (tsm.proc_dir("bystander") / "current.out").stat().st_size
    wait_for(lambda: (tsm.proc_dir("bystander") / "current.out").stat().st_size > size + 200, 5,
             message="the bystander's capture")
    assert tsm.row("bystander")["status"] == "online" and tsm.daemon_pid() == daemon
    assert "victim: log-out: No space left on device" in tsm.run("patrol", check=True).stdout
    assert "No space left on device" in tsm.run("describe", "victim", check=True).stdout
    assert any(e == "log-error" and "No space left" in r for e, r in events(tsm, "victim"))
    # fixed: capture resumes where it stopped, nothing lost or doubled
    current.unlink()
    wait_for(lambda: current.is_file() and current.stat().st_size == total // 60 * 60, 15, message="the rest")
    assert aside.read_bytes() + current.read_bytes() == flood_bytes(total)
    wait_for(lambda: not tsm.row("victim")["problems"], 5, message="the problem to clear")
    assert ("log-resumed", "out: capture resumed") in events(tsm, "victim")
    assert tsm.row("victim")["pid"] == victim["pid"] and tsm.daemon_pid() == daemon


def test_process_directory_swapped_for_a_file_then_restored(tsm, scripts):
    start(tsm, "--name", "tick", "--", PY, scripts["ticker"], "0.01")
    directory = tsm.proc_dir("tick")
    moved = directory.with_name("tick.moved")
    wait_for(lambda: len(stream_bytes(directory, "out").splitlines()) > 5, 10, message="first ticks")
    os.rename(directory, moved)
    directory.write_text("not a directory any more\n")
    problem = wait_for(lambda: (tsm.row("tick")["problems"] or {}).get("log-out"), 5, message="the problem to show")
    assert "Not a directory" in problem
    assert "tick: log-out: Not a directory" in tsm.run("patrol", check=True).stdout
    assert tsm.row("tick")["status"] == "online"
    directory.unlink()
    os.rename(moved, directory)
    wait_for(lambda: "log-out" not in (tsm.row("tick")["problems"] or {}), 5, message="the problem to clear")
    resumed = ticks(stream_bytes(directory, "out"))[-1]
    wait_for(lambda: ticks(stream_bytes(directory, "out"))[-1] > resumed + 20, 5, message="new ticks")
    numbers = ticks(stream_bytes(directory, "out"))
    assert numbers[0] == 0 and consecutive(numbers)
