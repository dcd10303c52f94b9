"""The tree sampler against real processes: memory of descendants, cpu since the last tick,
listening ports, and processes that vanish between ticks. Every test runs both passes: the one
over ``/proc`` and the psutil one that runs where there is no ``/proc`` (``portable=True``)."""

from __future__ import annotations

import os
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from conftest import PY, wait_for
from tsm_notebook.engine.sampler import Sampler

MB = 1024 * 1024

pytestmark = pytest.mark.parametrize("portable", [False, True], ids=["proc", "psutil"])


class Procs:
    """Starts real processes, and at teardown kills each by pid and proves it is gone."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.started: list[subprocess.Popen] = []
        self.extra: list[psutil.Process] = []  # descendants the test learned about

    def start(self, code: str) -> subprocess.Popen:
        p = subprocess.Popen([PY, "-c", textwrap.dedent(code)], cwd=self.tmp, stdin=subprocess.DEVNULL)
        self.started.append(p)
        return p

    def handshake(self, name: str, timeout: float = 15.0) -> str:
        """The text a child wrote to ``name`` (written to a temp file then renamed: never partial)."""
        path = self.tmp / name
        wait_for(path.exists, timeout, message=f"handshake file {name}")
        return path.read_text()

    def adopt(self, pid: int) -> psutil.Process:
        proc = psutil.Process(pid)
        self.extra.append(proc)
        return proc

    def cleanup(self) -> None:
        for proc in self.extra:
            try:
                proc.kill()  # psutil checks the pid was not reused (create time)
            except psutil.NoSuchProcess:
                pass
        for p in self.started:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=10)
        for proc in self.extra:
            wait_for(lambda: not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE, 10,
                     message=f"pid {proc.pid} to be gone")


@pytest.fixture
def procs(tmp_path):
    p = Procs(tmp_path)
    try:
        yield p
    finally:
        p.cleanup()


WRITE = """
import os
def handshake(name, text):
    with open(name + ".tmp", "w") as f:
        f.write(str(text))
    os.replace(name + ".tmp", name)
"""

# A leader that starts one child and waits for it, so killing the child ends both.
PARENT_OF = WRITE + """
import subprocess, sys
child = subprocess.Popen([sys.executable, "-c", {child!r}])
handshake("child.pid", child.pid)
child.wait()
"""

HOLDS_50MB = WRITE + """
import time
block = bytearray(50 * 1024 * 1024)
block[::4096] = b"x" * len(block[::4096])  # touch every page so it is resident
handshake("ready", "ok")
time.sleep(600)
"""

LISTENS = WRITE + """
import socket, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen()
handshake("port", s.getsockname()[1])
time.sleep(600)
"""

SLEEPS = WRITE + """
import time
handshake("ready", "ok")
time.sleep(600)
"""

SPINS = WRITE + """
handshake("ready", "ok")
while True:
    pass
