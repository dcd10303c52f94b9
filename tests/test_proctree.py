"""engine/proctree.py on real processes: wait statuses decoded, groups signalled and probed.

Each test starts its own child in its own session (so its process group id is its pid), and
reaps it; nothing here signals a process the test did not start.
"""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from conftest import PY, wait_for
from tsm_notebook.engine.proctree import decode, group_alive, kill, killpg, signum


def sleeper() -> subprocess.Popen:
    return subprocess.Popen([PY, "-c", "import time; time.sleep(600)"], start_new_session=True)


def status_of(p: subprocess.Popen) -> int:
    return os.waitpid(p.pid, 0)[1]


@pytest.mark.parametrize("code", [0, 3, 255])
def test_decode_an_exit_code(code):
    p = subprocess.Popen([PY, "-c", f"import sys; sys.exit({code})"])
    assert decode(status_of(p)) == (code, None)


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM, signal.SIGKILL, signal.SIGINT])
def test_decode_a_signal(sig):
    p = sleeper()
    os.kill(p.pid, sig)
    assert decode(status_of(p)) == (None, int(sig))


def test_signum_names():
    assert [signum(n) for n in ("SIGTERM", "SIGINT", "SIGUSR1", "SIGKILL")] == [15, 2, signal.SIGUSR1, 9]


def test_group_alive_probes_without_signalling():
    p = sleeper()
    try:
        assert group_alive(p.pid) is True
        assert group_alive(p.pid) is True
    finally:
        p.send_signal(signal.SIGTERM)
    # it died of our SIGTERM: probing sent no signal of its own (a SIGHUP would have come first)
    assert decode(status_of(p)) == (None, signal.SIGTERM)
    assert group_alive(p.pid) is False


def test_killpg_reaches_the_whole_group_and_ignores_a_gone_one():
    leader = subprocess.Popen([PY, "-c", "import subprocess, sys, time\n"
                               f"subprocess.Popen([{PY!r}, '-c', 'import time; time.sleep(600)'])\n"
                               "print('ready', flush=True); time.sleep(600)"],
                              start_new_session=True, stdout=subprocess.PIPE, text=True)
    assert leader.stdout.readline() == "ready\n"
    killpg(leader.pid, signal.SIGTERM)
    assert decode(status_of(leader)) == (None, signal.SIGTERM)
    wait_for(lambda: not group_alive(leader.pid), message="the grandchild to go with its group")
    killpg(leader.pid, signal.SIGTERM)  # gone: no error
    kill(leader.pid, signal.SIGTERM)


def test_kill_signals_one_pid():
    p = sleeper()
    kill(p.pid, signal.SIGUSR1)
    assert decode(status_of(p)) == (None, signal.SIGUSR1)
