"""Install the pinned peers the benchmark compares against, cached under ``bench/.cache/``.

* PM2 7.0.4 (``PM2_VERSION``) with ``npm`` into ``bench/.cache/pm2-<version>/`` (a scratch npm project; nothing
  global is touched, and each driver gives PM2 its own ``PM2_HOME``).
* supervisor 4.3.0 (``SUPERVISOR_VERSION``) with ``pip`` into the venv ``bench/.cache/supervisor-<version>/``.

An install is complete once its ``.installed`` stamp exists; a half-finished one is wiped and
redone. A file lock serialises concurrent installs (a test and a bench run at once). A first install
takes a few seconds per peer with the registries reachable. Run ``python bench/install_peers.py``
to install both and print their paths.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PM2_VERSION = "7.0.4"
SUPERVISOR_VERSION = "4.3.0"
CACHE = Path(__file__).resolve().parent / ".cache"

_STAMP = ".installed"


class InstallError(RuntimeError):
    """A peer could not be installed; the message carries the installer's output."""


@contextmanager
def _locked(cache: Path) -> Iterator[None]:
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _run(argv: list[str], cwd: Path, timeout: float = 600.0) -> None:
    done = subprocess.run(
        argv, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0:
        raise InstallError(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")


def _install(target: Path, steps: list[list[str]], stamp_text: str) -> None:
    """Run ``steps`` in ``target`` unless its stamp exists; the stamp is written last."""
    if (target / _STAMP).exists():
        return
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for argv in steps:
        _run(argv, cwd=target)
    (target / _STAMP).write_text(stamp_text + "\n")


def pm2_bin(cache: Path = CACHE) -> Path:
    """Path of the pinned ``pm2`` command line, installing it with npm first if needed.

    Raises ``InstallError`` when npm is missing or the install fails.
    """
    npm = shutil.which("npm")
    if npm is None:
        raise InstallError("npm is not on PATH: PM2 cannot be installed")
    target = cache / f"pm2-{PM2_VERSION}"
    with _locked(cache):
        _install(
            target,
            [
                [npm, "init", "-y"],
                [npm, "install", "--no-audit", "--no-fund", "--save-exact", "--loglevel=error",
                 f"pm2@{PM2_VERSION}"],
            ],
            f"pm2@{PM2_VERSION}",
        )
    return target / "node_modules" / ".bin" / "pm2"


def supervisor_bins(cache: Path = CACHE) -> tuple[Path, Path]:
    """Paths of the pinned ``supervisord`` and ``supervisorctl``, installing them first if needed.

    The venv is made from the real interpreter behind ``sys.executable``. Raises ``InstallError``
    when the install fails.
    """
    target = cache / f"supervisor-{SUPERVISOR_VERSION}"
    python = os.path.realpath(sys.executable)
    with _locked(cache):
        _install(
            target,
            [
                [python, "-m", "venv", str(target)],
                [str(target / "bin" / "python"), "-m", "pip", "install", "-q",
                 "--disable-pip-version-check", f"supervisor=={SUPERVISOR_VERSION}"],
            ],
            f"supervisor=={SUPERVISOR_VERSION}",
        )
    return target / "bin" / "supervisord", target / "bin" / "supervisorctl"


def main() -> int:
    """Install both peers and print where they are."""
    print(pm2_bin())
    for path in supervisor_bins():
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
