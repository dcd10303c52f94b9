"""The daemon's port checks on real sockets and real processes: a port taken on IPv4 or IPv6 is not
free, the first free port skips taken ones, the holder of a listening port is found with its
command line, and a process tree's listening ports are read from the kernel."""

from __future__ import annotations

import os
import socket
import subprocess

import pytest

from conftest import PY, wait_for
from tsm_notebook.engine.ports import accepts, first_free, holder, is_free, listening, tree_pids


def listener(family: int = socket.AF_INET, addr: str = "127.0.0.1") -> socket.socket:
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind((addr, 0))
    s.listen()
    return s


def has_ipv6() -> bool:
    try:
        socket.socket(socket.AF_INET6, socket.SOCK_STREAM).close()
        return socket.has_ipv6 and os.path.exists("/proc/net/if_inet6")
    except OSError:
        return False


def test_a_port_taken_on_loopback_is_not_free_and_accepts():
    with listener() as s:
        port = s.getsockname()[1]
        assert not is_free(port)
        assert accepts(port)
    assert is_free(port)
    assert not accepts(port)


@pytest.mark.skipif(not has_ipv6(), reason="no IPv6 on this machine")
def test_a_port_taken_on_ipv6_only_is_not_free():
    with listener(socket.AF_INET6, "::1") as s:
        port = s.getsockname()[1]
        assert not is_free(port)  # free on IPv4, but a server binding every interface would fail
        assert accepts(port, host="::1")


def test_first_free_skips_taken_ports_and_says_none_when_all_are_taken():
    with listener() as a:
        port = a.getsockname()[1]
        assert first_free(port, limit=port) is None
        found = first_free(port)
        assert found is not None and found > port and is_free(found)


def test_holder_is_the_listening_process_with_its_command_line(tmp_path):
    ready = tmp_path / "port"
    code = ("import socket, sys, time; s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); "
            "open(sys.argv[1] + '.tmp', 'w').write(str(s.getsockname()[1])); "
            "__import__('os').replace(sys.argv[1] + '.tmp', sys.argv[1]); time.sleep(60)")
    child = subprocess.Popen([PY, "-c", code, str(ready)])
    try:
        port = int(wait_for(lambda: ready.exists() and ready.read_text(), message="the child's port"))
        pid, cmd = holder(port)
        assert pid == child.pid
        assert cmd is not None and cmd.startswith(PY) and str(ready) in cmd
        assert listening([child.pid]) == [port]
        assert listening([os.getpid()]) == []
    finally:
        child.kill()
        child.wait()
    assert holder(port) == (None, None)


def test_listening_of_no_pids_is_empty():
    assert listening([]) == []


def test_tree_pids_lists_the_descendants_and_nothing_for_a_gone_pid(tmp_path):
    ready = tmp_path / "grandchild"
    code = ("import subprocess, sys, time; g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
            "open(sys.argv[1] + '.tmp', 'w').write(str(g.pid)); __import__('os').replace(sys.argv[1] + '.tmp', sys.argv[1]); "
            "g.wait()")
    child = subprocess.Popen([PY, "-c", code, str(ready)])
    grandchild = int(wait_for(lambda: ready.exists() and ready.read_text(), message="the grandchild"))
    try:
        assert tree_pids(child.pid) == [child.pid, grandchild]
    finally:
        os.kill(grandchild, 9)
        child.wait()
    assert tree_pids(child.pid) == []


def test_the_samplers_two_readers_of_listening_sockets_agree():
    # sock_diag (netlink) where the kernel has it; the /proc/net text tables where it does not
    from tsm_notebook.engine.sampler import _listening_netlink, _listening_procfs

    with listener() as s:
        port = s.getsockname()[1]
        inode = os.fstat(s.fileno()).st_ino
        procfs = _listening_procfs()
        assert procfs[inode] == port
        try:
            netlink = _listening_netlink()
        except OSError:
            pytest.skip("no sock_diag here: the text tables are the only reader")
        assert netlink[inode] == port
