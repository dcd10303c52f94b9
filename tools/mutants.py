"""Mutation testing of the engine's policy, stop, spec, units and log-rotation code (`make mutants`).

Runs under the venv ``.venv-mutants`` that holds the pinned mutation tool (``make mutants`` makes
it); the tests run in the project's ``.venv`` (``--python``). For each target below, in order, it
mutates only the named functions of one module, runs the target's tests against each mutant, and
reports the mutants the tests let through. Everything happens in a scratch copy of the tracked
files (the tool rewrites files in place), which is removed at the end; the daemons and children a
mutant's test run leaves behind are found by that copy's path in their environment and killed by
pid. ``--minutes`` caps the whole run; what it did not reach is counted as not run. A survivor
listed in :data:`EQUIVALENT` (a change no caller can observe, with the reason) is reported as
equivalent, not as surviving. Each target's tests are ordered fast ones first: every test run
stops at its first failure, so a mutant the unit tests kill costs about a second.

Run: ``make mutants`` or ``.venv-mutants/bin/python tools/mutants.py --python .venv/bin/python
[--minutes 15] [--only units,policy]``.
"""

from __future__ import annotations

import argparse
import ast
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# name -> (module, the functions mutated (None: all of the module), the tests that must kill them)
TARGETS: dict[str, tuple[str, tuple[str, ...] | None, tuple[str, ...]]] = {
    "units": ("tsm_notebook/core/units.py", None, ("tests/test_units.py",)),
    "proctree": ("tsm_notebook/engine/proctree.py", ("signum", "decode", "killpg", "kill", "group_alive"),
                 ("tests/test_proctree.py",)),
    "policy": ("tsm_notebook/engine/supervisor.py", ("_after_crash", "_auto_restart", "stop"),
               ("tests/test_restart_policy.py", "tests/test_policy.py", "-k", "not interpreter and not descendants")),
    "rotation": ("tsm_notebook/engine/logwriter.py", ("_drain", "_rotation_due", "_rotate", "rotate", "_rotated"),
                 ("tests/test_logcompress.py", "tests/test_logwriter.py")),
    "spec": ("tsm_notebook/core/spec.py", ("build_spec", "from_dict", "to_dict", "final_name", "signal_name"),
             ("tests/test_spec.py", "tests/test_spec_read.py")),
}


