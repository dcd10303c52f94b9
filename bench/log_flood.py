"""Log capture under a flood: a child prints numbered 60-byte lines through the real daemon.

Run: ``.venv/bin/python bench/log_flood.py`` (full: 2,000,000 lines per case, 8 x 1,000,000 for
the many-children cases; about two minutes) or ``--lines 200000 --many-lines 100000`` for a quick
look. ``--start-args=OPTIONS`` passes options to every ``tsm start`` (``--cases many
--start-args=--time``: eight children with timestamps). ``--json FILE`` also writes the rows as
JSON. It is a benchmark, not a test: nothing here asserts, the figures are printed.

Cases, each in a fresh ``TSM_HOME`` with a fresh daemon:

* ``file``: the same child with stdout redirected straight to a file (the ceiling);
* ``tsm``: the child under the daemon (default 10 MB rotation, gzip, ``--log-retain`` large
  enough that nothing is pruned, so every line can be checked);
* ``tsm --time``: the same with timestamp prefixes;
* ``tsm x8``: eight children flooding at once.

Each in two write patterns: ``line`` (Python with ``PYTHONUNBUFFERED=1``, one
``sys.stdout.write`` of a whole line per line: one ``write(2)`` each) and ``block`` (``os.write``
of exactly 64 KiB, so lines straddle the writes). The lines are built before the child's clock
starts, so formatting is not measured.

Reported per case: lines/s (lines / time from the child's first write until the log holds its
last line), the child's own writing time, the time until the log holds every line, the daemon's
CPU seconds (its threads included: the gzip workers too; "a/b": until the log was complete /
until every rotated file was compressed), its RSS before, at its peak (``VmRSS`` sampled every
50 ms until the compressions ended) and the growth, and lost, duplicated, out-of-order and split lines, counted by
reading every file back (rotated ``.gz`` files decompressed).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# The measuring side imports bench.measure (psutil) and tsm_notebook inside the functions that
# need them: the child runs this same file with the bare interpreter and must stay light.

LINE_BYTES = 60
BLOCK = 64 * 1024
FILL = "x" * 48
PREFIX_LEN = len("2026-11-28T23:01:02.123Z ")
PY = os.path.realpath(sys.executable)


def line(i: int) -> str:
    """The ``i``-th line, newline included: 10 digits, a space, 48 x, a newline (60 bytes)."""
    return "%010d %s\n" % (i, FILL)


# ---------------------------------------------------------------------------- the child


def child(count: int, mode: str, marker: str) -> None:
    """Write ``count`` lines to stdout in ``mode``, then ``{"start", "end"}`` (epoch s) to ``marker``.

    The lines are built first; writing starts once ``<marker>.go`` exists, so that several
    children started one after the other flood at the same time.
    """
    go = Path(marker + ".go")
    if mode == "line":
        lines = [line(i) for i in range(count)]
        write = sys.stdout.write  # PYTHONUNBUFFERED: one write(2) per call
        _await(go)
        start = time.time()
        for text in lines:
            write(text)
    elif mode == "block":
        data = "".join(line(i) for i in range(count)).encode()
        view = memoryview(data)
        _await(go)
        start = time.time()
        pos = 0
        while pos < len(view):
            pos += os.write(1, view[pos : pos + BLOCK])
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    end = time.time()
    with open(marker + ".tmp", "w") as f:
        json.dump({"start": start, "end": end}, f)
    os.replace(marker + ".tmp", marker)


def _await(path: Path) -> None:
    while not path.exists():
        time.sleep(0.001)


def child_argv(count: int, mode: str, marker: Path) -> list[str]:
    return [PY, str(Path(__file__).resolve()), "--child", str(count), mode, str(marker)]


# ---------------------------------------------------------------------------- measuring


class RssPeak:
    """Samples a process's VmRSS (bytes) every ``interval`` seconds on a thread; ``peak`` is the largest."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        from bench.measure import rss

        self._rss = rss
        self.pid = pid
        self.interval = interval
        self.first = rss(pid)
        self.peak = self.first
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.peak = max(self.peak, self._rss(self.pid))
            except ProcessLookupError:
                return

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def read_all(paths: list[Path]) -> bytes:
    """The bytes of log files in order, ``.gz`` ones decompressed."""
    chunks = []
    for p in paths:
        try:
            opener = gzip.open if p.name.endswith(".gz") else open
            with opener(p, "rb") as f:
                chunks.append(f.read())
        except FileNotFoundError:  # a .log compressed meanwhile
            with gzip.open(p.with_name(p.name + ".gz"), "rb") as f:
                chunks.append(f.read())
    return b"".join(chunks)


