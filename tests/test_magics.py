"""`%tsm` and `%%tsm` through a real IPython InteractiveShell, against a real daemon.

Cells run with `run_cell(...).raise_error()` and magics with `run_line_magic`, so a failing cell
fails the test; every mistake must come out as IPython's one-line UsageError.
"""

from __future__ import annotations

import os
import socket
import stat
import sys
from pathlib import Path

import pandas as pd
import pytest
from IPython.core.completer import provisionalcompleter
from IPython.core.error import UsageError as IPythonUsageError

from conftest import PY, accepts, pid_alive, wait_for
import tsm_notebook
from tsm_notebook import Process
from tsm_notebook.notebook import magics
from tsm_notebook.notebook.html import port_url  # /proxy/<port>/ when jupyter-server-proxy is installed

SLEEP = f"{PY} -c 'import time; time.sleep(600)'"


@pytest.fixture
def ip(shell):
    """A fresh shell (conftest's ``shell``: its own HOME and IPython dir) with the extension loaded,
    its default home the test's private one."""
    shell.run_line_magic("load_ext", "tsm_notebook")
    yield shell
    shell.run_line_magic("unload_ext", "tsm_notebook")


def cell(ip, code: str):
    """Run a cell as a user would; a failure fails the test. Returns its value."""
    result = ip.run_cell(code, store_history=True)
    result.raise_error()
    return result.result


def magic(ip, line: str):
    return ip.run_line_magic("tsm", line)


def usage_error(ip, line: str, cell_body: str | None = None) -> str:
    """The one-line message of the UsageError the magic raises (and fail if it does not)."""
    with pytest.raises(IPythonUsageError) as exc:
        if cell_body is None:
            magic(ip, line)
        else:
            ip.run_cell_magic("tsm", line, cell_body)
    message = str(exc.value)
    assert "\n" not in message and "Traceback" not in message, message
    return message


def log_text(path: str) -> str:
    try:
        return Path(path).read_text()
    except FileNotFoundError:
        return ""


# ---------------------------------------------------------------------- line magic


def test_start_ls_describe_as_objects(ip, tsm, port):
    p = cell(ip, f'%tsm start "{PY} -m http.server {port} --bind 127.0.0.1" --name web --wait-port')
    assert isinstance(p, Process) and p.name == f"web-{port}" and p.status == "online"
    assert accepts(port) and pid_alive(p.pid)
    assert f'href="{port_url(port)}"' in p._repr_html_()

    df = cell(ip, "%tsm ls")
    assert isinstance(df, pd.DataFrame)
    assert list(df["name"]) == [p.name] and int(df["pid"].iloc[0]) == p.pid
    rows = magic(ip, "ls --json")
    assert [r["name"] for r in rows] == [p.name]

    d = cell(ip, f"%tsm describe {p.name}")
    assert isinstance(d, Process) and d.pid == p.pid
    assert isinstance(magic(ip, f"describe {p.tsm_id} --json"), dict)
    assert [x.name for x in magic(ip, "describe all")] == [p.name]

    # variables expand in the line, as in any IPython magic
    ip.user_ns["target"] = p.name
    assert cell(ip, "%tsm describe $target").tsm_id == p.tsm_id


def test_ls_hides_stopped_unless_all(ip):
    magic(ip, f'start "{SLEEP}" --name a')
    magic(ip, f'start "{SLEEP}" --name b')
    [stopped] = magic(ip, "stop b")
    assert stopped.status == "stopped"
    assert list(magic(ip, "ls")["name"]) == ["a"]
    assert list(magic(ip, "ls -a")["name"]) == ["a", "b"]
    assert list(magic(ip, "list --all")["name"]) == ["a", "b"]


def test_stop_restart_delete_return_processes(ip, tsm):
    p = magic(ip, f'start "{SLEEP}" --name s --kill-timeout 500ms')
    [r] = magic(ip, "restart s")
    assert isinstance(r, Process) and r.status == "online" and r.pid != p.pid
    wait_for(lambda: not pid_alive(p.pid), message="the old pid to be gone")
    [s] = magic(ip, f"stop {r.tsm_id}")
    assert s.status == "stopped"
    [d] = magic(ip, "delete s")
    assert d.status == "deleted" and d.name == "s"
    assert tsm.call("ls", all=True) == []


