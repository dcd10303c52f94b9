"""Stacks across hosts: apps of one tsm.toml on this machine and on two "hosts" (real sshd on
127.0.0.2 and 127.0.0.3, each with a remote TSM home on a disk only that server sees), brought up
in dependency order across them, re-run, changed, stopped; and the failures: an unknown host, a
host that does not answer."""

from __future__ import annotations

import json
import os
import socket
import textwrap

import pytest

from conftest import PY, free_port, one_line_usage_error
from sshd import have_private_homes, have_sshd

needs_hosts = pytest.mark.skipif((not have_sshd() or not have_private_homes()) and not os.environ.get("CI"),
                                 reason="needs openssh-server, root and mount namespaces (make test installs sshd)")

# a server that says it is up only once its dependency's port accepts (it checks on its own machine)
SERVE = textwrap.dedent('''
    import os, socket, sys, time
    from http.server import BaseHTTPRequestHandler, HTTPServer
    need = int(os.environ["NEEDS_PORT"]) if os.environ.get("NEEDS_PORT") else None
    while need is not None:
        try:
            socket.create_connection(("127.0.0.1", need), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.05)
    class H(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
        def log_message(self, *a):
            pass
    server = HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H)
    print("serving on", os.environ["PORT"], "from", os.getcwd(), flush=True)
    server.serve_forever()
''')
SLEEP = [PY, "-c", "import time; time.sleep(600)"]


def _calls(tsm, place: str | None):
    from tsm_notebook.client.remote import client_for

    return client_for(place, home=tsm.home)


def _events(tsm, place: str | None, name: str) -> list[dict]:
    with _calls(tsm, place) as c:
        return c.call("events", target=name)


def _first(events: list[dict], kind: str) -> float:
    return next(e["time"] for e in events if e["event"] == kind)


def _last(events: list[dict], kind: str) -> float:
    return [e["time"] for e in events if e["event"] == kind][-1]


def _row(tsm, place: str | None, name: str) -> dict:
    with _calls(tsm, place) as c:
        return c.call("describe", target=name)[0]


def _stack_file(folder, ports: dict[str, int], script, worker_env: str = "one") -> str:
    q = json.dumps
    return textwrap.dedent(f'''
        name = "span"

        [db]
        argv = [{q(PY)}, {q(str(script))}]
        port = {ports["db"]}

        [api]
        host = "a"
        argv = [{q(PY)}, {q(str(script))}]
        port = {ports["api"]}
        env = {{ NEEDS_PORT = "{ports["db"]}" }}
        depends_on = ["db"]
        ready_timeout = "10s"
        ready = {{ log = "^serving on {ports["api"]}" }}

        [worker]
        host = "b"
        argv = [{q(PY)}, {q(str(script))}]
        port = {ports["worker"]}
        env = {{ NEEDS_PORT = "{ports["api"]}", FLAVOUR = "{worker_env}" }}
        depends_on = ["api"]
        ready = "http://127.0.0.1:$PORT/"
    ''')