def check(data: bytes, count: int, stamped: bool) -> dict[str, int]:
    """Lost, duplicated, out-of-order and split (malformed) lines of a log that should hold ``count`` lines."""
    seen = bytearray(count)
    dup = split = disorder = 0
    last = -1
    body = data[:-1] if data.endswith(b"\n") else data
    for raw in body.split(b"\n") if body else []:
        if stamped:
            if len(raw) < PREFIX_LEN or raw[23:25] != b"Z ":
                split += 1
                continue
            raw = raw[PREFIX_LEN:]
        if len(raw) != LINE_BYTES - 1 or raw[10:11] != b" " or raw[11:] != FILL.encode() or not raw[:10].isdigit():
            split += 1
            continue
        i = int(raw[:10])
        if i >= count:
            split += 1
            continue
        if seen[i]:
            dup += 1
        seen[i] = 1
        if i < last:
            disorder += 1
        last = i
    return {"lost": count - sum(seen), "dup": dup, "disorder": disorder, "split": split}


# ---------------------------------------------------------------------------- cases


def run_file(work: Path, count: int, mode: str) -> dict:
    out = work / f"direct-{mode}.out"
    marker = work / f"direct-{mode}.json"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    marker.with_name(marker.name + ".go").touch()
    with open(out, "wb") as f:
        subprocess.run(child_argv(count, mode, marker), stdout=f, stdin=subprocess.DEVNULL, env=env, check=True)
    m = json.loads(marker.read_text())
    took = m["end"] - m["start"]
    return {"case": "file", "mode": mode, "children": 1, "lines": count, "lines_per_s": count / took,
            "child_s": took, "complete_s": took, "daemon_cpu_s": None, "daemon_cpu_all_s": None,
            "rss_before": None, "rss_peak": None,
            **check(out.read_bytes(), count, False)}


def run_tsm(work: Path, count: int, mode: str, *, stamped: bool = False, children: int = 1,
            extra: list[str] = ()) -> dict:
    from bench.measure import cpu_seconds
    from tsm_notebook.client import commands
    from tsm_notebook.client.client import Client
    from tsm_notebook.core.logread import log_files, tail

    stamped = stamped or "--time" in extra
    home = Path(tempfile.mkdtemp(prefix="tsm-flood-", dir="/tmp"))
    client = Client(home)
    try:
        client.call("ping")
        daemon = json.loads((home / "daemon.json").read_text())["pid"]
        names = [f"flood-{mode}-{k}" for k in range(children)]
        markers = {n: work / f"{n}.json" for n in names}
        for p in markers.values():
            p.unlink(missing_ok=True)
            p.with_name(p.name + ".go").unlink(missing_ok=True)
        dirs = {}
        for n in names:
            argv = ["start", "--name", n, "--no-autorestart", "--log-retain", "100000"]
            argv += (["--time"] if stamped else []) + list(extra)
            ns = commands.parse(argv + ["--", *child_argv(count, mode, markers[n])])
            row = commands.start(client, commands.spec_from_args(ns))
            dirs[n] = Path(client.call("describe", target=row["name"])[0]["dir"])
        cpu0 = cpu_seconds(daemon)
        rss = RssPeak(daemon)  # from here: the children are started and waiting for the go
        for p in markers.values():
            p.with_name(p.name + ".go").touch()
        last = line(count - 1).encode()[:-1]
        done: dict[str, float] = {}
        deadline = time.monotonic() + 600
        while len(done) < len(names):
            for n in names:
                if n in done:
                    continue
                got = tail(dirs[n], stream="out", lines=1)
                if got and got[-1].raw.endswith(last):
                    done[n] = time.time()
            if time.monotonic() > deadline:
                raise TimeoutError(f"logs incomplete after 600 s: {sorted(set(names) - set(done))}")
            time.sleep(0.01)
        cpu = cpu_seconds(daemon) - cpu0
        deadline = time.monotonic() + 600
        while any(p.name.endswith(".log") for d in dirs.values() for p in log_files(d, "out")):
            if time.monotonic() > deadline:  # compression of the rotated files
                raise TimeoutError("rotated files still uncompressed after 600 s")
            time.sleep(0.05)
        cpu_all = cpu_seconds(daemon) - cpu0
        peak = rss.stop()
        starts, ends = [], []
        for n in names:
            m = json.loads(_wait_file(markers[n]).read_text())
            starts.append(m["start"])
            ends.append(m["end"])
        complete = max(done.values()) - min(starts)
        counts = {"lost": 0, "dup": 0, "disorder": 0, "split": 0}
        client.call("stop", target="all")
        for n in names:
            # stopped: the daemon has drained the pipes and compressions have finished or
            # keep their .log, so every line is somewhere in the files read here
            for k, v in check(read_all(log_files(dirs[n], "out")), count, stamped).items():
                counts[k] += v
        total = count * children
        case = "tsm" if children == 1 else f"tsm x{children}"
        return {"case": case + " --time" if stamped else case,
                "mode": mode, "children": children, "lines": total, "lines_per_s": total / complete,
                "child_s": max(ends) - min(starts), "complete_s": complete,
                "daemon_cpu_s": cpu, "daemon_cpu_all_s": cpu_all,
                "rss_before": rss.first, "rss_peak": peak, **counts}
    finally:
        try:
            client.kill(timeout=60)
        finally:
            client.close()
            shutil.rmtree(home, ignore_errors=True)