def test_logs_rotate_flush(ip, tsm):
    code = "import sys, time; print('to-out', flush=True); print('to-err', file=sys.stderr, flush=True); time.sleep(600)"
    p = magic(ip, f'start --name talk -- {PY} -c "{code}"')
    wait_for(lambda: "to-err" in log_text(p.err_log) and "to-out" in log_text(p.out_log), message="both lines")

    both = cell(ip, "%tsm logs talk")
    assert repr(both).splitlines() == ["out | to-out", "err | to-err"]
    assert "to-out" in both._repr_html_() and '<span class="err">to-err</span>' in both._repr_html_()
    assert [line.text for line in both] == ["to-out", "to-err"]  # still a list of LogLine
    assert repr(magic(ip, "logs talk --out")) == "out | to-out"
    assert repr(magic(ip, "logs talk --err -n 5")) == "err | to-err"
    assert repr(magic(ip, "logs talk --out --raw")) == "to-out"
    assert [(d["name"], d["stream"], d["text"]) for d in magic(ip, "logs talk --json")] == [
        ("talk", "out", "to-out"), ("talk", "err", "to-err")]
    assert repr(magic(ip, "logs talk --since 1h -n 0")) == "(no log lines)"

    magic(ip, f'start "{SLEEP}" --name quiet')
    assert repr(magic(ip, "logs all")).splitlines() == ["talk|out | to-out", "talk|err | to-err"]

    assert magic(ip, "logs rotate talk") == ["talk"]
    assert magic(ip, "flush talk") == ["talk"]
    wait_for(lambda: log_text(p.out_log) == "", message="the flushed log to be empty")


def test_logs_follow_is_a_live_widget_that_does_not_block(ip, tsm):
    code = "import itertools, time\nfor i in itertools.count(): print('tick', i, flush=True); time.sleep(0.1)"
    tsm_notebook.start([PY, "-c", code], name="ticker", home=tsm.home)
    tail = cell(ip, "%tsm logs ticker -f -n 5")
    try:
        assert tail.live  # the cell returned while the view keeps refreshing from its thread
        wait_for(lambda: "tick 3" in tail.text, message="new lines in the live tail")
        first = tail.text
        wait_for(lambda: tail.text != first, message="the tail to move on by itself")
    finally:
        tail.close()
    assert not tail.live


def test_daemon_wide_subcommands(ip, tsm):
    info = magic(ip, "ping")
    assert pid_alive(info["pid"])
    magic(ip, f'start "{SLEEP}" --name keep')
    assert magic(ip, "save")["count"] == 1
    assert magic(ip, "resurrect") == {"started": [], "skipped": ["keep"], "failed": {}}
    assert set(magic(ip, "patrol")) == {"found", "fixed"}
    assert set(magic(ip, "patrol --json")) == {"found", "fixed"}
    updated = magic(ip, "update")
    assert updated["old_pid"] == info["pid"] and updated["processes"] == ["keep"]
    assert magic(ip, "kill") == {"daemon_pid": updated["new_pid"]}
    assert not pid_alive(updated["new_pid"])


def test_events_and_report_are_frames(ip, tsm):
    magic(ip, f'start "{SLEEP}" --name hist')
    magic(ip, "stop hist")
    tsm.call("history_flush")
    ev = magic(ip, "events hist --since 1h")
    assert isinstance(ev, pd.DataFrame) and {"start", "stop"} <= set(ev["event"].astype(str))
    assert isinstance(magic(ip, "events --json"), list)
    assert isinstance(magic(ip, "report"), pd.DataFrame)
    assert isinstance(magic(ip, "report --since 1d --json"), list)


def test_panel_and_monit_are_the_panel(ip, tsm):
    from tsm_notebook.notebook.panel import Panel

    for line in ("panel", "monit", f"--home {tsm.home} panel", f"--home={tsm.home} monit"):
        panel = cell(ip, f"%tsm {line}")
        try:
            assert isinstance(panel, Panel) and panel.home.root == tsm.home
        finally:
            panel.close()


def test_help_is_shown_not_raised(ip, capsys):
    assert magic(ip, "-h") is None
    assert "usage: %tsm" in capsys.readouterr().out
    assert magic(ip, "start -h") is None
    assert "--wait-port" in capsys.readouterr().out
    assert ip.run_cell_magic("tsm", "start -h", "print(1)") is None
    out = capsys.readouterr().out
    assert "--lang" in out and "usage: %%tsm start" in out


# ---------------------------------------------------------------------- cell magic


