"""The text renderers: raw values (seconds, bytes, exit codes and signals) to the words the command
line prints, at every unit's boundary."""

from __future__ import annotations

import signal

import pytest

from tsm_notebook.core import render


@pytest.mark.parametrize("seconds, text", [
    (None, "-"), (0, "0s"), (59.9, "59s"), (60, "1m"), (3599, "59m"), (3600, "1h"), (86399, "23h"),
    (86400, "1d"), (10 * 86400, "10d"),
])
def test_duration(seconds, text):
    assert render.duration(seconds) == text


@pytest.mark.parametrize("n, text", [
    (None, "-"), (0, "0 B"), (1023, "1023 B"), (1024, "1.0 KB"), (1536, "1.5 KB"), (1024**2, "1.0 MB"),
    (1024**3, "1.0 GB"), (5 * 1024**4, "5120.0 GB"),
])
def test_size(n, text):
    assert render.size(n) == text


def test_percent_and_when():
    assert (render.percent(None), render.percent(12.345)) == ("-", "12.3%")
    assert render.when(None) == "-"
    assert len(render.when(0.0)) == len("1970-01-01 00:00:00")


@pytest.mark.parametrize("row, text", [
    ({"exit_signal": int(signal.SIGKILL), "exit_code": None}, "SIGKILL"),
    ({"exit_signal": 200}, "signal 200"),  # not a signal this system names
    ({"exit_code": 3}, "code 3"),
    ({"exit_code": 0, "exit_signal": None}, "code 0"),
    ({}, "-"),
])
def test_exit_text(row, text):
    assert render.exit_text(row) == text


def test_start_line_and_note_of_a_rerun():
    row = {"name": "web", "tsm_id": 3, "pid": 42, "port": None, "action": "unchanged"}
    assert render.started(row) == "Already running (same spec): web (TSM ID: 3, PID: 42, Port: -)"
    assert render.start_note(row) == "Already running (same spec)"
    assert render.start_note({"action": "started"}) is None
    assert render.start_note({"action": "restarted with the new spec", "name": "web-8000", "replaced": "web"}) == (
        "Restarted with the new spec (replaces web)")
    assert render.start_note({"action": "renamed", "name": "web", "replaced": "web"}) == "renamed"


def test_name_labels_keep_one_colour_per_name():
    assert render.name_label("web", False) == "web"
    coloured = render.name_label("web", True)
    assert coloured == render.name_label("web", True) and coloured.endswith("web\x1b[0m")
    assert render.strip_ansi(coloured) == "web"
    assert render.strip_ansi("plain") == "plain"


def test_describe_lists_set_triggers_and_problems_only():
    row = {"name": "w", "tsm_id": 1, "status": "online", "command": "sleep 1", "cwd": "/",
           "spec": {"watch": ["/src", "/lib"], "cron": None, "on_crash": "echo x"},
           "problems": {"meta": "cannot write meta.json"}, "exp_backoff": 0.1, "max_memory": 1024**2}
    lines = render.describe(row).splitlines()
    width = len(lines[0]) - len("  w")  # the first line is the name
    card = {line[:width].rstrip(): line[width + 2:] for line in lines}
    assert card["watch"] == "/src, /lib" and card["on crash"] == "echo x"
    assert "cron" not in card and "watch ignore" not in card  # triggers not set are not listed
    assert card["problem (meta)"] == "cannot write meta.json"
    assert (card["exp backoff"], card["max memory"], card["pid"]) == ("0.1s", "1.0 MB", "-")
