import os, statistics, subprocess, sys, time
def t(argv, n=21):
    xs=[]
    for _ in range(n):
        s=time.monotonic(); subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); xs.append(time.monotonic()-s)
    return statistics.median(xs)*1000
PYV=sys.executable; T=str(__import__("pathlib").Path(sys.executable).parent / "tsm")
REAL=os.path.realpath(PYV)
sup=str(__import__("pathlib").Path(__file__).resolve().parents[2] / ".cache" / "supervisor-4.3.0" / "bin" / "python")
import tempfile
os.environ["TSM_HOME"] = tempfile.mkdtemp(prefix="walls-", dir="/tmp")  # its own daemon, killed below
subprocess.run([T, "ping"], stdout=subprocess.DEVNULL, check=True)
for label, argv in [
  ("venv python -c pass", [PYV,"-c","pass"]),
  ("venv python -S -c pass (no site)", [PYV,"-S","-c","pass"]),
  ("venv python -I -S -c pass", [PYV,"-I","-S","-c","pass"]),
  ("supervisor venv python -c pass", [sup,"-c","pass"]),
  ("import tsm_notebook.cli", [PYV,"-c","import tsm_notebook.cli"]),
  ("tsm ls (empty daemon)", [T,"ls"]),
  ("python -m tsm_notebook ls", [PYV,"-m","tsm_notebook","ls"]),
]:
    print(f"{t(argv):7.1f} ms  {label}", flush=True)
subprocess.run([T, "kill"], stdout=subprocess.DEVNULL)
__import__("shutil").rmtree(os.environ["TSM_HOME"], ignore_errors=True)