def test_cell_magic_runs_python_body_as_managed_process(ip, tsm):
    body = "import os, time\nprint('worker', os.environ['TSM_NAME'], os.environ['X'], flush=True)\ntime.sleep(600)\n"
    p = cell(ip, f"%%tsm start --name worker -e X=42\n{body}")
    assert isinstance(p, Process) and p.name == "worker" and p.status == "online"
    wait_for(lambda: "worker worker 42" in log_text(p.out_log), message="the cell's output")
    script = Path(p.as_dict()["argv"][-1])
    assert script.parent == tsm.home / "scripts" and script.suffix == ".py"
    assert script.read_text() == body
    assert stat.S_IMODE(script.stat().st_mode) == 0o600 and stat.S_IMODE(script.parent.stat().st_mode) == 0o700
    assert p.as_dict()["argv"][0] == sys.executable  # the kernel's own Python and packages

    # the same cell again (once the old process is gone) reuses the script; a changed body does not touch it
    magic(ip, "delete worker")
    again = ip.run_cell_magic("tsm", "start --name worker -e X=42", body)
    assert again.as_dict()["argv"][-1] == str(script)
    other = ip.run_cell_magic("tsm", "start --name worker2 -e X=1", body.replace("worker", "other"))
    assert other.as_dict()["argv"][-1] != str(script) and script.read_text() == body


def test_cell_magic_bash(ip, tsm):
    p = ip.run_cell_magic("tsm", "start --name sh --lang bash", 'echo "answer $((6 * 7))"\nexec sleep 600\n')
    assert p.as_dict()["argv"][-1].endswith(".sh") and p.as_dict()["type"] == "bash"
    wait_for(lambda: "answer 42" in log_text(p.out_log), message="bash's output")


def test_cell_scripts_nobody_uses_are_pruned(ip, tsm):
    old = ip.run_cell_magic("tsm", "start --name old", "import time; time.sleep(600)")
    script = Path(old.as_dict()["argv"][-1])
    magic(ip, "delete old")
    ancient = 1_000_000_000
    os.utime(script, (ancient, ancient))
    ip.run_cell_magic("tsm", "start --name new", "import time; time.sleep(601)")
    assert not script.exists()
    # a script still in use stays, however old
    used = Path(tsm.row("new")["argv"][-1])
    os.utime(used, (ancient, ancient))
    ip.run_cell_magic("tsm", "start --name newer", "import time; time.sleep(602)")
    assert used.exists()


# ---------------------------------------------------------------------- errors


def test_every_mistake_is_a_one_line_usage_error(ip, tsm, port, tmp_path):
    magic(ip, f'start "{SLEEP}" --name taken')
    long_home = "/tmp/" + "x" * 120
    cases = {
        "": "a command is needed",
        "bogus": "invalid choice: 'bogus'",
        "ls --bogus": "unrecognized arguments: --bogus",
        "stop": "the following arguments are required",
        "start": "a command is needed",
        "start 'unbalanced": "cannot split the line",
        "start 'no-such-program-xyz'": "command not found",
        f'start "{SLEEP}" --max-memory lots': "invalid size",
        f'start "{SLEEP}" --name taken --no-port --port 80': "--no-port and --port contradict",
        f'start "{SLEEP}" --name w --wait-port 0s': "must be more than 0",
        f'start "{SLEEP}" --name w --wait-port': "--wait-port needs a port",
        f'start --name dies -- {PY} -c "import sys; sys.exit(5)"': "StartFailed",
        "stop ghost": "ProcessNotFound: no process named 'ghost'",
        "restart ghost": "ProcessNotFound",
        "delete 99": "ProcessNotFound: no process with tsm_id 99",
        "describe ghost": "ProcessNotFound",
        "logs ghost": "ProcessNotFound",
        "logs ghost -f": "ProcessNotFound",
        "logs taken extra": "unexpected argument",
        "logs taken -n x": "invalid number",
        "logs taken --since yesterday": "invalid time",
        "flush ghost": "ProcessNotFound",
        "panel extra": "takes no arguments",
        f"--home {long_home} ping": "too long for a Unix socket",
    }
    for line, expected in cases.items():
        message = usage_error(ip, line)
        assert expected in message, (line, message)

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        assert "PortInUse" in usage_error(ip, f'start "{SLEEP}" --name busy --port {port}')

    failed = usage_error(ip, f'start --name dies2 -- {PY} -c "import sys; sys.exit(\'bad news\')"')
    assert "bad news" in failed and "%tsm logs dies2" in failed

    assert "only `start` takes a cell" in usage_error(ip, "ls", "x")
    assert "--name is needed" in usage_error(ip, "start", "print(1)")
    assert "the cell is empty" in usage_error(ip, "start --name e", "\n  \n")
    assert "invalid choice: 'ruby'" in usage_error(ip, "start --name r --lang ruby", "puts 1")
    assert "unrecognized arguments: extra" in usage_error(ip, "start --name r extra", "print(1)")
    assert "invalid name" in usage_error(ip, "start --name ../up", "print(1)")
    # a cell's script goes to <home>/scripts/<name>-<digest>.py: "../up" would land in the home
    assert not list(tsm.home.glob("up-*")) and not list(tsm.home.rglob("*up-*.py"))