"""


def one(rows: list[dict], tsm_id: int = 1) -> dict:
    assert [r["tsm_id"] for r in rows] == [tsm_id], rows
    return rows[0]


def test_tree_counts_the_memory_of_descendants(procs, portable):
    leader = procs.start(PARENT_OF.format(child=HOLDS_50MB))
    procs.handshake("ready")
    child = procs.adopt(int(procs.handshake("child.pid")))
    sampler = Sampler(clock=lambda: 1234.5, portable=portable)

    row = one(sampler.sample({1: ("web", leader.pid)}))
    leader_rss = psutil.Process(leader.pid).memory_info().rss
    assert row["time"] == 1234.5 and row["name"] == "web" and row["pid"] == leader.pid
    assert row["children"] == 1
    assert row["rss"] >= leader_rss + 50 * MB
    assert row["vms"] >= row["rss"]
    assert row["threads"] >= 2 and row["fds"] >= 6
    assert isinstance(row["read_bytes"], int) and isinstance(row["write_bytes"], int)
    assert row["ports"] == []

    assert sampler.tree_rss(leader.pid) >= leader_rss + 50 * MB
    assert 50 * MB <= sampler.tree_rss(child.pid) < row["rss"]  # a subtree is a tree too


def test_cpu_is_none_on_the_first_sample_then_a_number(procs, portable):
    sleeper = procs.start(SLEEPS)
    procs.handshake("ready")
    sampler = Sampler(portable=portable)
    targets = {1: ("idle", sleeper.pid)}
    assert one(sampler.sample(targets))["cpu"] is None  # never a fake 0.0
    time.sleep(0.2)
    cpu = one(sampler.sample(targets))["cpu"]
    assert isinstance(cpu, float) and 0.0 <= cpu < 20.0
    assert one(Sampler(portable=portable).sample(targets))["cpu"] is None  # a new sampler knows no baseline


def test_busy_child_shows_cpu_on_the_second_sample(procs, portable):
    leader = procs.start(PARENT_OF.format(child=SPINS))
    procs.handshake("ready")
    procs.adopt(int(procs.handshake("child.pid")))
    sampler = Sampler(portable=portable)
    targets = {7: ("spin", leader.pid)}
    assert one(sampler.sample(targets), 7)["cpu"] is None
    time.sleep(0.5)
    assert one(sampler.sample(targets), 7)["cpu"] > 20.0


def test_ports_of_any_process_in_the_tree(procs, portable):
    leader = procs.start(PARENT_OF.format(child=LISTENS))
    port = int(procs.handshake("port"))
    procs.adopt(int(procs.handshake("child.pid")))
    other = procs.start(SLEEPS)
    sampler = Sampler(portable=portable)
    rows = sampler.sample({1: ("web", leader.pid), 2: ("idle", other.pid)})
    assert {r["tsm_id"]: r["ports"] for r in rows} == {1: [port], 2: []}
    assert one(sampler.sample({1: ("web", leader.pid)}, ports=False))["ports"] is None


def test_vanished_processes_are_dropped(procs, portable):
    leader = procs.start(PARENT_OF.format(child=SLEEPS))
    procs.handshake("ready")
    child = procs.adopt(int(procs.handshake("child.pid")))
    sampler = Sampler(portable=portable)
    targets = {1: ("web", leader.pid)}
    assert one(sampler.sample(targets))["children"] == 1
    assert sampler.tracked == 2

    child.kill()  # the leader reaps it and exits, so both vanish
    assert leader.wait(timeout=10) == 0
    assert sampler.sample(targets) == []
    assert sampler.tracked == 0
    assert sampler.tree_rss(leader.pid) is None


def test_zombie_and_unknown_leaders_give_no_row(procs, portable):
    zombie = procs.start(SLEEPS)
    procs.handshake("ready")
    os.kill(zombie.pid, signal.SIGKILL)  # not reaped yet: a zombie until wait()
    wait_for(lambda: psutil.Process(zombie.pid).status() == psutil.STATUS_ZOMBIE, message="a zombie")
    gone = subprocess.Popen([PY, "-c", "pass"])
    gone.wait()
    sampler = Sampler(portable=portable)
    assert sampler.sample({1: ("z", zombie.pid), 2: ("gone", gone.pid)}) == []
    assert sampler.tree_rss(zombie.pid) is None


# A sleeper that, when it gets SIGUSR1, starts a sleeping child and opens a listening socket.
FORKS_ON_SIGNAL = WRITE + """
import signal, socket, subprocess, sys, time
held = []
def grow(*_):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
    held.extend([child, s])
    handshake("grown", f"{child.pid} {s.getsockname()[1]}")
signal.signal(signal.SIGUSR1, grow)
handshake("ready", "ok")
while True:
    time.sleep(600)
"""


def test_a_tree_that_grows_between_ticks_is_seen_whole(procs, portable):
    # ticks after a quiet one read only the known members; a member that ran (to fork, to listen)
    # makes the next tick look at the whole table again, and every SLOW_EVERY ticks one does anyway
    from tsm_notebook.engine.sampler import SLOW_EVERY

    leader = procs.start(FORKS_ON_SIGNAL)
    procs.handshake("ready")
    sampler = Sampler(portable=portable)
    targets = {1: ("grows", leader.pid)}
    for _ in range(3):  # quiet ticks: the tree is one sleeper
        row = one(sampler.sample(targets))
        assert (row["children"], row["ports"]) == (0, [])
    fds_before = row["fds"]
    os.kill(leader.pid, signal.SIGUSR1)
    child_pid, port = map(int, procs.handshake("grown").split())
    procs.adopt(child_pid)
    last = [one(sampler.sample(targets)) for _ in range(SLOW_EVERY + 2)][-1]
    assert last["children"] == 1 and last["ports"] == [port]
    assert last["fds"] > fds_before


def test_quiet_ticks_keep_every_field(procs, portable):
    # a sleeper's open files and I/O counters are carried over between reads, never dropped to None
    sleeper = procs.start(SLEEPS)
    procs.handshake("ready")
    sampler = Sampler(portable=portable)
    rows = [one(sampler.sample({1: ("idle", sleeper.pid)})) for _ in range(8)]
    for row in rows:
        assert row["fds"] and row["threads"] >= 1 and row["rss"] > 0 and row["vms"] >= row["rss"]
        assert isinstance(row["read_bytes"], int) and isinstance(row["write_bytes"], int)
    assert all(r["cpu"] is not None for r in rows[1:])