# Survivors that are equivalent to the code (no caller could ever tell them apart), with the
# reason: (target, the mutated line as the mutant has it, stripped) -> why. A survivor listed here
# is reported as equivalent, not as surviving; a listed line that moved still matches.
POLL = "the stop loop's poll interval only: 10 or 20 ms between looks at the exit; what the stop does is the same"
EQUIVALENT: dict[tuple[str, str], str] = {
    ("spec", "if (command is None) is (argv is None):"):
        "both sides are bools, and `is` compares two bools as `==` does",
    ("spec", "if kill == 0:"):
        "parse_duration refuses negative durations, so `<= 0` and `== 0` refuse the same values",
    ("spec", "if backoff is not None and backoff == 0:"):
        "parse_duration refuses negative durations, so `<= 0` and `== 0` refuse the same values",
    ("policy", "if m.status < states.WAITING:"):
        "every other status ('errored', 'launching', 'online', 'stopped', 'stopping') sorts before 'waiting'",
    ("policy", "if m.status is not final and m.status is not None:"):
        "no caller passes another final than STOPPED, and a status equal to it but not the same object "
        "(read back from meta.json) is none of the statuses the branch acts on",
    ("policy", "while self.loop.time() <= deadline:"):
        "the loop time is a float: reaching the deadline exactly is never observable",
    ("policy", "await asyncio.sleep(0.01 if self.loop.time() < deadline - 0 else 0.02)"): POLL,
    ("policy", "await asyncio.sleep(0.01 if self.loop.time() < deadline + 1 else 0.02)"): POLL,
    ("policy", "await asyncio.sleep(0.01 if self.loop.time() < deadline % 1 else 0.02)"): POLL,
    ("policy", "await asyncio.sleep(0.01 if self.loop.time() < deadline * 1 else 0.02)"): POLL,
    ("policy", "await asyncio.sleep(0.01 if self.loop.time() == deadline - 1 else 0.02)"): POLL,
    ("policy", "await asyncio.sleep(0.01 if self.loop.time() > deadline - 1 else 0.02)"): POLL,
    ("policy", "await asyncio.sleep( 1.01 if self.loop.time() < deadline - 1 else 0.02)"):
        "latency only, which the suite never times (bench/ does): while more than 1 s of kill_timeout is "
        "left, stop looks at the exit every 1.01 s instead of 10 ms, so it may return up to 1 s later; it "
        "kills a child that had exited only when a look falls in the 10 ms just before the last second, "
        "which no test can arrange without timing it",
    ("policy", "await asyncio.sleep(0.01 if self.loop.time() < deadline - 2 else 0.02)"): POLL,
    ("policy", "await asyncio.sleep(0.01 if self.loop.time() < deadline / 1 else 0.02)"): POLL,
    ("policy", "await asyncio.sleep(0.01 if self.loop.time() < deadline // 1 else 0.02)"): POLL,
    ("policy", "await asyncio.sleep(0.01 if self.loop.time() is not deadline - 1 else 0.02)"): POLL,
    ("policy", "await asyncio.sleep(0.01 if self.loop.time() <= deadline - 1 else 0.02)"): POLL,
    ("policy", "await asyncio.sleep(0.01 if self.loop.time() != deadline - 1 else 0.02)"): POLL,
    ("policy", "async def stop(self, m: Managed, /, final: str = states.STOPPED, event: str = \"stop\", reason: str | None = None) -> None:"):
        "every caller passes final, event and reason by keyword, which both signatures accept",
    ("policy", "if m.status not in states.ALIVE and run is None or run.exited.done():"):
        "an alive status always has a run, and a run that has not exited always has an alive status "
        "(both change together under the process's lock), so the three tests never disagree",
    ("policy", "if m.status not in states.ALIVE or run is None and run.exited.done():"):
        "an alive status always has a run, and a run that has not exited always has an alive status "
        "(both change together under the process's lock), so the three tests never disagree",
    ("policy", "if m.status != final or m.status is not None:"):
        "the branch inside acts only on waiting, errored, launching and online: never on final (stopped) nor None",
    ("policy", "if run.exited.done() or not group_alive(run.pid) and not marker.any_alive(extra):"):
        "the leader's exit already SIGKILLs the rest of its run (_on_exit), and its group includes the "
        "leader: either half holds only a moment before the other",
    ("policy", "self.tracker.signal_run(run.pid, run.token, signal.SIGKILL, fresh=False)"):
        "a scan up to 100 ms old instead of 20 ms: where run cgroups exist (here) the cgroup lists every "
        "member whatever the scan's age; without them only a descendant forked in that window differs, "
        "which no test can arrange without timing it",
    ("policy", "await asyncio.wait_for(asyncio.shield(run.exited), 4.0)"):
        "how long to wait for the exit after SIGKILL, which the kernel delivers at once: only a process "
        "stuck in the kernel for over 4 s tells 4 from 5",
    ("rotation", "stamp = max(int(now * 1_000_000), self._last_stamp_us + 2)"):
        "stamps stay unique and increasing with any step; they differ only for two rotations in one microsecond",
    ("rotation", "and self._size != 0"):
        "the byte count of the open file is never negative, so `!= 0` is `> 0`",
    ("rotation", "elif self._file_nl and self._size != 0:"):
        "the byte count of the open file is never negative, so `!= 0` is `> 0`",
    ("rotation", "while pos != n:"):
        "pos only moves to a cut, and every cut is at most n: it never passes n",
    ("rotation", "if reached != cut:"):
        "_put returns a position between its start and end: never past the cut",
    ("rotation", "room = -1 if self._rotate_requested else self._max_size - self._size"):
        "room is only read through max(room, 1) or compared with the bytes left (at least 1): -1 acts as 0",
    ("rotation", "boundary = False"):
        "a cut at or past the byte that fills the file leaves it at max_size (or under a requested "
        "rotation), which _rotation_due sees anyway; a cut before that byte leaves no newline in the "
        "rest, so the next pass takes the unfinished-line branch and rotates there all the same",
    ("units", "if isinstance(value, str) and value.strip().lower() in _TRUE ^ _FALSE:"):
        "the two sets share no word, so their symmetric difference is their union",
}


