"""The benchmarks beside the main table, run by ``make bench`` after ``bench/run.py``: stack
bring-up, the remote hosts over SSH, watch & restart, and the cost of descendant tracking.

Each is its own script under ``bench/`` (run alone, they print the same report); here they run one
after the other, and their reports, with the command that produced each, become the section
"Other benchmarks" of ``docs/benchmarks.md``: they are written to ``bench/results/<date>.extras.md``
and the page is rendered again from the day's results file (``bench/run.py --render``). A script
that cannot run here (no sshd, not root) or fails is listed with its reason, not left out silently.

    .venv/bin/python bench/extras.py [--only stack,remote,watch,tracking] [--json bench/results/<date>.json]

The tracking benchmark compares this tree with the last commit before descendant tracking
(:data:`BEFORE_TRACKING`), checked out into a scratch worktree of this repository.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
#: the parent of the commit that brought pid markers and descendant tracking to the engine
BEFORE_TRACKING = "70bc4b2^"


def _sshd_problem() -> str | None:
    sys.path.insert(0, str(ROOT / "tests"))
    from sshd import have_sshd

    if not have_sshd():
        return "openssh-server is not installed (make test installs it)"
    if os.getuid() != 0:
        return "needs root (sshd on loopback addresses with generated host keys)"
    return None


#: name -> (title, argv after the interpreter, a function giving why it cannot run here, or None)
EXTRAS = {
    "stack": ("Stack bring-up", ["bench/stack_bringup.py", "--runs", "3"], None),
    "remote": ("Remote hosts over SSH", ["bench/remote_ls.py", "10"], _sshd_problem),
    "watch": ("Watch & restart: daemon CPU", ["bench/watch_cpu.py", "--window", "20"], None),
    "tracking": ("Descendant tracking: what it costs", ["bench/tracking_cost.py", "--before", "{before}",
                                                       "--sizes", "50,500", "--rounds", "2"], None),
}


def _before_tree(scratch: Path) -> Path:
    tree = scratch / "before-tracking"
    subprocess.run(["git", "worktree", "add", "--detach", "-q", str(tree), BEFORE_TRACKING], cwd=ROOT, check=True,
                   capture_output=True, timeout=120)
    return tree


def run_one(key: str, scratch: Path) -> dict:
    """Run one extra benchmark; its report (stdout), exit code and wall time, or why it did not run."""
    title, argv, problem = EXTRAS[key]
    why = problem() if problem else None
    shown = "`.venv/bin/python " + " ".join(a.replace("{before}", f"<checkout of {BEFORE_TRACKING}>") for a in argv) + "`"
    if why:
        return {"key": key, "title": title, "command": shown, "skipped": why}
    if "{before}" in argv:
        argv = [a.replace("{before}", str(_before_tree(scratch))) for a in argv]
    print(f"== {title}: {shown}", file=sys.stderr, flush=True)
    t0 = time.monotonic()
    done = subprocess.run([PY, *argv], cwd=ROOT, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          timeout=3600)
    out = {"key": key, "title": title, "command": shown, "rc": done.returncode,
           "seconds": round(time.monotonic() - t0, 1), "report": done.stdout.rstrip()}
    if done.returncode != 0:
        out["error"] = done.stderr.strip().splitlines()[-20:]
    return out


def markdown(results: list[dict], date: str) -> str:
    """The section of the page: each report verbatim under its title and command."""
    lines = ["## Other benchmarks", "",
             f"Run by `make bench` after the table above (`bench/extras.py`, {date}), one after the other on the "
             "same machine; each script's docstring says what it measures and how. The reports are "
             "printed as the scripts print them.", ""]
    for r in results:
        lines += [f"### {r['title']}", "", r["command"] + (f" ({r['seconds']:g} s)" if "seconds" in r else ""), ""]
        if "skipped" in r:
            lines += [f"Not run here: {r['skipped']}.", ""]
            continue
        if r.get("rc"):
            lines += [f"Failed with exit code {r['rc']}:", "", "```", *r.get("error", []), "```", ""]
        if r.get("report"):
            lines += ["```", r["report"], "```", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help=f"comma-separated subset of {','.join(EXTRAS)}")
    ap.add_argument("--json", type=Path, help="the results file to render the page from (default: today's)")
    args = ap.parse_args(argv)
    keys = args.only.split(",") if args.only else list(EXTRAS)
    bad = [k for k in keys if k not in EXTRAS]
    if bad:
        ap.error(f"unknown benchmark(s) {', '.join(bad)}; choose from {', '.join(EXTRAS)}")
    date = datetime.date.today().isoformat()
    json_path = args.json or ROOT / "bench" / "results" / f"{date}.json"
    scratch = Path(tempfile.mkdtemp(prefix="tsm-extras-"))
    results = []
    try:
        for key in keys:
            results.append(run_one(key, scratch))
    finally:
        if (scratch / "before-tracking").exists():
            subprocess.run(["git", "worktree", "remove", "--force", str(scratch / "before-tracking")], cwd=ROOT,
                           capture_output=True, timeout=120)
        shutil.rmtree(scratch, ignore_errors=True)
    extras = json_path.with_name(json_path.stem + ".extras.md")
    extras.write_text(markdown(results, date) + "\n")
    print(f"wrote {extras}", file=sys.stderr)
    if json_path.exists():  # the page shows the section after the table of the same day's run
        subprocess.run([PY, "bench/run.py", "--render", str(json_path)], cwd=ROOT, check=True)
    return 1 if any(r.get("rc") for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