def _wait_file(path: Path, timeout: float = 60.0) -> Path:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.01)
    return path


def show(row: dict) -> None:
    mb = lambda v: "-" if v is None else f"{v / 2**20:.1f}"  # noqa: E731
    grew = "-" if row["rss_peak"] is None else mb(row["rss_peak"] - row["rss_before"])
    cpu = "-" if row["daemon_cpu_s"] is None else f"{row['daemon_cpu_s']:.2f}/{row['daemon_cpu_all_s']:.2f}"
    print(
        f"{row['case']:<16} {row['mode']:<5} {row['lines']:>9,} {row['lines_per_s']:>12,.0f} "
        f"{row['child_s']:>8.2f} {row['complete_s']:>9.2f} {cpu:>11} {mb(row['rss_before']):>8} "
        f"{mb(row['rss_peak']):>8} {grew:>6} {row['lost']:>5} {row['dup']:>4} {row['disorder']:>5} {row['split']:>5}",
        flush=True,
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--child", nargs=3, metavar=("COUNT", "MODE", "MARKER"), help=argparse.SUPPRESS)
    ap.add_argument("--lines", type=int, default=2_000_000, help="lines per single-child case")
    ap.add_argument("--many", type=int, default=8, help="children in the many-children cases")
    ap.add_argument("--many-lines", type=int, default=1_000_000, help="lines per child in those cases")
    ap.add_argument("--modes", default="line,block")
    ap.add_argument("--cases", default="file,tsm,time,many")
    ap.add_argument("--start-args", default="", help="more `tsm start` options, e.g. '--no-log-compress'")
    ap.add_argument("--json", help="also write the rows to this file")
    a = ap.parse_args()
    if a.child:
        child(int(a.child[0]), a.child[1], a.child[2])
        return 0
    modes = a.modes.split(",")
    cases = a.cases.split(",")
    extra = a.start_args.split()
    work = Path(tempfile.mkdtemp(prefix="tsm-flood-work-"))
    rows = []
    print(f"{'case':<16} {'mode':<5} {'lines':>9} {'lines/s':>12} {'child s':>8} {'complete':>9} "
          f"{'cpu s':>11} {'rss0 MB':>8} {'peak MB':>8} {'+MB':>6} {'lost':>5} {'dup':>4} {'order':>5} {'split':>5}")
    try:
        for mode in modes:
            if "file" in cases:
                rows.append(run_file(work, a.lines, mode))
                show(rows[-1])
            if "tsm" in cases:
                rows.append(run_tsm(work, a.lines, mode, extra=extra))
                show(rows[-1])
            if "time" in cases:
                rows.append(run_tsm(work, a.lines, mode, stamped=True, extra=extra))
                show(rows[-1])
            if "many" in cases:
                rows.append(run_tsm(work, a.many_lines, mode, children=a.many, extra=extra))
                show(rows[-1])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
