"""Tests of tsm_notebook.core.units: the one grammar of sizes, durations, counts and switches."""

from __future__ import annotations

import pytest

from conftest import one_line_usage_error
from tsm_notebook.core.errors import UsageError
from tsm_notebook.core.units import parse_bool, parse_count, parse_duration, parse_size

MiB = 1024**2


# --------------------------------------------------------------------------- parse_size


@pytest.mark.parametrize(
    "text, expected",
    [
        ("200M", 200 * MiB),
        ("200m", 200 * MiB),
        ("200MB", 200 * MiB),
        ("200MiB", 200 * MiB),
        ("200 mib", 200 * MiB),
        ("512", 512),
        ("512B", 512),
        ("1K", 1024),
        ("1kb", 1024),
        ("3KiB", 3 * 1024),
        ("2G", 2 * 1024**3),
        ("2gib", 2 * 1024**3),
        ("2GB", 2 * 1024**3),
        ("2g", 2 * 1024**3),
        ("1", 1),
        ("1b", 1),
        (1, 1),
        ("1.5G", int(1.5 * 1024**3)),
        (4096, 4096),
        (1e6, 1_000_000),
    ],
)
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["12X", "", "M", "abc", "-5M", "1T", "10 MBs", "1,5M", None, [1]])
def test_parse_size_rejects_units_and_garbage(text):
    with pytest.raises(UsageError) as excinfo:
        parse_size(text)
    assert one_line_usage_error(excinfo) == f"invalid size '{text}': use a number with B, K, M or G"


@pytest.mark.parametrize("text", ["0", "0M", 0, -1, 0.4, float("inf"), float("nan")])
def test_parse_size_must_be_positive(text):
    with pytest.raises(UsageError, match="must be more than 0 bytes"):
        parse_size(text)


def test_parse_size_rejects_bool():
    with pytest.raises(UsageError):
        parse_size(True)


# --------------------------------------------------------------------------- parse_duration


@pytest.mark.parametrize(
    "text, kwargs, expected",
    [
        ("500ms", {}, 0.5),
        ("2s", {}, 2.0),
        ("1.5m", {}, 90.0),
        ("1h", {}, 3600.0),
        ("1d", {}, 86400.0),
        ("2 S", {}, 2.0),
        ("1600", {}, 1.6),  # a bare number is milliseconds, as with PM2's flags
        ("0", {}, 0.0),
        (".5s", {}, 0.5),
        ("1w", {}, 604800.0),
        (250, {}, 250.0),  # a number (Python, TOML) is seconds
        (250, {"number": "ms"}, 0.25),
        ("3", {"bare": "m"}, 180.0),
        ("10ms", {"bare": None}, 0.01),
        ("0", {"bare": None}, 0.0),  # zero needs no unit
    ],
)
def test_parse_duration(text, kwargs, expected):
    assert parse_duration(text, **kwargs) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["", "fast", "5y", "-1s", "1..2s", "s", "1 2s", None, True])
def test_parse_duration_rejects(text):
    with pytest.raises(UsageError) as excinfo:
        parse_duration(text)
    assert f"invalid duration '{text}'" in one_line_usage_error(excinfo)


@pytest.mark.parametrize("value", [-1, -0.5, float("inf"), float("nan")])
def test_parse_duration_rejects_negative_and_non_finite_numbers(value):
    with pytest.raises(UsageError, match="finite number >= 0"):
        parse_duration(value)


def test_parse_duration_bare_number_refused_where_it_would_be_ambiguous():
    with pytest.raises(UsageError) as excinfo:
        parse_duration("3", "logs.max_age", bare=None)
    assert one_line_usage_error(excinfo) == "logs.max_age: '3' needs a unit: write '3s', '3ms', ..."


def test_the_unit_hint_quotes_the_number_not_the_spaces_around_it():
    with pytest.raises(UsageError) as excinfo:
        parse_duration(" 3 ", "logs.max_age", bare=None)
    assert one_line_usage_error(excinfo) == "logs.max_age: ' 3 ' needs a unit: write '3s', '3ms', ..."


def test_what_is_named_by_keyword_and_the_options_only_so():
    with pytest.raises(UsageError, match="^logs.retain: "):
        parse_count("x", what="logs.retain")
    with pytest.raises(UsageError, match="^logs.max_age: "):
        parse_duration("x", what="logs.max_age")
    with pytest.raises(TypeError):
        parse_duration("3", "x", None)  # bare= must be named: a positional None would mean "refuse"
    with pytest.raises(TypeError):
        parse_count("3", "x", 1)


def test_a_minimum_is_named_in_the_message():
    with pytest.raises(UsageError, match=r"use a whole number >= 2$"):
        parse_count("1", minimum=2)


def test_every_message_names_what_it_checks():
    for call in (lambda: parse_size("0", "--log-max-size"), lambda: parse_duration("x", "--kill-timeout"),
                 lambda: parse_count("-1", "logs.retain"), lambda: parse_bool("maybe", "logs.compress")):
        with pytest.raises(UsageError) as excinfo:
            call()
        assert one_line_usage_error(excinfo).split(":")[0] in {"--log-max-size", "--kill-timeout", "logs.retain", "logs.compress"}


@pytest.mark.parametrize("value, expected", [(0, 0), (3, 3), ("3", 3), (" 12 ", 12)])
def test_parse_count(value, expected):
    assert parse_count(value) == expected


@pytest.mark.parametrize("value", [-1, "-1", 2.5, "2.5", True, "", "x", None, "²"])
def test_parse_count_rejects(value):
    with pytest.raises(UsageError, match="use a whole number >= 0"):
        parse_count(value)


@pytest.mark.parametrize("value, expected", [(True, True), (False, False), ("true", True), ("False", False),
                                             ("yes", True), ("off", False), ("1", True), ("0", False)])
def test_parse_bool(value, expected):
    assert parse_bool(value) is expected


@pytest.mark.parametrize("value", ["", "maybe", "nope", 1, None])
def test_parse_bool_never_takes_a_string_as_true(value):
    with pytest.raises(UsageError, match="use true or false"):
        parse_bool(value)
