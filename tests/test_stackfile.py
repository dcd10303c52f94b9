"""Reading stack files: every key checked as `tsm start` checks its option, mistakes named by file,
line and key, dependencies ordered, environments and ${VAR} applied. Pure: nothing is started."""

from __future__ import annotations

import json
import textwrap

import pytest

from conftest import PY
from tsm_notebook.client.commands import convert, load_stack
from tsm_notebook.client.stackspec import option_keys
from tsm_notebook.core.errors import UsageError


def load(tmp_path, text: str, name: str = "tsm.toml", **kw):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return load_stack(str(path), **kw)


def error(tmp_path, text: str, **kw) -> str:
    with pytest.raises(UsageError) as exc:
        load(tmp_path, text, **kw)
    return exc.value.message


def test_every_start_option_is_a_key():
    keys = option_keys()
    for key in ("port", "cwd", "env", "env_file", "kill_timeout", "max_memory", "autorestart", "log_compress", "time"):
        assert key in keys
    assert "name" not in keys and "no_autorestart" not in keys


def test_order_instances_and_readiness(tmp_path):
    st = load(tmp_path, f"""\
        [web]
        argv = ["{PY}", "-m", "http.server"]
        port = 8000
        instances = 2
        depends_on = ["api"]
        [api]
        cmd = "{PY} -m http.server $PORT"
        port = "9000+"
        depends_on = ["db"]
        ready = "http://127.0.0.1:$PORT/health"
        [db]
        argv = ["{PY}", "-c", "pass"]
        ready = "exit"
        kill_timeout = 3
        """)
    assert st.name == tmp_path.name and st.order == ["db", "api", "web"]
    web = st.apps["web"].specs
    assert [(s.name, s.port, s.env["TSM_INSTANCE"]) for s in web] == [("web", 8000, "0"), ("web", 8001, "1")]
    assert web[0].stack == st.name and web[0].app == "web" and web[0].depends_on == ["api"] and web[0].ready == "port"
    db = st.apps["db"].specs[0]
    assert db.autorestart is False and db.kill_timeout == 3.0 and db.ready == "exit"  # a one-shot job
    assert st.closure(["api"]) == ["db", "api"]


def test_environments_and_variables(tmp_path):
    text = f"""\
        name = "shop"
        [env]
        LEVEL = "info"
        [env.production]
        LEVEL = "warning"
        [env.production.api]
        instances = 3
        env = {{ WORKERS = "8" }}
        [api]
        argv = ["{PY}", "-c", "pass", "${{DB_URL}}", "${{MISSING:-fallback}}", "${{PORT}}"]
        env = {{ WORKERS = "2" }}
        """
    st = load(tmp_path, text, environ={"DB_URL": "redis://db", "PATH": "/usr/bin:/bin"})
    spec = st.apps["api"].specs[0]
    assert st.name == "shop" and spec.argv[-3:] == ["redis://db", "fallback", "${PORT}"]
    assert spec.env == {"LEVEL": "info", "WORKERS": "2"}
    st = load(tmp_path, text, env_name="production", environ={"DB_URL": "x", "PATH": "/usr/bin:/bin"})
    assert st.apps["api"].instances == 3 and st.apps["api"].specs[2].env["WORKERS"] == "8"
    assert st.apps["api"].specs[0].env["LEVEL"] == "warning"
    assert "no environment 'staging' (environments: production)" in error(tmp_path, text, env_name="staging", environ={"DB_URL": "x"})
    msg = error(tmp_path, text, environ={"PATH": "/usr/bin:/bin"})
    assert msg.startswith("tsm.toml:10: api.argv: ${DB_URL} is not set") or msg.endswith("${DB_URL:-value}"), msg


