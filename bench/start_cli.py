"""Where a warm ``tsm start`` from the command line spends its time, beside ``python -c pass``,
measured in turns in one run:

* ``python -c pass``: the interpreter alone (the floor of any Python command line);
* ``import tsm_notebook.cli.main``: the interpreter plus the command line's imports;
* ``tsm ping``: the smallest command with a round trip to the (warm) daemon;
* ``tsm start -- sleep``: a warm start of a program with no port, which returns once the child
  has been alive for the launch window (250 ms by default);
* ``tsm start -- sleep``, ``launch_window = 0``: the same with no window (a second home whose
  ``config.toml`` sets it), i.e. what the start costs besides waiting.

Run: ``.venv/bin/python bench/start_cli.py [--reps 9]``. Milliseconds, median (min-max).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.tsm_driver import tsm_command  # noqa: E402


def timed(argv: list[str], env: dict[str, str]) -> float:
    """Seconds of one run of ``argv`` (checked to exit 0)."""
    t = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def cell(xs: list[float]) -> str:
    """``"123 ms (110-140)"``: median (min-max) in milliseconds."""
    return f"{statistics.median(xs) * 1e3:.0f} ms ({min(xs) * 1e3:.0f}-{max(xs) * 1e3:.0f})"


def main(argv: list[str] | None = None) -> int:
    """Measure the rows in turns and print them."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=9)
    args = ap.parse_args(argv)
    import compileall

    compileall.compile_dir(ROOT / "tsm_notebook", quiet=1)  # as an installed package would be
    py, tsm = os.path.realpath(sys.executable), tsm_command()
    homes = [Path(tempfile.mkdtemp(prefix="tsmc-", dir="/tmp")) for _ in range(2)]
    (homes[1] / "config.toml").write_text('[daemon]\nlaunch_window = "0s"\n')
    envs = [dict(os.environ, TSM_HOME=str(h)) for h in homes]
    for env in envs:
        env.pop("TSM_ID", None)
        env.pop("TSM_RUN", None)
    rows: dict[str, list[float]] = {}
    try:
        for env in envs:
            subprocess.run([*tsm, "ping"], env=env, check=True, stdout=subprocess.DEVNULL)  # warm
        for i in range(args.reps):
            plan = [
                ("python -c pass", [py, "-c", "pass"], envs[0]),
                ("python -c 'import tsm_notebook.cli.main'", [py, "-c", "import tsm_notebook.cli.main"], envs[0]),
                ("tsm ping (warm)", [*tsm, "ping"], envs[0]),
                ("tsm start -- sleep (warm, launch window 250 ms)",
                 [*tsm, "start", "--name", f"a{i}", "--", "sleep", "600"], envs[0]),
                ("tsm start -- sleep (warm, launch_window 0)",
                 [*tsm, "start", "--name", f"b{i}", "--", "sleep", "600"], envs[1]),
            ]
            for label, cmd, env in plan:
                rows.setdefault(label, []).append(timed(cmd, env))
    finally:
        for env, home in zip(envs, homes):
            subprocess.run([*tsm, "kill"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            shutil.rmtree(home, ignore_errors=True)
    width = max(map(len, rows))
    for label, xs in rows.items():
        print(f"{label:<{width}}  {cell(xs)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
