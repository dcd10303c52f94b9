"""``tsm startup``: a systemd **user** unit that runs the daemon at boot and resurrects the saved list.

The unit runs the daemon in the foreground (``Type=simple``) with ``--resurrect``: once up it
starts what ``tsm save`` wrote to ``dump.json``, and at boot it only ever reads that file, so an
empty boot never erases a saved list. The home, ``PATH`` and ``PYTHONPATH`` written into the unit
are the caller's (a unit otherwise gets systemd's bare environment), and so is the interpreter.
Stopping the unit stops the daemon (its processes with it: ``tsm save`` first keeps them for the
next boot). Nothing here needs the daemon.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

from ..core.paths import Home

__all__ = ["unit_name", "unit_path", "unit_text", "install", "uninstall", "instructions"]


def unit_name(home: Home) -> str:
    """``tsm-notebook.service`` for ``~/.tsm``, ``tsm-notebook-<hash>.service`` for any other home."""
    if home.root == Path("~/.tsm").expanduser().absolute():
        return "tsm-notebook.service"
    digest = hashlib.sha1(str(home.root).encode()).hexdigest()[:8]
    return f"tsm-notebook-{digest}.service"


def unit_dir(env: dict[str, str] | None = None) -> Path:
    """Where systemd looks for the user's own units: ``$XDG_CONFIG_HOME/systemd/user``."""
    env = os.environ if env is None else env
    base = env.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "systemd" / "user"


def unit_path(home: Home, env: dict[str, str] | None = None) -> Path:
    return unit_dir(env) / unit_name(home)


def _quote(value: str) -> str:
    """A value for a unit file line: C-style escapes in double quotes, ``%`` doubled (specifiers);
    an ``ExecStart`` word also doubles ``$`` (variables are expanded there)."""
    if "\n" in value:
        from ..core.errors import UsageError

        raise UsageError(f"cannot write a unit for a value with a newline: {value!r}")
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return f'"{escaped}"'


def unit_text(home: Home, env: dict[str, str] | None = None, python: str | None = None) -> str:
    """The unit file's text for ``home``, with the caller's ``PATH`` and interpreter."""
    env = os.environ if env is None else env
    python = python or sys.executable
    package_parent = str(Path(__file__).resolve().parents[2])
    pythonpath = package_parent + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    lines = [
        "# Written by `tsm startup`; `tsm unstartup` removes it.",
        "[Unit]",
        f"Description=tsm_notebook daemon for {home.root}",
        "",
        "[Service]",
        "Type=simple",
        f"Environment={_quote('TSM_HOME=' + str(home.root))}",
        f"Environment={_quote('PATH=' + env.get('PATH', os.defpath))}",
        f"Environment={_quote('PYTHONPATH=' + pythonpath)}",
        "ExecStart=" + " ".join(_quote(a).replace("$", "$$") for a in
                                (python, "-m", "tsm_notebook.engine", "--home", str(home.root), "--foreground", "--resurrect")),
        # SIGTERM to the daemon alone: it stops its processes in order itself, then systemd
        # kills what is left of the cgroup
        "KillMode=mixed",
        "TimeoutStopSec=60",
        "Restart=on-failure",
        "RestartSec=2",
        "",
        "[Install]",
        "WantedBy=default.target",
        "",
    ]
    return "\n".join(lines)


def instructions(home: Home, path: Path) -> str:
    """What to run after the unit is written."""
    user = os.environ.get("USER") or os.environ.get("LOGNAME") or "$USER"
    name = unit_name(home)
    return (
        f"Wrote {path}\n"
        "Now run:\n"
        f"  systemctl --user daemon-reload\n"
        f"  systemctl --user enable {name}     # start it at login\n"
        f"  loginctl enable-linger {user}       # ... and at boot, without a login\n"
        "It resurrects the list `tsm save` wrote: run `tsm save` whenever the list changes.\n"
        f"(`tsm startup` does not start it now: a daemon may already be running for {home.root})"
    )


def install(home: Home, env: dict[str, str] | None = None) -> Path:
    """Write the unit (atomically); return its path."""
    path = unit_path(home, env)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(unit_text(home, env))
    os.replace(tmp, path)
    return path


def uninstall(home: Home, env: dict[str, str] | None = None) -> Path | None:
    """Remove the unit; its path, or None when there was none."""
    path = unit_path(home, env)
    try:
        path.unlink()
    except FileNotFoundError:
        return None
    return path
