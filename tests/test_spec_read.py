"""Launch specs read back from disk or the wire are input (``LaunchSpec.from_dict``), and the
names and types ``build_spec`` derives where tests/test_spec.py does not look: a ``sh -c`` argv,
an interpreter the project does not know."""

from __future__ import annotations

import pytest

from tsm_notebook.core.errors import UsageError
from tsm_notebook.core.spec import LaunchSpec, build_spec


@pytest.fixture
def kw(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for program in ("sleep", "runner"):
        exe = bin_dir / program
        exe.write_text("#!/bin/sh\nexit 0\n")
        exe.chmod(0o755)
    project = tmp_path / "project"
    project.mkdir()
    (project / "app.py").write_text("print('hi')\n")
    (project / "src").mkdir()
    (project / "lib").mkdir()
    return {"base_cwd": str(project), "path_env": str(bin_dir)}


def test_triggers_and_hooks_round_trip(kw):
    spec = build_spec(argv=["sleep", "1"], watch=["src", "lib"], watch_ignore="*.tmp", cron_restart="0 * * * *",
                      on_crash="echo crashed", **kw)
    again = LaunchSpec.from_dict(spec.to_dict())
    assert again == spec
    project = kw["base_cwd"]
    assert (again.watch, again.watch_ignore, again.cron_restart, again.on_crash) == (
        [f"{project}/src", f"{project}/lib"], ["*.tmp"], "0 * * * *", "echo crashed")


@pytest.mark.parametrize("key, value, says", [
    ("watch", "src", "watch must be a list of strings"),
    ("watch", [1], "watch must be a list of strings"),
    ("watch_ignore", ["*.tmp", None], "watch_ignore must be a list of strings"),
    ("cron_restart", 5, "cron_restart must be a string"),
    ("cron", ["* * * * *"], "cron must be a string"),
    ("on_crash", {"sh": "x"}, "on_crash must be a string"),
    ("on_stop", 1, "on_stop must be a string"),
])
def test_triggers_and_hooks_of_the_wrong_type_are_refused(kw, key, value, says):
    data = build_spec(argv=["sleep", "1"], **kw).to_dict()
    data[key] = value
    with pytest.raises(UsageError, match=f"^invalid launch spec: {says}$"):
        LaunchSpec.from_dict(data)


def test_a_sh_c_argv_is_named_after_the_program_it_runs(kw):
    spec = build_spec(argv=["/bin/sh", "-c", "cd / && exec sleep 60"], **kw)
    assert spec.shell is False and spec.name == "sleep"


def test_an_unknown_interpreter_is_kept_and_the_type_read_from_the_script(kw):
    runner = kw["path_env"] + "/runner"
    spec = build_spec(argv=["app.py"], interpreter=runner, **kw)
    assert spec.argv == [runner, "app.py"]
    assert (spec.type, spec.interpreter) == ("python", runner)
