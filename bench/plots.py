"""Plots of how each tool's cost grows with the number of processes, from a results JSON.

Usage::

    python bench/plots.py bench/results/<date>.json [--out docs]

One PNG per row that was measured at several process counts (status command, daemon RSS, daemon
CPU, start all, stop all): the median of each tool against the count, with its min-max as a band,
both axes logarithmic so a straight line is a power law. ``bench/run.py`` calls it after a full
run; the page (``docs/benchmarks.md``) embeds the images it wrote.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: row -> (file stem, y label, factor to the plotted unit)
CURVES = {
    "status": ("bench-status", "status command, ms", 1e3),
    "rss": ("bench-rss", "daemon RSS, MiB", 1 / 2**20),
    "cpu": ("bench-cpu", "daemon CPU per 60 s idle, ms", 1e3),
    "many_up": ("bench-start-all", "start all until every pid, s", 1.0),
    "many_stop": ("bench-stop-all", "stop all, s", 1.0),
}
_COUNT = re.compile(r"^(\d[\d,]*) process(?:es)?(?:,|$)")
COLOURS = {"tsm": "#1a7f37", "pm2": "#cf222e", "supervisor": "#0969da"}


def series(result: Mapping[str, Any], row: str) -> dict[str, list[tuple[int, float, float, float]]]:
    """``tool -> [(processes, median, min, max)]`` of ``row``, sorted by count; cells without a
    figure (a tool that failed or was not asked) are left out. The CPU row is scaled to 60 s."""
    out: dict[str, list[tuple[int, float, float, float]]] = {}
    for r in result["rows"]:
        match = _COUNT.match(r["param"]) if r["row"] == row else None
        if match is None or (row == "status" and "," in r["param"]):
            continue
        count = int(match.group(1).replace(",", ""))
        window = re.search(r", (\d+(?:\.\d+)?) s$", r["param"])
        scale = 60.0 / float(window.group(1)) if row == "cpu" and window else 1.0
        for tool, cell in r["results"].items():
            if cell and cell.get("median") is not None:
                out.setdefault(tool, []).append((count, cell["median"] * scale, cell["min"] * scale, cell["max"] * scale))
    return {tool: sorted(points) for tool, points in out.items()}


def plot(result: Mapping[str, Any], out: Path) -> list[Path]:
    """Write the PNGs of every row with two or more counts for some tool; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    out.mkdir(parents=True, exist_ok=True)
    for row, (stem, label, factor) in CURVES.items():
        data = series(result, row)
        if not any(len(points) >= 2 for points in data.values()):
            continue
        fig, ax = plt.subplots(figsize=(5.2, 3.4), dpi=110)
        for tool, points in sorted(data.items()):
            xs = [p[0] for p in points]
            colour = COLOURS.get(tool)
            ax.plot(xs, [p[1] * factor for p in points], marker="o", label=tool, color=colour)
            ax.fill_between(xs, [p[2] * factor for p in points], [p[3] * factor for p in points], alpha=0.15,
                            color=colour)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("processes")
        ax.set_ylabel(label)
        ax.set_title(f"{label.split(',')[0]} ({result.get('date', '')})", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out / f"{stem}.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "docs")
    args = parser.parse_args(argv)
    for path in plot(json.loads(args.results.read_text()), args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
