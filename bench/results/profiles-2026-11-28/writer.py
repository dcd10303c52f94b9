import json, os, subprocess, sys, time, statistics
PY = os.path.realpath(sys.executable); F = str(__import__("pathlib").Path(__file__).resolve().parents[2] / "workloads" / "flood.py")
rates = []
for i in range(3):
    m = f"/tmp/writer-marker-{i}.json"
    try: os.unlink(m)
    except FileNotFoundError: pass
    sink = subprocess.Popen(["dd", "of=/dev/null", "bs=1M"], stdin=subprocess.PIPE, stderr=subprocess.DEVNULL)
    fl = subprocess.Popen([PY, F, "2000000", "line", m], stdout=sink.stdin)
    sink.stdin.close()
    while not os.path.exists(m): time.sleep(0.01)
    d = json.load(open(m)); rates.append(2e6 / (d["end"] - d["start"]))
    fl.kill(); fl.wait(); sink.wait()
print("writer alone into a pipe drained by dd: %s lines/s" % ", ".join(f"{r/1000:.0f}k" for r in rates))
