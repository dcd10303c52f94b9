"""Row 2 from Python: `tsm_notebook.start()` of `python -m http.server` (what `%tsm start` does in a
kernel) until its port accepts, beside plain `subprocess.Popen`, in turns. Run: .venv/bin/python bench/start_inprocess.py"""
import os, socket, statistics, subprocess, sys, tempfile, time
home = tempfile.mkdtemp(prefix="tsmi-", dir="/tmp")
os.environ["TSM_HOME"] = home
import tsm_notebook as tsm
from tsm_notebook.client.client import Client
PY = os.path.realpath(sys.executable)

def free():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]
def wait(port):
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.1).close(); return
        except OSError:
            time.sleep(0.001)
tsm.ping(home=home)
api, floor = [], []
for i in range(7):
    port = free(); t0 = time.monotonic()
    p = tsm.start([PY, "-m", "http.server", str(port), "--bind", "127.0.0.1"], name=f"w{i}", home=home)
    wait(port); api.append(time.monotonic() - t0)
    port = free(); t0 = time.monotonic()
    c = subprocess.Popen([PY, "-m", "http.server", str(port), "--bind", "127.0.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait(port); floor.append(time.monotonic() - t0); c.kill(); c.wait()
Client(home).kill()
import shutil; shutil.rmtree(home, ignore_errors=True)
f = lambda xs: f"{statistics.median(xs)*1000:.0f} ms ({min(xs)*1000:.0f}-{max(xs)*1000:.0f})"
print("tsm_notebook.start() until the port accepts:", f(api))
print("subprocess.Popen until the port accepts:   ", f(floor))
print("ratio of medians:", round(statistics.median(api) / statistics.median(floor), 2))
