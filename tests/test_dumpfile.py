"""``dump.json`` and its backup on a real home: each save keeps the previous readable dump, and
resurrect falls back to the backup (saying so) when the dump is a symlink, damaged or gone."""

from __future__ import annotations

import json

import pytest

from tsm_notebook.core.errors import UsageError
from tsm_notebook.core.paths import Home
from tsm_notebook.engine.dumpfile import backup_path, read_dump, write_dump


@pytest.fixture
def home(tmp_path):
    h = Home.resolve(tmp_path / "home")
    h.ensure()
    return h


def entries(n: int) -> dict:
    return {"processes": [{"name": f"p{i}"} for i in range(n)]}


def test_each_save_keeps_the_previous_dump_as_the_backup(home):
    write_dump(home, entries(1))
    assert not backup_path(home).exists()  # nothing to keep yet
    write_dump(home, entries(2))
    assert json.loads(backup_path(home).read_text()) == entries(1)
    assert read_dump(home) == (entries(2)["processes"], None)


@pytest.mark.parametrize("damage, why", [
    ("symlink", "is a symlink"),
    ("garbage", "cannot be read (JSONDecodeError"),
    ("no list", "has no list of processes"),
    ("missing", "does not exist"),
])
def test_a_bad_dump_is_resurrected_from_the_backup_saying_why(home, tmp_path, damage, why):
    write_dump(home, entries(1))
    write_dump(home, entries(2))
    dump = home.dump_file
    dump.unlink()
    if damage == "symlink":
        (tmp_path / "elsewhere.json").write_text(json.dumps(entries(5)))
        dump.symlink_to(tmp_path / "elsewhere.json")
    elif damage == "garbage":
        dump.write_text("{not json")
    elif damage == "no list":
        dump.write_text(json.dumps({"processes": "p1"}))
    items, note = read_dump(home)
    assert items == entries(1)["processes"]
    assert note.startswith(f"{dump} {why}") and note.endswith(f"resurrected from the backup {backup_path(home)}")


def test_a_damaged_save_is_not_kept_as_the_backup(home):
    write_dump(home, entries(1))
    write_dump(home, entries(2))
    home.dump_file.write_text("{not json")
    write_dump(home, entries(3))
    assert json.loads(backup_path(home).read_text()) == entries(1)  # a good backup is not replaced by garbage


def test_nothing_usable_says_which_files_and_why(home):
    with pytest.raises(UsageError, match=r"^nothing to resurrect: .*dump.json does not exist \(run `tsm save` first\)$"):
        read_dump(home)
    home.dump_file.write_text("[]")
    with pytest.raises(UsageError, match=r"^cannot resurrect: .*dump.json has no list of processes, and its backup "
                                         r".*dump.json.bak does not exist$"):
        read_dump(home)
