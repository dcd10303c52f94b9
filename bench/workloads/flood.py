"""A log flooder: ``flood.py COUNT line|block MARKER`` writes COUNT numbered 60-byte lines to stdout.

Line ``i`` is ``f"{i:010d}"``, a space, 48 ``x`` and a newline: exactly ``LINE_BYTES`` bytes, so the
expected log size is ``COUNT * LINE_BYTES`` and a lost or torn line is easy to count.

* ``line``: one ``write(2)`` per line (the worst case for a log collector).
* ``block``: whole lines packed into writes of at most 64 KiB (a pipe's capacity).

When done it writes ``MARKER`` (JSON ``{"start": epoch s, "end": epoch s, "count": COUNT}``,
atomically) and then sleeps until a signal ends it, so a manager with autorestart does not run it
again. Writes go straight to fd 1 with ``os.write``: no Python buffering is involved.
"""

import json
import os
import signal
import sys
import time

LINE_BYTES = 60
BLOCK_BYTES = 64 * 1024


def line(i: int) -> bytes:
    """The ``i``-th line, newline included (``LINE_BYTES`` long)."""
    return b"%010d %s\n" % (i, b"x" * 48)


def write_all(data: bytes) -> None:
    """Write all of ``data`` to fd 1, looping over short writes."""
    view = memoryview(data)
    while view:
        view = view[os.write(1, view):]


def main() -> None:
    """Flood stdout as the command line says, write the marker, then idle until signalled."""
    count, mode, marker = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    start = time.time()
    if mode == "line":
        for i in range(count):
            write_all(line(i))
    elif mode == "block":
        per_block = BLOCK_BYTES // LINE_BYTES
        for first in range(0, count, per_block):
            write_all(b"".join(line(i) for i in range(first, min(first + per_block, count))))
    else:
        raise SystemExit(f"unknown mode {mode!r}: use line or block")
    end = time.time()
    with open(marker + ".tmp", "w") as out:
        json.dump({"start": start, "end": end, "count": count}, out)
    os.replace(marker + ".tmp", marker)
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
