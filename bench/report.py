"""Turn raw benchmark samples into the results JSON and the ``docs/benchmarks.md`` table.

The JSON keeps raw values (seconds, bytes, lines, lines per second) and every sample; only
:func:`markdown` formats them. Each row is ``{"row", "param", "title", "unit", "better",
"results": {column: {"median", "min", "max", "n", "samples"} or {... None ..., "reason"}}}``, where
a column is a driver's name or ``"floor"`` (plain ``subprocess.Popen``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.measure import median_minmax

#: row id -> (title, unit, which direction is better). Order here is the order of the table.
ROWS: dict[str, tuple[str, str, str]] = {
    "status": ("status command wall time", "s", "lower"),
    "status_api": ("status in-process, from Python", "s", "lower"),
    "start_return": ("start `python -m http.server`: until the command returned", "s", "lower"),
    "start_port": ("start `python -m http.server`: until the port accepts", "s", "lower"),
    "crash_pid": ("kill -9 of a managed server: until a new pid", "s", "lower"),
    "crash_port": ("kill -9 of a managed server: until its port accepts again", "s", "lower"),
    "stop": ("stop one process: until the command returned", "s", "lower"),
    "rss": ("daemon memory (VmRSS) with idle processes", "bytes", "lower"),
    "cpu": ("daemon CPU time with idle processes", "s", "lower"),
    "log_rate": ("log capture throughput", "lines/s", "higher"),
    "log_lost": ("log capture: lines lost", "lines", "lower"),
    "many_start": ("many processes: start all, until the command returned", "s", "lower"),
    "many_up": ("many processes: start all, until every one has a pid", "s", "lower"),
    "many_ls": ("many processes: status command wall time", "s", "lower"),  # results before 2026-11-28
    "many_stop": ("many processes: stop all, until the command returned", "s", "lower"),
}

Key = tuple[str, str]  # (row id, param)

#: The reason a column has no cell in a row that only some tools can have (rendered "n/a").
NOT_APPLICABLE = "n/a: not offered by this tool"


def summarise(
    samples: Mapping[Key, Mapping[str, list[float | int]]],
    reasons: Mapping[str, Mapping[str, str]],
    columns: list[str],
    optional: tuple[str, ...] = ("floor",),
) -> list[dict[str, Any]]:
    """One row dict per ``(row, param)`` measured, in table order, with a cell per column.

    ``reasons`` maps a row id and a column to why that column has no sample there. A column with
    no sample gets ``None`` statistics and its reason (else "not measured"), except ``optional``
    columns, which get no cell at all; a row that nobody measured still appears once, with param
    "-", so its reasons are kept.
    """
    keys = list(samples)
    keys += [(row_id, "-") for row_id in reasons if not any(k[0] == row_id for k in keys)]
    order = list(ROWS)
    keys.sort(key=lambda k: order.index(k[0]))  # stable: params keep the order they ran in
    rows = []
    for key in keys:
        row_id, param = key
        title, unit, better = ROWS[row_id]
        cells: dict[str, Any] = {}
        for column in columns:
            values = list(samples.get(key, {}).get(column, []))
            if not values and column in optional and column not in reasons.get(row_id, {}):
                continue
            cell = median_minmax(values)
            cell["samples"] = values
            if cell["n"] == 0:
                cell["reason"] = reasons.get(row_id, {}).get(column, "not measured")
            cells[column] = cell
        rows.append({"row": row_id, "param": param, "title": title, "unit": unit,
                     "better": better, "results": cells})
    return rows


def fmt(value: float | int | None, unit: str) -> str:
    """A raw value in ``unit`` as short human text ("12 ms", "34.5 MiB", "210k lines/s")."""
    if value is None:
        return "–"
    if unit == "s":
        if value < 0.01:
            return f"{value * 1000:.1f} ms"
        if value < 1:
            return f"{value * 1000:.0f} ms"
        return f"{value:.2f} s"
    if unit == "bytes":
        return f"{value / 2**20:.1f} MiB"
    if unit == "lines/s":
        return f"{value / 1000:.0f}k/s"
    return f"{value:,.0f}"


def _cell(cell: Mapping[str, Any] | None, unit: str) -> str:
    if cell is None:
        return ""
    if cell["n"] == 0:
        if cell.get("reason") == NOT_APPLICABLE:
            return "n/a"
        return f"null ({cell['reason']})" if cell.get("reason") else "–"
    text = fmt(cell["median"], unit)
    if cell["n"] > 1:
        text += f" ({fmt(cell['min'], unit)} – {fmt(cell['max'], unit)})"
    return text


def _ratio(tsm: Mapping[str, Any], peer: Mapping[str, Any]) -> str:
    a, b = tsm.get("median"), peer.get("median")
    if a is None or b is None or b == 0:
        return "–"
    return f"{a / b:.2f}"


@dataclass(frozen=True)
class Goal:
    """One target of the issue: tsm's median in ``row``/``param`` over ``column``'s, compared to ``bound``.

    ``at_most`` goals are met when the ratio is at or below ``bound``, the others when it is at
    or above. ``zero_lost`` adds that tsm's ``log_lost`` samples in the same param are all 0.
    ``column_param`` takes the other column's median from another param (the ``Popen`` floor is
    measured once, as "cold").
    """

    label: str
    row: str
    param: str
    column: str
    bound: float
    at_most: bool = True
    zero_lost: bool = False
    column_param: str | None = None


#: The goals of the benchmark issue, in the order they are listed.
GOALS: tuple[Goal, ...] = (
    *(Goal(f"`tsm ls` at most 0.5x `supervisorctl status` ({n})", "status", n, "supervisor", 0.5)
      for n in ("1 process", "10 processes", "50 processes", "200 processes")),
    *(Goal(f"`tsm ls` at most 0.3x `pm2 ls` ({n})", "status", n, "pm2", 0.3)
      for n in ("1 process", "10 processes", "50 processes", "200 processes")),
    Goal("start until the port accepts at most 0.5x PM2's (cold)", "start_port", "cold", "pm2", 0.5),
    Goal("start until the port accepts at most 0.5x PM2's (warm)", "start_port", "warm", "pm2", 0.5),
    Goal("start until the port accepts within 1.3x of plain `Popen` (cold)", "start_port", "cold", "floor", 1.3),
    Goal("start until the port accepts within 1.3x of plain `Popen` (warm)", "start_port", "warm", "floor", 1.3,
         column_param="cold"),
    Goal("kill -9 until a new pid at most PM2's", "crash_pid", "SIGKILL", "pm2", 1.0),
    Goal("daemon RSS at 50 processes at most supervisor's", "rss", "50 processes", "supervisor", 1.0),
    Goal("daemon CPU with 50 idle processes at most supervisor's", "cpu", "50 processes, 60 s", "supervisor", 1.0),
    Goal("stop all of 500 processes at most supervisor's", "many_stop", "500 processes", "supervisor", 1.0),
    Goal("daemon RSS at 2,000 processes at most supervisor's", "rss", "2000 processes", "supervisor", 1.0),
    Goal("per-line log throughput at least 2x PM2's, zero lines lost", "log_rate", "2,000,000 lines, line",
         "pm2", 2.0, at_most=False, zero_lost=True),
)


def check_goals(result: Mapping[str, Any], goals: tuple[Goal, ...] = GOALS) -> list[dict[str, Any]]:
    """``{"goal", "tsm", "peer", "ratio", "bound", "met"}`` per goal (raw medians, ``met`` None when
    a value is missing, e.g. a quick run has no row at that size)."""
    rows = {(r["row"], r["param"]): r["results"] for r in result["rows"]}
    out = []
    for goal in goals:
        cells = rows.get((goal.row, goal.param), {})
        other = rows.get((goal.row, goal.column_param or goal.param), {})
        tsm = (cells.get("tsm") or {}).get("median")
        peer = (other.get(goal.column) or {}).get("median")
        ratio = tsm / peer if tsm is not None and peer else None
        met: bool | None = None
        if ratio is not None:
            met = ratio <= goal.bound if goal.at_most else ratio >= goal.bound
            if goal.zero_lost:
                lost = (rows.get(("log_lost", goal.param), {}).get("tsm") or {}).get("samples") or [None]
                met = met and all(v == 0 for v in lost)
        out.append({"goal": goal, "tsm": tsm, "peer": peer, "ratio": ratio, "met": met})
    return out


def _goals_section(result: Mapping[str, Any]) -> list[str]:
    unit = {r["row"]: r["unit"] for r in result["rows"]}
    lines = [
        "## Goals",
        "",
        "The targets of the benchmark issue, as ratios of medians taken in this same run.",
        "",
        "| goal | tsm | other | tsm/other | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for g in check_goals(result):
        goal: Goal = g["goal"]
        u = unit.get(goal.row, "s")
        ratio = "–" if g["ratio"] is None else f"{g['ratio']:.3f}"  # 0.304 is not "0.30, met"
        target = f"{'≤' if goal.at_most else '≥'} {goal.bound:g}"
        met = {True: "yes", False: "**no**", None: "not measured"}[g["met"]]
        lines.append(f"| {goal.label} | {fmt(g['tsm'], u)} | {goal.column} {fmt(g['peer'], u)} | "
                     f"{ratio} | {target} | {met} |")
    return lines + [""]


def _source_line(source: Mapping[str, Any]) -> str:
    def one(state: Mapping[str, Any]) -> str:
        dirty = state.get("dirty") or []
        return f"`{state.get('commit')}`" + (f" with {len(dirty)} uncommitted file(s) in tsm_notebook/" if dirty else "")

    start, end = source.get("start") or {}, source.get("end") or {}
    if start == end:
        return f"tsm_notebook measured at {one(start)}."
    return (f"tsm_notebook measured from a tree that changed during the run: {one(start)} at the start, "
            f"{one(end)} at the end (each group starts a new daemon, which runs the code then on disk).")


def markdown(result: Mapping[str, Any], notes: str | None = None, images: tuple[str, ...] = (),
             extras: str | None = None) -> str:
    """The whole ``docs/benchmarks.md`` page for one results document.

    ``notes`` (Markdown: the analysis of the goals missed, with their profiles) goes after the
    goals; without it the page says that no analysis was written for this run. ``images`` are
    the growth plots beside the page (``bench/plots.py``), shown after the results table.
    ``extras`` (Markdown: the reports of ``bench/extras.py``) goes after the analysis.
    """
    columns: list[str] = result["columns"]
    peers = [c for c in columns if c not in ("tsm", "floor")]
    with_tsm = "tsm" in columns
    drivers = result["drivers"]
    machine = result["machine"]
    plan = result["plan"]
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `bench/run.py{' --quick' if result['quick'] else ''}` on {result['date']} "
        f"({plan['reps']} repetition(s) per row, the tools taken in turns A B C A B C). "
        "Each cell is the median, with min – max over the samples in brackets. "
        "Lower is better except for throughput. The machine is shared with other work, so single "
        "samples can be far off: read the medians. Run it again with `make bench` (installs the "
        "pinned peers into `bench/.cache/`, then runs the other benchmarks, about an hour on 2 cores).",
        "",
        f"Machine: {machine['cpus']} cores, {machine['memory_bytes'] / 2**30:.0f} GiB, "
        f"{machine['platform']}, Python {machine['python']}, node {machine['node']}.",
        "Tools: " + ", ".join(f"{name} {info['version']}" for name, info in drivers.items()) + ". "
        "Peers keep their defaults (see `bench/peers.py`): PM2 stops with SIGINT and kills after "
        "1.6 s; supervisor stops with SIGTERM and kills after 10 s, counts a process RUNNING after "
        "`startsecs` = 1 s and has log rotation turned off here. Every child is the real Python "
        "binary (not a pyenv shim).",
        "",
    ]
    if with_tsm:
        lines += [_source_line(result.get("source")), ""] if result.get("source") else []
        lines += [
            "tsm_notebook keeps its defaults too (see `bench/tsm_driver.py`): everything timed is "
            "the real `tsm` command line with its own `TSM_HOME`; `tsm start` returns once the "
            "child has lived through the launch window (250 ms), or as soon as its declared port "
            "accepts; stop is SIGTERM, SIGKILL after "
            "1.6 s; logs rotate at 10 MB and are gzipped in the background (the flood is started "
            "with `--log-retain 1000` so no rotated file is pruned, and every rotated file is "
            "counted). The 500 processes of \"many\" are written into the home's `dump.json` and "
            "started by one `tsm resurrect`, which launches them concurrently (tsm's bulk start, as "
            "PM2 starts an ecosystem file); the pids are read with the `ls` request of "
            "`tsm ls --json` on an open client.",
            "",
        ]
    if not with_tsm:
        lines += ["The tsm_notebook driver (`bench/tsm_driver.py`) was not part of this run, so the "
                  "tsm/peer ratio columns are left out.", ""]
    lines += ["## Results", ""]
    header = ["what", "case"] + columns + [f"tsm/{p}" for p in peers if with_tsm]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for row in result["rows"]:
        unit = row["unit"]
        cells = [row["title"] + (" (higher is better)" if row["better"] == "higher" else ""), row["param"]]
        cells += [_cell(row["results"].get(c), unit) for c in columns]
        if with_tsm:
            cells += [_ratio(row["results"]["tsm"], row["results"][p]) for p in peers]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    if images:
        lines += ["## How the costs grow with the number of processes", "",
                  "Medians against the process count, with the min – max as a band; both axes are "
                  "logarithmic (made by `bench/plots.py` from the same results file).", ""]
        lines += [f"![{Path(name).stem}]({name})" for name in images] + [""]
    if with_tsm:
        lines += _goals_section(result)
        if notes:
            lines += [notes.strip(), ""]
        else:
            lines += ["No analysis of the goals missed was written for this run.", ""]
    if extras:
        lines += [extras.strip(), ""]
    lines += [
        "## How each row is taken",
        "",
        "* status: wall time of the whole status command (`pm2 ls`, `supervisorctl status`, "
        "`tsm ls`), interpreter start-up included, with N idle sleepers under the daemon.",
        "* status in-process: `tsm_notebook.processes()` (a pandas DataFrame; one new connection "
        "per call, pandas already imported) and `Client.call(\"ls\")` on an open connection, as a "
        "notebook sees the table; the peers are not driven from Python here (n/a).",
        "* start: cold = daemon down, clock from bringing it up (`pm2 ping`, `supervisord`, "
        "`tsm ping`) through "
        "the start command; warm = daemon already up. \"port accepts\" polls a TCP connect. The "
        "floor is `subprocess.Popen` of the same server.",
        "* kill -9: the clock starts at the signal; \"new pid\" is the first look at a different pid "
        "reported by the manager, \"port\" waits for the old pid to be gone, then polls the port.",
        "* stop: one sleeper that exits on SIGTERM/SIGINT, one that ignores both.",
        "* daemon memory and CPU: VmRSS and user+system CPU of the daemon process alone.",
        "* log capture: a child writes N numbered 60-byte lines, one `write` per line or packed "
        "into 64 KiB writes; throughput is N over the time from its first write to the last growth "
        "of the manager's log files (rotated ones included, uncompressed size); lost = N minus the "
        "distinct intact lines found in the logs (gzipped ones decompressed).",
        "* many processes: one bulk start (PM2: one ecosystem file; supervisor: one program file "
        "and `supervisorctl update`; tsm: `dump.json` and `tsm resurrect`), until it returned and until "
        "every process has a pid; the status command once; `stop all`.",
        "",
    ]
    return "\n".join(lines)
