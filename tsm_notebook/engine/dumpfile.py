"""``dump.json``, written by ``tsm save`` and read by ``tsm resurrect``, with a backup.

The previous dump is kept as ``dump.json.bak`` (hard-linked before the new one replaces it), so a
save interrupted or a dump damaged later never loses the last good list; resurrect falls back to
the backup and says so.
"""

from __future__ import annotations

import json
import os
from typing import Any

from ..core.errors import UsageError
from ..core.paths import Home, write_json_atomic


def backup_path(home: Home):
    return home.dump_file.with_name(home.dump_file.name + ".bak")


def write_dump(home: Home, data: dict[str, Any]) -> None:
    """Replace dump.json atomically, keeping the previous readable one as dump.json.bak."""
    bak = backup_path(home)
    if _load(home.dump_file)[0] is not None:
        tmp = bak.with_name(bak.name + ".tmp")
        try:
            tmp.unlink(missing_ok=True)
            os.link(home.dump_file, tmp, follow_symlinks=False)
            os.replace(tmp, bak)
        except OSError:
            pass
    write_json_atomic(home.dump_file, data, mode=0o600)


def _load(path) -> tuple[list | None, str | None]:
    """(entries, None) or (None, why not)."""
    try:
        if os.path.islink(path):
            return None, "is a symlink"
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None, "does not exist"
    except (OSError, ValueError) as exc:
        return None, f"cannot be read ({exc.__class__.__name__}: {exc})"
    if not isinstance(data, dict) or not isinstance(data.get("processes"), list):
        return None, "has no list of processes"
    return data["processes"], None


def read_dump(home: Home) -> tuple[list, str | None]:
    """The entries to resurrect and a note when they came from the backup; raise UsageError if
    neither file is usable."""
    items, why = _load(home.dump_file)
    if items is not None:
        return items, None
    bak = backup_path(home)
    items, why_bak = _load(bak)
    if items is not None:
        return items, f"{home.dump_file} {why}: resurrected from the backup {bak}"
    if why == "does not exist" and why_bak == "does not exist":
        raise UsageError(f"nothing to resurrect: {home.dump_file} does not exist (run `tsm save` first)")
    raise UsageError(f"cannot resurrect: {home.dump_file} {why}, and its backup {bak} {why_bak}")
