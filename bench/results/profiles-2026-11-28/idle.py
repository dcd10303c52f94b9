import os, subprocess, sys, tempfile, time
ROOT = __import__("pathlib").Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
from bench import measure, run
from bench.tsm_driver import TsmDriver
from pathlib import Path
d = TsmDriver(); w = Path(tempfile.mkdtemp(prefix="pi-", dir="/tmp")); d.setup(w)
d.start_daemon(); pid = d.daemon_pid()
try:
    d.start_many([(f"idle{i}", run.sleeper()) for i in range(50)])
    time.sleep(2)
    c0 = measure.cpu_seconds(pid)
    subprocess.run([os.environ.get("PYSPY", "py-spy"), "record", "--pid", str(pid), "--rate", "200", "--threads", "-f", "raw",
                    "-o", "idle.raw", "-d", "20", "--nonblocking"], capture_output=True)
    print(f"daemon CPU over the 20 s window: {measure.cpu_seconds(pid) - c0:.3f} s")
finally:
    d.shutdown(); d.cleanup()
