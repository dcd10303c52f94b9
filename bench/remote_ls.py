"""What `tsm ls -H NAME` costs over SSH, and how `tsm ls -H ...` grows with hosts.

Run (as root, with openssh-server installed): ``.venv/bin/python bench/remote_ls.py [CALLS]``
(default 10 calls per figure; about a minute). Starts 16 real sshd's on loopback (127.0.0.2 ..
127.0.0.17, high ports, generated keys, as the tests do), each a "host" with its own remote TSM
home and 2 managed sleepers, then times, as wall time of the whole command:

* ``tsm ls``                      the local command line (the floor);
* ``ssh HOST true`` (warm)        a session on the shared connection: the remote login shell's cost;
* ``ssh HOST tsm ls`` (warm)      the remote command line over the shared connection;
* ``tsm ls -H NAME`` cold         no shared connection yet (a full handshake each call);
* ``tsm ls -H NAME`` warm         the shared connection (ControlMaster) and its forward to the daemon are up;
* ``tsm ls -H h1,..,hN`` warm     fan-out to N = 1, 4 and 16 hosts at once.

"local cpu" is the CPU time of the command and its ssh clients on this side: what a fan-out costs
the caller when the hosts are real machines. Here all 16 "hosts" share this machine's cores, so
their remote shells and bridges compete with the caller, and the wall time of a wide fan-out is
bounded by this machine's CPU, not by the protocol.

Prints median, min and max in milliseconds. Stops every daemon, ssh master and sshd it started.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from sshd import Sshd, keygen, toml_hosts  # noqa: E402
from tsm_notebook.client.client import Client  # noqa: E402
from tsm_notebook.client.remote import close_master, configured_hosts, ssh_argv  # noqa: E402
from tsm_notebook.core.paths import Home  # noqa: E402

TSM = str(ROOT / ".venv" / "bin" / "tsm")
N_HOSTS = 16


LOCAL_CPU: list[float] = []  # CPU ms of the last timed() calls on this side (tsm and its ssh clients)


def timed(argv: list[str], env: dict, calls: int, before=None) -> list[float]:
    import resource

    out = []
    LOCAL_CPU.clear()
    for _ in range(calls):
        if before:
            before()
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        r = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
        out.append((time.perf_counter() - start) * 1e3)
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        LOCAL_CPU.append((ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime) * 1e3)
        if r.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed: {r.stderr.decode()}")
    return out


def show(label: str, ms: list[float]) -> float:
    med = statistics.median(ms)
    cpu = statistics.median(LOCAL_CPU) if LOCAL_CPU else float("nan")
    print(f"{label:<30} median {med:7.1f} ms  min {min(ms):7.1f}  max {max(ms):7.1f}  "
          f"local cpu {cpu:6.1f} ms  (n={len(ms)})", flush=True)
    return med


def main(argv: list[str]) -> int:
    calls = int(argv[0]) if argv else 10
    base = Path(tempfile.mkdtemp(prefix="tsmb-", dir="/tmp"))
    key = keygen(base / "user_key")
    local = base / "local"
    local.mkdir(mode=0o700)
    env = dict(os.environ, TSM_HOME=str(local), TSM_SSH_CONTROL_DIR=str(base / "cm"))
    servers = [Sshd(base, f"h{i}", f"127.0.0.{i + 2}", key) for i in range(N_HOSTS)]
    hosts = {}
    try:
        for s in servers:
            s.start()
        (local / "config.toml").write_text(toml_hosts({s.name: s.host_entry(timeout="20s") for s in servers}))
        hosts = configured_hosts(Home(local))
        for s in servers:
            for j in range(2):
                subprocess.run([TSM, "-H", s.name, "start", "--name", f"sleep{j}", "--", "sleep", "3600"], env=env,
                               check=True, capture_output=True, timeout=60)
        subprocess.run([TSM, "start", "--name", "sleep0", "--", "sleep", "3600"], env=env, check=True, capture_output=True)
        subprocess.run([TSM, "start", "--name", "sleep1", "--", "sleep", "3600"], env=env, check=True, capture_output=True)

        h0 = hosts["h0"]
        ssh0 = ssh_argv(h0)
        print(f"{N_HOSTS} loopback sshd hosts, 2 processes each; {calls} calls per figure")
        local_ms = show("tsm ls (local)", timed([TSM, "ls"], env, calls))
        show("ssh HOST true (warm)", timed(ssh0 + ["true"], env, calls))
        show("ssh HOST tsm ls (warm)", timed(ssh0 + [h0.remote_command("ls")], env, calls))
        show("tsm ls -H h0 (cold)", timed([TSM, "ls", "-H", "h0"], env, calls, before=lambda: close_master(h0)))
        subprocess.run([TSM, "-H", "h0", "ping"], env=env, capture_output=True)
        one = show("tsm ls -H h0 (warm)", timed([TSM, "ls", "-H", "h0"], env, calls))
        fan = {}
        for n in (1, 4, 16):
            names = ",".join(f"h{i}" for i in range(n))
            subprocess.run([TSM, "ping", "-H", names], env=env, capture_output=True)  # masters up
            fan[n] = show(f"tsm ls -H <{n} hosts> (warm)", timed([TSM, "ls", "-H", names], env, calls))
        print(f"fan-out 16 / 1 host: {fan[16] / fan[1]:.2f}x wall (goal <= 2x); one warm host / local: {one / local_ms:.1f}x")
        print(f"cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f}")
    finally:
        for h in hosts.values():
            try:
                close_master(h)
            except Exception:
                pass
        for s in servers:
            try:
                Client(s.remote_home, autostart=False).kill(timeout=30)
            except Exception:
                pass
            s.stop()
        try:
            Client(local, autostart=False).kill(timeout=30)
        except Exception:
            pass
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
