"""Every command the README shows runs for real: the command-line session in order, the notebook
lines through a real IPython shell, and the Python API block in a fresh interpreter."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from conftest import ROOT, free_port, wait_for

README = (ROOT / "README.md").read_text()


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def strip_comment(line: str) -> str:
    # a '#' that starts a comment: preceded by two spaces (never inside our quoted commands)
    return re.split(r"\s{2,}#", line)[0].strip()


def test_quick_start_is_the_two_make_commands():
    quick = README.split("## Quick start", 1)[1].split("##", 1)[0]
    cmds = [strip_comment(l) for l in blocks("bash")[0].splitlines() if l.strip()]
    assert cmds == ["make lab", "make test"] and "```bash" in quick


def test_command_line_session_runs(tsm):
    session = next(b for b in blocks("bash") if "tsm start" in b)
    port = free_port()
    lines = [strip_comment(l).replace("7777", str(port)) for l in session.splitlines() if l.startswith("tsm ")]
    assert len(lines) >= 15
    for line in lines:
        import shlex

        argv = shlex.split(line)[1:]
        r = tsm.run(*argv)
        assert r.returncode == 0, f"{line}\n{r.stdout}\n{r.stderr}"
        if argv[0] == "start" and "--name" in argv and "web" in argv:
            assert r.stdout.startswith(f"Started: web-{port} (TSM ID: 0, PID: ")
        if argv[:1] == ["resurrect"]:
            assert f"web-{port}" in r.stdout


def test_notebook_lines_run_in_ipython(tsm, shell):
    block = next(b for b in blocks("python") if b.startswith("%load_ext tsm_notebook"))
    name = None
    shown = []  # every result with a close() (the panel): closed at the end, so its thread stops
    try:
        for raw in block.splitlines():
            line = strip_comment(raw)
            if not line:
                continue
            if name:
                line = line.replace("web-8000", name)
            result = shell.run_cell(line, store_history=False)
            result.raise_error()
            if callable(getattr(result.result, "close", None)):
                shown.append(result.result)
            if line.startswith("web = %tsm start"):
                name = shell.user_ns["web"].name
        assert any(type(x).__name__ == "Panel" for x in shown), "the block shows the panel"
        cell = next(b for b in blocks("python") if b.startswith("%%tsm start"))
        first, body = cell.split("\n", 1)
        shell.run_cell_magic("tsm", first.split(None, 1)[1], body)
        wait_for(lambda: "working" in tsm.run("logs", "worker", "--out", "--lines", "1").stdout, 15)
    finally:
        for x in shown:
            x.close()
    # the tsm fixture's teardown proves the panel's refresh thread is gone


def test_python_api_block_runs(tsm):
    block = next(b for b in blocks("python") if b.startswith("import tsm_notebook as tsm"))
    port = free_port()
    code = block.replace("8000", str(port)) + "\npanel = tsm.Panel(); panel.close()\n"
    r = subprocess.run([sys.executable, "-c", code], env=tsm.env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
