"""The live panel's refresh cost with 50 processes: one `Panel.refresh()` (one `ls`, the table, the
selected process's log check and one history query), median/min/max of 50 calls.

Run: .venv/bin/python bench/panel_refresh.py [N]
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time

N = int(sys.argv[1]) if len(sys.argv) > 1 else 50
home = tempfile.mkdtemp(prefix="tsmp-", dir="/tmp")
os.environ["TSM_HOME"] = home

import tsm_notebook as tsm  # noqa: E402
from tsm_notebook.client.client import Client  # noqa: E402
from tsm_notebook.notebook.panel import Panel  # noqa: E402

try:
    for i in range(N):
        tsm.start(["sleep", "600"], name=f"s{i:03d}", home=home)
    panel = Panel(home=home, refresh=None)
    times = []
    for _ in range(50):
        t0 = time.perf_counter()
        panel.refresh()
        times.append(time.perf_counter() - t0)
    panel.close()
    ms = [t * 1000 for t in times]
    print(f"Panel.refresh() with {N} processes: median {statistics.median(ms):.1f} ms "
          f"(min {min(ms):.1f}, max {max(ms):.1f}) over {len(ms)} calls")
finally:
    Client(home).kill()
    shutil.rmtree(home, ignore_errors=True)