def mutated_lines(diff: str) -> list[str]:
    """The lines a mutant's diff adds, stripped."""
    return [l[1:].strip() for l in diff.splitlines() if l.startswith("+") and not l.startswith("+++")]


def equivalence(name: str, diff: str) -> str | None:
    """Why the survivor ``diff`` of target ``name`` is equivalent, if it is listed (else None)."""
    for line in mutated_lines(diff):
        if (name, line) in EQUIVALENT:
            return EQUIVALENT[(name, line)]
    return None


def scratch_copy(dest: Path) -> Path:
    """The tracked files (as in the work tree) copied under ``dest/src``."""
    src = dest / "src"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    for name in filter(None, files):
        rel = name.decode()
        target = src / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if (ROOT / rel).is_file():
            shutil.copy2(ROOT / rel, target)
    return src


def annotations(path: Path) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Where the module's annotations are: mutating one changes nothing at run time (every module
    has ``from __future__ import annotations``), so those mutants are equivalent and not run."""
    spans = []
    for node in ast.walk(ast.parse(path.read_text())):
        found = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            a = node.args
            found = [x.annotation for x in (*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg) if x]
            found.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            found = [node.annotation]
        spans += [((n.lineno, n.col_offset), (n.end_lineno, n.end_col_offset)) for n in found if n is not None]
    return spans


def test_command(python: str, src: Path, tests: tuple[str, ...]) -> list[str]:
    return ["/usr/bin/env", f"PYTHONPATH={src}", "PYTHONDONTWRITEBYTECODE=1", python, "-m", "pytest",
            "-p", "no:cacheprovider", "-x", "-q", "--no-header", "-o", "addopts=",
            *(str(src / t) if t.startswith("tests/") else t for t in tests)]


def kill_leftovers(src: Path) -> list[int]:
    """Kill (by pid) every process whose environment names the scratch copy: what a mutant's test
    run left behind (a daemon is detached in its own session, so a killed test run leaves it)."""
    marker = f"PYTHONPATH={src}".encode()
    killed = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        if marker in env or any(e.startswith(b"PYTHONPATH=" + str(src).encode() + b":") for e in env):
            try:
                os.kill(int(entry), signal.SIGKILL)
                killed.append(int(entry))
            except ProcessLookupError:
                pass
    return killed


def run_target(name: str, python: str, src: Path, work: Path, deadline: float) -> dict:
    """Mutate one target and test every mutant until ``deadline``; the counts and the survivors."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome, WorkResult

    module, functions, tests = TARGETS[name]
    command = test_command(python, src, tests)
    t0 = time.monotonic()
    base = subprocess.run(command, cwd=src, capture_output=True, text=True, timeout=max(60, deadline - t0))
    took = time.monotonic() - t0
    kill_leftovers(src)
    if base.returncode != 0:
        return {"name": name, "error": f"the tests fail without any mutant:\n{(base.stdout + base.stderr)[-2000:]}"}
    config = work / f"{name}.toml"
    session = work / f"{name}.sqlite"
    config.write_text(textwrap.dedent(f"""\
        [cosmic-ray]
        module-path = "{src / module}"
        timeout = {max(30.0, 4 * took):.0f}
        excluded-modules = []
        test-command = "{shlex.join(command)}"

        [cosmic-ray.distributor]
        name = "local"
        """))
    tool = Path(sys.executable).parent / "cosmic-ray"
    subprocess.run([str(tool), "init", str(config), str(session)], cwd=src, check=True, capture_output=True)
    spans = annotations(src / module)
    with use_db(str(session), WorkDB.Mode.open) as db:
        for item in list(db.work_items):
            m = item.mutations[0]
            outside = functions is not None and m.definition_name not in functions
            in_annotation = any(a <= tuple(m.start_pos) and tuple(m.end_pos) <= b for a, b in spans)
            if outside or in_annotation:
                db.set_result(item.job_id, WorkResult(worker_outcome=WorkerOutcome.SKIPPED))
    remaining = deadline - time.monotonic()
    timed_out = False
    if remaining > took:
        proc = subprocess.Popen([str(tool), "exec", str(config), str(session)], cwd=src, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            proc.wait(timeout=remaining)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    kill_leftovers(src)
    counts = {"killed": 0, "survived": 0, "equivalent": 0, "incompetent": 0, "not run": 0}
    survivors, equivalents = [], []
    with use_db(str(session), WorkDB.Mode.open) as db:
        done = {job_id: result for job_id, result in db.results}
        for item in db.work_items:
            result = done.get(item.job_id)
            if result is not None and result.worker_outcome == WorkerOutcome.SKIPPED:
                continue
            if result is None:
                counts["not run"] += 1
            elif result.test_outcome == TestOutcome.SURVIVED:
                m = item.mutations[0]
                entry = (m.start_pos[0], m.definition_name, m.operator_name, result.diff or "")
                why = equivalence(name, result.diff or "")
                if why is None:
                    counts["survived"] += 1
                    survivors.append(entry)
                else:
                    counts["equivalent"] += 1
                    equivalents.append((*entry[:3], why))
            elif result.test_outcome == TestOutcome.INCOMPETENT or result.worker_outcome != WorkerOutcome.NORMAL:
                counts["incompetent"] += 1
            else:
                counts["killed"] += 1
    return {"name": name, "module": module, "counts": counts, "survivors": sorted(survivors),
            "equivalents": sorted(equivalents),
            "baseline": took, "cut": timed_out}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--python", default=str(ROOT / ".venv" / "bin" / "python"), help="the venv that runs the tests")
    ap.add_argument("--minutes", type=float, default=15.0, help="cap on the whole run")
    ap.add_argument("--only", default=",".join(TARGETS), help="targets, comma-separated: " + ", ".join(TARGETS))
    ap.add_argument("--keep", action="store_true", help="keep the scratch copy and the sessions")
    args = ap.parse_args()
    args.python = os.path.abspath(args.python)  # the tests run from the scratch copy
    names = [n for n in args.only.split(",") if n]
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        ap.error(f"unknown target(s): {', '.join(unknown)}")
    deadline = time.monotonic() + args.minutes * 60
    work = Path(tempfile.mkdtemp(prefix="tsm-mutants-", dir="/tmp"))
    src = scratch_copy(work)
    total_survived = 0
    try:
        for name in names:
            if time.monotonic() >= deadline:
                print(f"{name}: not started (--minutes reached)")
                continue
            r = run_target(name, args.python, src, work, deadline)
            if "error" in r:
                print(f"{name}: {r['error']}")
                total_survived += 1
                continue
            c = r["counts"]
            cut = " (cut short by --minutes)" if r["cut"] else ""
            print(f"{name} ({r['module']}): {c['killed']} killed, {c['survived']} survived, "
                  f"{c['equivalent']} equivalent (listed), {c['incompetent']} incompetent, {c['not run']} not run; "
                  f"tests {r['baseline']:.1f} s each{cut}")
            for line, func, op, why in r["equivalents"]:
                print(f"  equivalent line {line} in {func}: {op}: {why}")
            for line, func, op, diff in r["survivors"]:
                print(f"  SURVIVED line {line} in {func}: {op}")
                print(textwrap.indent("\n".join(l for l in diff.splitlines() if l[:1] in "+-" and l[:3] not in
                                                ("+++", "---")), "      "))
            total_survived += c["survived"]
    finally:
        kill_leftovers(src)
        if args.keep:
            print(f"kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 1 if total_survived else 0


if __name__ == "__main__":
    raise SystemExit(main())
