"""Where and when the log writer compresses rotated files, through its ``compressor`` seam: real
threads, held or failing on purpose, so the tests see the order of events rather than timings."""

from __future__ import annotations

import threading
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from pathlib import Path

from conftest import wait_for
from test_logwriter import FOREVER, check_files, read_back, rotated_files
from tsm_notebook.engine.logwriter import LogWriter


class HeldCompressor(Executor):
    """The writer's ``compressor`` seam: real threads named ``held-gzip``, each job held until
    :attr:`gate` is set; records how many jobs came and the thread each one ran on."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.submitted = 0
        self.ran_on: list[str] = []
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="held-gzip")

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[override]
        self.submitted += 1

        def held():
            if not self.gate.wait(30):
                raise TimeoutError("the test never released the compressor")
            self.ran_on.append(threading.current_thread().name)
            return fn(*args, **kwargs)

        return self._pool.submit(held)

    def shutdown(self, wait: bool = True, **kwargs) -> None:  # type: ignore[override]
        self.gate.set()
        self._pool.shutdown(wait)


def test_rotated_files_are_compressed_off_the_writers_thread(tmp_path: Path) -> None:
    pool = HeldCompressor()
    data = b"".join(b"%05d %s\n" % (i, b"x" * 58) for i in range(1000))  # 64 KB: 64 rotations at 1 KiB
    w = LogWriter(tmp_path, "out", max_size=1024, compressor=pool, **FOREVER)
    try:
        for i in range(0, len(data), 640):
            assert w.write(data[i : i + 640])  # returns although every compression is held
        w.tick()  # busy since the last tick: compression stays deferred
        w.tick()  # quiet: the rest is handed to the compressor
        assert pool.submitted == len(rotated_files(tmp_path)) >= 60  # 16 at a time during the flood, then the rest
        assert all(n.endswith(".log") for n in rotated_files(tmp_path)), "nothing compressed while it is held"
        assert pool.ran_on == []
    finally:
        pool.gate.set()
        w.close()
        pool.shutdown()
    assert set(pool.ran_on) <= {f"held-gzip_{i}" for i in range(2)} and len(pool.ran_on) == pool.submitted
    assert threading.current_thread().name not in pool.ran_on
    assert all(n.endswith(".log.gz") for n in rotated_files(tmp_path))
    check_files(read_back(tmp_path), data, max_size=1024)


class FailingOnce(HeldCompressor):
    """Fails the first job with a full disk, as a real compression could; runs the rest."""

    def __init__(self) -> None:
        super().__init__()
        self.gate.set()
        self.jobs: list[str] = []

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[override]
        self.jobs.append(args[0].name)
        if len(self.jobs) == 1:
            future: Future = Future()
            future.set_exception(OSError(28, "No space left on device"))
            return future
        return super().submit(fn, *args, **kwargs)


def test_a_failed_compression_is_retried_at_the_next_rotation(tmp_path: Path) -> None:
    pool = FailingOnce()
    w = LogWriter(tmp_path, "out", max_size=1 << 20, compressor=pool, **FOREVER)
    try:
        assert w.write(b"first\n") and w.rotate()
        w.tick(); w.tick()  # quiet: handed to the compressor, which fails
        w.tick()
        assert w.problem is not None and "No space left" in w.problem
        assert w.write(b"second\n") and w.rotate()  # the next rotation retries the failed one
        w.tick(); w.tick()
    finally:
        w.close()
        pool.shutdown()
    first = pool.jobs[0]
    assert pool.jobs.count(first) == 2, pool.jobs
    assert all(n.endswith(".log.gz") for n in rotated_files(tmp_path)) and len(rotated_files(tmp_path)) == 2
    assert read_back(tmp_path) == [b"first\n", b"second\n", b""]


def test_a_new_writer_clears_what_a_crash_mid_compression_left_and_compresses_leftovers(tmp_path: Path) -> None:
    import gzip

    from tsm_notebook.core.logread import rotated_name

    old, older = 1_800_000_000_000_000, 1_799_999_000_000_000
    (tmp_path / (rotated_name("out", old) + ".gz.tmp")).write_bytes(b"\x1f\x8b half")  # never finished
    (tmp_path / rotated_name("out", old)).write_bytes(b"kept\n")  # its source, still whole
    (tmp_path / rotated_name("out", older)).write_bytes(b"older\n")
    pool = HeldCompressor()
    w = LogWriter(tmp_path, "out", max_size=1024, compressor=pool, **FOREVER)
    try:
        assert not any(n.endswith(".gz.tmp") for n in map(str, tmp_path.iterdir()))
        assert pool.submitted == 2  # both leftovers, handed over at once
        pool.gate.set()
        for name, text in ((rotated_name("out", older), b"older\n"), (rotated_name("out", old), b"kept\n")):
            gz = tmp_path / (name + ".gz")
            wait_for(lambda: gz.exists() and not (tmp_path / name).exists(), message=f"{name} compressed")
            assert gzip.decompress(gz.read_bytes()) == text
        assert w.write(b"new\n") and w.rotate()
        newest = max(n for n in rotated_files(tmp_path))
        assert newest > rotated_name("out", old)  # the next stamp comes after the leftovers'
    finally:
        w.close()
        pool.shutdown()