@pytest.mark.parametrize("body, expected", [
    ('[a]\ncmd = "true"\ndepends_on = ["b"]\n[b]\ncmd = "true"\ndepends_on = ["a"]\n',
     "tsm.toml:3: a.depends_on: dependency cycle: a -> b -> a"),
    ('[a]\ncmd = "true"\ndepends_on = ["nope"]\n', "tsm.toml:3: a.depends_on: no app named 'nope' (apps: a)"),
    ('[a]\ncmd = "true"\nprot = 80\n', "tsm.toml:3: a.prot: unknown option: did you mean 'port'?"),
    ('[a]\ncmd = "true"\n\nkill_timeout = "3000"\n', "tsm.toml:4: a.kill_timeout: '3000' needs a unit"),
    ('[a]\ncmd = "true"\nport = "x"\n', "tsm.toml:3: a.port: invalid port 'x'"),
    ('[a]\ncmd = "true"\ncwd = "nowhere"\n', "tsm.toml:3: a.cwd: cwd '"),
    ('[a]\ncmd = "no-such-program-here"\n', "tsm.toml:2: a.cmd: command not found: no-such-program-here"),
    ('[a]\ncmd = "true"\ninstances = 0\n', "tsm.toml:3: a.instances: invalid count '0'"),
    ('[a]\ncmd = "true"\nready = "sometimes"\n', "tsm.toml:3: a.ready: invalid readiness 'sometimes'"),
    ('[a]\ncmd = "true"\nready = "exit"\nautorestart = true\n', "tsm.toml:4: a.autorestart: a one-shot job"),
    ('[a]\ncmd = "true"\nmax_memory = true\n', "tsm.toml:3: a.max_memory: expected a value"),
    ('[a]\ncmd = "true"\nname = "b"\n', "tsm.toml:3: a.name: an app's name is its table's name"),
    ('[a]\ncmd = "true"\n[b\n', "tsm.toml:3: invalid TOML"),
    ('version = 3\n[a]\ncmd = "true"\n', "tsm.toml:1: version: unknown top-level key"),
    ('[a]\nport = 80\n', "tsm.toml:1: a: give the command as cmd"),
])  # fmt: skip
def test_mistakes_name_file_line_and_key(tmp_path, monkeypatch, body, expected):
    monkeypatch.chdir(tmp_path)
    assert error(tmp_path, body).startswith(expected), error(tmp_path, body)


def test_procfile_and_ecosystem_conventions(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("A=1\n")
    (tmp_path / "Procfile").write_text(f"web: {PY} -m http.server $PORT\nworker: {PY} -c pass\n")
    st = load_stack("Procfile", environ={"PORT": "6000", "PATH": "/usr/bin:/bin"})
    web, worker = st.apps["web"].specs[0], st.apps["worker"].specs[0]
    assert (web.port, web.port_search, web.ready, web.env) == (6000, True, "port", {"A": "1"})
    assert worker.port is None and worker.ready == "online"
    toml = convert("Procfile")
    (tmp_path / "tsm.toml").write_text(toml)
    assert load_stack("tsm.toml", environ={"PORT": "6000"}).order == ["web", "worker"]

    (tmp_path / "ecosystem.json").write_text(json.dumps({"apps": [{"name": "w", "script": PY, "args": "-c pass",
                                                                    "restart_delay": 250, "env_production": {"X": "2"}}]}))
    st = load_stack("ecosystem.json", env_name="production")
    spec = st.apps["w"].specs[0]
    assert spec.restart_delay == 0.25 and spec.env["X"] == "2" and spec.argv[-2:] == ["-c", "pass"]
    with pytest.raises(UsageError, match=r"Procfile:2: expected 'name: command'"):
        (tmp_path / "Procfile").write_text("web: x\nnot a process line\n")
        load_stack("Procfile")


def test_progress_lines_and_terminal_view():
    import io

    from tsm_notebook.cli.stackview import Progress, ls_grouped
    from tsm_notebook.client.stack import AppProgress, StackRun

    apps = [AppProgress("db", "port"), AppProgress("api", "port", ["db"])]
    out = io.StringIO()
    run = StackRun("shop", apps, Progress(out, tty=False))
    run.set(apps[0], "starting")
    apps[0].processes, apps[0].elapsed = ["db-6390"], 0.25
    run.set(apps[0], "ready", "port 6390 accepts")
    run.set(apps[1], "failed", "not ready after 1s")
    assert out.getvalue().splitlines() == ["+ db             ready      port 6390 accepts (0.25s)  db-6390",
                                           "! api            failed     not ready after 1s"]
    tty = io.StringIO()
    run = StackRun("shop", apps, Progress(tty, tty=True))
    run.set(apps[0], "ready")
    run.set(apps[1], "ready")
    assert tty.getvalue().count("\x1b[2K") == 4 and tty.getvalue().count("\x1b[2F") == 1  # redrawn in place

    rows = [{"tsm_id": 0, "name": "solo", "status": "online", "stack": None},
            {"tsm_id": 1, "name": "db-1", "status": "online", "stack": "shop"},
            {"tsm_id": 2, "name": "api-2", "status": "stopped", "stack": "shop"}]
    text = ls_grouped(rows)
    assert text.index("stack shop: 1/2 online") < text.index("db-1") < text.index("not in a stack") < text.index("solo")
