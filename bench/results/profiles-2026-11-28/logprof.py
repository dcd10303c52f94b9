"""py-spy the tsm daemon while it captures a 2,000,000-line per-line flood (as bench run_log)."""
import json, os, subprocess, sys, tempfile, time
ROOT = __import__("pathlib").Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
from bench import measure, run
from bench.tsm_driver import TsmDriver
from pathlib import Path
extra = sys.argv[1:]  # e.g. --no-log-compress for the control
d = TsmDriver(); w = Path(tempfile.mkdtemp(prefix="lp-", dir="/tmp")); d.setup(w)
d.start_daemon(); pid = d.daemon_pid()
out = f"log{'-'.join(extra) or ''}.raw"
spy = subprocess.Popen([os.environ.get("PYSPY", "py-spy"), "record", "--pid", str(pid), "--rate", "500", "--threads",
                        "-f", "raw", "-o", out, "-d", "8", "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
time.sleep(1.0)
count = 2_000_000; marker = w / "m.json"; name = "flood"
cmd = [run.PYTHON, str(run.WORKLOADS / "flood.py"), str(count), "line", str(marker)]
args = ["start", "--name", name, "--log-retain", "1000", *extra, "--", *cmd]
t0 = time.time()
d._run(*args)
size, grew = -1, time.time()
while True:
    cur = d.log_bytes(name)
    if cur != size:
        size, grew = cur, time.time()
    if size >= count * 60: break
    if marker.exists() and time.time() - grew > 3: break
    time.sleep(0.005)
begun = json.loads(marker.read_text())["start"]; end = json.loads(marker.read_text())["end"]
print(f"{extra}: capture {count/(grew-begun)/1000:.0f}k lines/s; writer alone finished at {count/(end-begun)/1000:.0f}k lines/s")
cpu = measure.cpu_seconds(pid)
print(f"daemon cpu so far {cpu:.2f} s")
spy.wait(); print(spy.stderr.read().decode()[-300:])
d.shutdown(); d.cleanup()