def test_a_failing_cell_reports_usage_error_without_traceback(ip, capsys):
    result = ip.run_cell("%tsm stop ghost")
    assert isinstance(result.error_in_exec, IPythonUsageError)
    out = capsys.readouterr()
    text = out.out + out.err
    assert "UsageError: ProcessNotFound: no process named 'ghost'" in text and "Traceback" not in text
    with pytest.raises(IPythonUsageError):
        result.raise_error()


# ---------------------------------------------------------------------- completion


def completions(ip, line: str) -> list[str]:
    """What a Tab at the end of ``line`` offers, as the completed lines' last words."""
    with provisionalcompleter():
        found = list(ip.Completer.completions(line, len(line)))
    return [(line[: c.start] + c.text + line[c.end :]).split(" ")[-1] for c in found]


def test_completion_of_subcommands_and_names(ip, tsm):
    assert completions(ip, "%tsm st") == ["start", "stop", "startup"]
    assert {"ls", "logs", "describe", "panel", "monit"} <= set(completions(ip, "%tsm "))
    assert completions(ip, "%%tsm ") == ["start"]
    assert not (tsm.home / "daemon.sock").exists()
    assert completions(ip, "%tsm stop ") == ["all"]  # no process yet, and no daemon started by a Tab
    assert not (tsm.home / "daemon.sock").exists()

    for name in ("web-8000", "worker", "api+v2"):
        magic(ip, f'start "{SLEEP}" --name {name}')
    for sub in ("stop", "restart", "delete", "logs", "describe"):
        assert completions(ip, f"%tsm {sub} w") == ["web-8000", "worker"], sub
    assert completions(ip, "%tsm describe ") == ["all", "api+v2", "web-8000", "worker"]
    assert completions(ip, "%tsm logs ") == ["all", "api+v2", "web-8000", "worker", "rotate"]
    assert completions(ip, "%tsm logs rotate wo") == ["worker"]
    assert completions(ip, "%tsm logs -n 5 wor") == ["worker"]
    assert completions(ip, "%tsm stop api+") == ["api+v2"]  # IPython's token stops at '+'
    assert not set(completions(ip, "%tsm stop worker ")) & {"all", "worker"}  # one target only
    assert not set(completions(ip, "%tsm ls ")) & {"worker", "stop"}


def test_completion_reads_the_home_given_on_the_line(ip, tsm, tmp_path):
    other = tmp_path / "h"
    (other / "runtime" / "processes" / "elsewhere").mkdir(parents=True)
    assert completions(ip, f"%tsm --home {other} stop ") == ["all", "elsewhere"]


# ---------------------------------------------------------------------- the extension


def test_load_is_idempotent_and_unload_removes_everything(ip):
    ip.run_line_magic("load_ext", "tsm_notebook")
    ip.run_line_magic("reload_ext", "tsm_notebook")
    ids = [getattr(m, "matcher_identifier", None) for m in ip.Completer.custom_matchers]
    assert ids.count(magics.MATCHER_ID) == 1
    ip.run_line_magic("unload_ext", "tsm_notebook")
    assert "tsm" not in ip.magics_manager.magics["line"] and "tsm" not in ip.magics_manager.magics["cell"]
    assert magics.MATCHER_ID not in [getattr(m, "matcher_identifier", None) for m in ip.Completer.custom_matchers]
    ip.run_line_magic("load_ext", "tsm_notebook")  # the fixture unloads at teardown
    assert "tsm" in ip.magics_manager.magics["line"]
