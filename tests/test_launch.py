"""Bringing a process up, through a real daemon: how a start that fails says why (a signal during
the launch window, a clean exit with autorestart off, a working directory or an exec bit gone
since the process was defined), and the environment a child with a port is given."""

from __future__ import annotations

import json
import os
import signal

from conftest import PY, free_port, wait_for
from tsm_notebook.core import report
from tsm_notebook.core.paths import Home


def events(tsm, name: str) -> list[dict]:
    return report.events(Home.resolve(tsm.home), name)


def test_a_child_killed_by_a_signal_during_the_launch_window_fails_its_start_saying_so(tsm):
    code = "import os, signal, sys; print('giving up', file=sys.stderr, flush=True); os.kill(os.getpid(), signal.SIGTERM)"
    r = tsm.run("start", "--name", "sig", "--", PY, "-c", code)
    assert r.returncode != 0
    assert "sig exited at once (signal SIGTERM)" in r.stderr
    assert "giving up" in r.stderr and "(full logs: tsm logs sig)" in r.stderr
    row = tsm.row("sig")
    assert (row["status"], row["exit_code"], row["exit_signal"]) == ("errored", None, signal.SIGTERM)


def test_a_clean_exit_during_the_launch_window_without_autorestart_is_a_stop(tsm):
    r = tsm.run("start", "--name", "once", "--no-autorestart", "--", PY, "-c", "pass")
    assert r.returncode == 0, r.stderr
    row = tsm.row("once")
    assert (row["status"], row["exit_code"]) == ("stopped", 0)
    reasons = wait_for(lambda: [e["reason"] for e in events(tsm, "once") if e["event"] == "stop"], message="stop event")
    assert reasons == ["exited with code 0, autorestart off"]


def test_a_start_after_the_working_directory_was_removed_says_so(tsm, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    tsm.run("start", "--name", "w", "--cwd", str(work), "--", PY, "-c", "import time; time.sleep(60)", check=True)
    tsm.run("stop", "w", check=True)
    work.rmdir()
    r = tsm.run("start", "w")
    assert r.returncode != 0
    assert f"cwd {str(work)!r} does not exist" in r.stderr
    assert tsm.row("w")["status"] == "errored"


def test_a_start_after_the_program_lost_its_exec_bit_says_permission_denied(tsm, tmp_path):
    script = tmp_path / "serve"
    script.write_text(f"#!{PY}\nimport time\ntime.sleep(60)\n")
    script.chmod(0o755)
    tsm.run("start", "--name", "s", "--", str(script), check=True)
    tsm.run("stop", "s", check=True)
    script.chmod(0o644)
    r = tsm.run("start", "s")
    assert r.returncode != 0
    assert f"permission denied: {script}" in r.stderr
    assert tsm.row("s")["status"] == "errored"


def test_a_child_with_a_port_gets_its_public_url_and_base_path(tsm, tmp_path):
    out = tmp_path / "env.json"
    code = ("import json, os, sys, time; "
            "json.dump({k: os.environ.get(k) for k in ('PORT', 'TSM_URL', 'TSM_BASE_PATH', 'TSM_URL_TEMPLATE')}, "
            "open(sys.argv[1] + '.tmp', 'w')); os.replace(sys.argv[1] + '.tmp', sys.argv[1]); time.sleep(60)")
    port = free_port()
    tsm.run("start", "--name", "app", "--port", str(port), "-e", "TSM_URL_TEMPLATE=https://lab.example/proxy/{port}",
            "--", PY, "-c", code, str(out), check=True)
    seen = json.loads(wait_for(lambda: out.exists() and out.read_text(), message="the child's environment"))
    assert seen == {"PORT": str(port), "TSM_URL": f"https://lab.example/proxy/{port}",
                    "TSM_BASE_PATH": f"/proxy/{port}/", "TSM_URL_TEMPLATE": None}
    tsm.run("stop", "app", check=True)
    os.unlink(out)
    # no port: no URL, and the template is not passed on
    tsm.run("start", "--name", "plain", "--no-port", "-e", "TSM_URL_TEMPLATE=https://lab.example/proxy/{port}/",
            "--", PY, "-c", code, str(out), check=True)
    seen = json.loads(wait_for(lambda: out.exists() and out.read_text(), message="the child's environment"))
    assert seen == {"PORT": None, "TSM_URL": None, "TSM_BASE_PATH": None, "TSM_URL_TEMPLATE": None}
