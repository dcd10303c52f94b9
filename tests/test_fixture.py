"""The suite's own safety net: the ``tsm`` fixture's teardown check (``conftest.owned_pids``)
finds what a test leaves alive even when it shows no marker of the home in its environment."""

from __future__ import annotations

import os
import signal
import textwrap

from conftest import PY, owned_pids, pid_alive, recorded_leaders, wait_for
from tsm_notebook.core.cgroups import Cgroups

# Started through `env -i` (no TSM_HOME, no TSM_ID: what /proc shows for a program that rewrites
# its environment, as redis-server does); starts a grandchild the same way in a session of its
# own, writes both pids, then waits.
HIDDEN = textwrap.dedent(
    """
    import os, subprocess, sys, time
    out = sys.argv[1]
    g = subprocess.Popen(["/usr/bin/env", "-i", sys.executable, "-c", "import time; time.sleep(600)"],
                         start_new_session=True)
    with open(out + ".tmp", "w") as f:
        f.write(f"{os.getpid()} {g.pid}")
    os.replace(out + ".tmp", out)
    time.sleep(600)
    """
)


def test_teardown_finds_processes_that_hide_the_homes_marker(tsm, tmp_path):
    out = tmp_path / "pids"
    tsm.run("start", "--name", "hidden", "--", "/usr/bin/env", "-i", PY, "-c", HIDDEN, str(out), check=True)
    leader, grandchild = map(int, wait_for(lambda: out.exists() and out.read_text(), message="the pids").split())
    daemon = tsm.daemon_pid()
    os.kill(daemon, signal.SIGKILL)  # a daemon that dies leaves its runs behind, as a broken test can
    wait_for(lambda: not pid_alive(daemon), message="the daemon gone")
    try:
        for pid in (leader, grandchild):
            env = open(f"/proc/{pid}/environ", "rb").read()
            assert b"TSM_HOME=" not in env and b"TSM_ID=" not in env  # no marker to find them by
        assert recorded_leaders(tsm.home) == [leader]  # meta.json's pid and start time prove it
        cgroups = Cgroups(str(tsm.home), create=False)
        expected = {leader, grandchild} if cgroups.enabled else {leader}
        if cgroups.enabled:
            assert set(cgroups.survivors()) == {leader, grandchild}  # in the run's cgroup, both
        assert set(owned_pids(tsm.home)) == expected
    finally:
        for pid in (leader, grandchild):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        wait_for(lambda: not any(pid_alive(p) for p in (leader, grandchild)), message="both killed")
        Cgroups(str(tsm.home), create=False).stop_all(timeout=1.0)  # the dead daemon's emptied cgroups
    assert owned_pids(tsm.home) == []