@needs_hosts
def test_a_stack_across_two_hosts_comes_up_in_order_reruns_restarts_what_changed_and_goes_down(tsm, private_hosts):
    hosts = private_hosts
    script = hosts.base / "serve.py"
    script.write_text(SERVE)
    ports = {"db": free_port(), "api": free_port(), "worker": free_port()}
    folder = hosts.base / "shop"
    folder.mkdir()
    toml = folder / "tsm.toml"
    toml.write_text(_stack_file(folder, ports, script))

    r = tsm.run("up", str(toml), timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "api@a" in r.stdout and "worker@b" in r.stdout
    assert f"log matched '^serving on {ports['api']}'" in r.stdout  # judged on a, where the log is
    # each app is on its own host: its process belongs to that host's daemon only
    db, api, worker = _row(tsm, None, f"db-{ports['db']}"), _row(tsm, "a", f"api-{ports['api']}"), _row(tsm, "b", f"worker-{ports['worker']}")
    assert {db["status"], api["status"], worker["status"]} == {"online"}
    # the remote apps' specs were built on their hosts: the cwd is the remote user's home there
    assert api["spec"]["cwd"] == str(hosts.servers["a"].user_home)
    assert worker["spec"]["cwd"] == str(hosts.servers["b"].user_home)
    assert db["spec"]["cwd"] == str(folder)
    # and a's logs are on a's own disk: this side does not see them
    assert not os.path.exists(api["out_log"])

    # dependency order across the homes: each starts once what it needs was ready (its history)
    ev_db, ev_api, ev_worker = _events(tsm, None, db["name"]), _events(tsm, "a", api["name"]), _events(tsm, "b", worker["name"])
    assert _first(ev_db, "ready") <= _first(ev_api, "start") and _first(ev_api, "ready") <= _first(ev_worker, "start")
    ready_reasons = [e["reason"] for e in ev_api + ev_worker if e["event"] == "ready"]
    assert ready_reasons == [f"log matched '^serving on {ports['api']}'", f"http://127.0.0.1:{ports['worker']}/ answered 200"]

    # re-run: everything is left alone, on every host
    r = tsm.run("up", str(toml), timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("unchanged") == 3, r.stdout
    assert _row(tsm, "a", api["name"])["pid"] == api["pid"] and _row(tsm, "b", worker["name"])["pid"] == worker["pid"]

    # a changed remote app is restarted there, the rest left alone (through the notebook's API)
    import tsm_notebook as tsm_api

    toml.write_text(_stack_file(folder, ports, script, worker_env="two"))
    run = tsm_api.up(str(toml), home=tsm.home, wait=True)
    states = {a["name"]: (a["state"], a["host"]) for a in run.apps}
    assert states == {"db": ("unchanged", None), "api": ("unchanged", "a"), "worker": ("ready", "b")}
    assert "<th>host</th>" in run._repr_html_() and "<td>b</td>" in run._repr_html_()
    changed = _row(tsm, "b", worker["name"])
    assert changed["pid"] != worker["pid"] and "FLAVOUR" in changed["env_keys"] and changed["status"] == "online"
    assert _row(tsm, "a", api["name"])["pid"] == api["pid"]

    # down: dependants first, each on its own host
    r = tsm.run("down", str(toml), timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert [_row(tsm, p, n)["status"] for p, n in ((None, db["name"]), ("a", api["name"]), ("b", worker["name"]))] == ["stopped"] * 3
    stops = [_last(_events(tsm, p, n), "stop") for p, n in (("b", worker["name"]), ("a", api["name"]), (None, db["name"]))]
    assert stops == sorted(stops)
    lines = [ln.split()[1] for ln in r.stdout.splitlines() if ln.startswith("x ")]
    assert lines == ["worker@b", "api@a", "db"]


def test_an_unknown_host_is_refused_with_the_file_line_key_and_the_hosts(tsm, tmp_path):
    (tsm.home / "config.toml").write_text('[hosts.a]\nssh = "root@127.0.0.2"\n\n[hosts.b]\nssh = "root@127.0.0.3"\n')
    toml = tmp_path / "tsm.toml"
    toml.write_text(f'[db]\nargv = {json.dumps(SLEEP)}\n\n[api]\ncmd = "sleep 600"\nhost = "gpux"\ndepends_on = ["db"]\n')
    r = tsm.run("up", str(toml))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [f"tsm: {toml}:6: api.host: unknown host 'gpux' (the hosts of config.toml: a, b)"]
    assert not (tsm.home / "runtime" / "processes").exists() or not any((tsm.home / "runtime" / "processes").iterdir())
    assert tsm.daemon_pid() is None  # nothing started

    from tsm_notebook.client import commands
    from tsm_notebook.core.errors import UsageError

    with pytest.raises(UsageError) as excinfo:
        commands.load_stack(str(toml), home=tsm.home)
    assert "api.host: unknown host 'gpux'" in one_line_usage_error(excinfo)
    # local is this machine, as no key; an ecosystem file takes the key too; ports clash per host only
    toml.write_text(f'[db]\nargv = {json.dumps(SLEEP)}\nhost = "local"\nport = 7001\n\n[api]\ncmd = "sleep 600"\nhost = "a"\nport = 7001\n')
    st = commands.load_stack(str(toml), home=tsm.home)
    assert (st.apps["db"].host, st.apps["api"].host) == (None, "a")
    assert st.apps["api"].builds[0]["command"] == "sleep 600" and not st.apps["api"].specs
    eco = tmp_path / "ecosystem.json"
    eco.write_text(json.dumps({"apps": [{"name": "w", "script": "sleep", "args": "600", "host": "b"}]}))
    assert commands.load_stack(str(eco), home=tsm.home).apps["w"].host == "b"


@needs_hosts
def test_a_host_that_does_not_answer_fails_its_apps_and_skips_their_dependants_while_the_rest_comes_up(tsm, private_hosts):
    hosts = private_hosts
    hosts.servers["b"].stop()  # refuses connections
    silent = socket.socket()  # c accepts and never speaks: only its timeout ends a wait on it
    silent.bind(("127.0.0.4", 0))
    silent.listen(8)
    c = dict(hosts.entries["a"], ssh="root@127.0.0.4", timeout="8s")
    c["ssh_options"] = [o if o != str(hosts.servers["a"].port) else str(silent.getsockname()[1]) for o in c["ssh_options"]]
    hosts.add("c", c)
    q = json.dumps
    toml = hosts.base / "tsm.toml"
    toml.write_text(textwrap.dedent(f'''
        name = "half"
        [db]
        argv = {q(SLEEP)}
        [api]
        host = "b"
        argv = {q(SLEEP)}
        depends_on = ["db"]
        [web]
        argv = {q(SLEEP)}
        depends_on = ["api"]
        [gpu]
        host = "c"
        argv = {q(SLEEP)}
        [free]
        argv = {q(SLEEP)}
    '''))
    try:
        r = tsm.run("up", str(toml), timeout=60)
        assert r.returncode == 1, r.stdout + r.stderr
        marks = {ln.split()[1]: ln for ln in r.stdout.splitlines()[1:] if ln[:1] in "+!-"}
        assert marks["api@b"].startswith("! ") and "host b (root@127.0.0.3)" in marks["api@b"]
        assert marks["gpu@c"].startswith("! ") and "host c" in marks["gpu@c"]
        assert marks["web"].startswith("- ") and "api did not come up" in marks["web"]
        assert marks["db"].startswith("+ ") and marks["free"].startswith("+ ")
        # nothing waited for c: what needs no host was up before c's timeout ended its wait
        order = [ln.split()[1] for ln in r.stdout.splitlines()[1:] if ln[:1] in "+!"]
        assert order.index("free") < order.index("gpu@c") and order.index("db") < order.index("gpu@c"), r.stdout
        assert "tsm: api failed: host b" in r.stderr
        assert {tsm.row(n)["status"] for n in ("db", "free")} == {"online"}
        assert "web" not in {r["name"] for r in tsm.call("ls", all=True)}

        # down stops what it can reach and says which host it could not
        r = tsm.run("down", str(toml), timeout=60)
        assert r.returncode == 1, r.stdout + r.stderr
        assert {tsm.row(n)["status"] for n in ("db", "free")} == {"stopped"}
        assert "(host b)" in r.stdout and "(host c)" in r.stdout and "its apps were not stopped" in r.stdout
    finally:
        silent.close()
