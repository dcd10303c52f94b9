"""Throughput of LogWriter.write(): lines per second for 60-byte lines, per line and in 1 MiB chunks.

Run: ``.venv/bin/python bench/log_writer_micro.py [--lines N]``. Writes into a temporary
directory with the default settings (10 MiB rotation, gzip on a worker thread) and prints one row
per case: lines/s, MB/s, rotations, and the slowest single write() call (how long the event loop
would be held). Compression runs in the background and is not part of the timed section; the
time close() then waits for it is printed separately.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tsm_notebook.engine.logwriter import LogWriter  # noqa: E402

LINE = b"2026-11-28 23:01:02 INFO worker-3 processed item 0000000 ok\n"
assert len(LINE) == 60


def run(name: str, chunks: list[bytes], lines: int, **options: object) -> None:
    with tempfile.TemporaryDirectory(prefix="tsm-bench-") as tmp:
        w = LogWriter(Path(tmp), "out", **options)  # type: ignore[arg-type]
        slowest = 0.0
        started = time.perf_counter()
        for chunk in chunks:
            t = time.perf_counter()
            if not w.write(chunk):
                raise SystemExit(f"write failed: {w.problem}")
            slowest = max(slowest, time.perf_counter() - t)
        took = time.perf_counter() - started
        rotations = sum(1 for n in os.listdir(tmp) if n.startswith("out-"))
        t = time.perf_counter()
        w.close(timeout=120)
        closing = time.perf_counter() - t
        size = sum(len(c) for c in chunks)
        print(
            f"{name:<34} {lines / took:>12,.0f} lines/s {size / took / 1e6:>8.1f} MB/s"
            f"  rotations {rotations:>3}  slowest write {slowest * 1e3:6.2f} ms"
            f"  close (compression) {closing:5.2f} s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=3_000_000, help="lines for the 1 MiB chunk cases")
    parser.add_argument("--per-line", type=int, default=300_000, help="lines for the per-line case")
    args = parser.parse_args()

    data = LINE * args.lines
    mib = [data[i : i + (1 << 20)] for i in range(0, len(data), 1 << 20)]  # cut ignoring line ends
    print(f"60-byte lines; default max_size 10 MiB, gzip on; {os.cpu_count()} CPUs")
    run("per line (one write per line)", [LINE] * args.per_line, args.per_line)
    run("1 MiB chunks", mib, args.lines)
    run("1 MiB chunks, timestamps", mib, args.lines, timestamps=True)
    run("1 MiB chunks, max_size 64 KiB", mib, args.lines, max_size=64 * 1024, retain=100_000)


if __name__ == "__main__":
    main()
