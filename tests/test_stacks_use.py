"""Stacks used as a demanding user uses them: Ctrl-C in the middle of `tsm up`, a kernel interrupt
while a notebook waits on a bring-up, the same bring-up started twice from one process, ports
that collide between apps. Real daemon, real children (stdlib HTTP servers), the real `tsm`
command line and a real kernel."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import PY, accepts, free_port, wait_for

#: a server that listens only once the file GATE exists: its readiness is in the test's hands
GATED = textwrap.dedent("""\
    import os, sys, time, http.server
    gate, port = sys.argv[1], int(sys.argv[2])
    while not os.path.exists(gate):
        time.sleep(0.02)
    http.server.ThreadingHTTPServer(("127.0.0.1", port), http.server.SimpleHTTPRequestHandler).serve_forever()
    """)


def gated_stack(tmp_path, name: str = "gated") -> tuple:
    """db (ready at once) <- api (ready once ``gate`` exists) <- web; returns (file, gate, ports)."""
    db, api, web = free_port(), free_port(), free_port()
    (tmp_path / "gated.py").write_text(GATED)
    gate = tmp_path / "gate"
    file = tmp_path / "tsm.toml"
    file.write_text(textwrap.dedent(f"""\
        name = "{name}"
        [db]
        argv = ["{PY}", "-m", "http.server", "{db}", "--bind", "127.0.0.1"]
        port = {db}
        [api]
        argv = ["{PY}", "gated.py", "{gate}", "{api}"]
        port = {api}
        depends_on = ["db"]
        ready_timeout = "60s"
        [web]
        argv = ["{PY}", "-m", "http.server", "{web}", "--bind", "127.0.0.1"]
        port = {web}
        depends_on = ["api"]
        """))
    return file, gate, (db, api, web)


def rows(tsm) -> dict[str, dict]:
    return {r["name"]: r for r in tsm.call("ls", all=True)}


def online(tsm, name: str) -> bool:
    r = rows(tsm).get(name)
    return bool(r and r["status"] == "online")


def test_ctrl_c_during_up_ends_cleanly_and_up_again_continues(tsm, tmp_path):
    file, gate, (db, api, web) = gated_stack(tmp_path)
    p = subprocess.Popen([sys.executable, "-m", "tsm_notebook", "up", str(file)], env=tsm.env, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        wait_for(lambda: online(tsm, f"api-{api}"), 30, message="api started, waiting on its port")
        p.send_signal(signal.SIGINT)  # what Ctrl-C sends
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 130, out + err
    assert "Traceback" not in err
    assert "bring-up interrupted" in err and "up: db" in err and "not finished: api" in err and "not started: web" in err, err
    assert "tsm up` again continues" in err
    have = rows(tsm)
    assert have[f"db-{db}"]["status"] == "online" and have[f"api-{api}"]["status"] == "online"
    assert f"web-{web}" not in have  # nothing started after the interrupt
    evs = json.loads(tsm.run("events", "--json", check=True).stdout)
    assert not [e for e in evs if e["event"] == "ready" and e["name"] == f"api-{api}"]

    gate.touch()
    r = tsm.run("up", str(file), timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert accepts(web)
    assert len([n for n in rows(tsm) if n.startswith("api-")]) == 1


def test_a_second_up_of_the_same_stack_replaces_the_first(tsm, tmp_path):
    import tsm_notebook as api_

    file, gate, (db, api, web) = gated_stack(tmp_path)
    first = api_.up(str(file), home=tsm.home)
    wait_for(lambda: dict((a["name"], a["state"]) for a in first.apps)["api"] == "checking", 30,
             message="api checking")
    second = api_.up(str(file), home=tsm.home)  # the cell run again
    wait_for(lambda: first.done, 30, message="the first run to settle")
    assert first.error and "replaced by a new up of stack gated" in first.error, first.error
    states = dict((a["name"], a["state"]) for a in first.apps)
    assert states == {"db": "ready", "api": "interrupted", "web": "skipped"}, states
    gate.touch()
    second.wait(60)
    assert [(a["name"], a["state"]) for a in second.apps][2] == ("web", "ready")
    assert sorted(n.split("-")[0] for n in rows(tsm)) == ["api", "db", "web"]


def test_two_ups_back_to_back_do_not_race(tsm, tmp_path):
    import tsm_notebook as api_

    file, gate, (db, api, web) = gated_stack(tmp_path)
    gate.touch()
    first = api_.up(str(file), home=tsm.home)
    second = api_.up(str(file), home=tsm.home)
    second.wait(60)
    first.run.done.wait(60)
    assert first.error is None or "replaced by a new up" in first.error, first.error
    assert sorted(rows(tsm)) == sorted([f"db-{db}", f"api-{api}", f"web-{web}"])


def test_ports_colliding_between_apps_are_refused(tsm, tmp_path):
    a, b = free_port(), free_port()
    file = tmp_path / "tsm.toml"
    file.write_text(textwrap.dedent(f"""\
        [a]
        argv = ["{PY}", "-m", "http.server", "{a}"]
        port = {a}
        [b]
        argv = ["{PY}", "-m", "http.server", "{a}"]
        port = {a}
        """))
    r = tsm.run("up", str(file))
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"tsm.toml:6: b.port: port {a} is also a's (line 3): give each app its own port" in r.stderr, r.stderr
    # instances of a "P+" port take P, P+1, ...: another app on P+1 collides with the second one
    file.write_text(textwrap.dedent(f"""\
        [web]
        cmd = "{PY} -m http.server $PORT"
        port = "{b}+"
        instances = 2
        [admin]
        cmd = "{PY} -m http.server $PORT"
        port = {b + 1}
        """))
    r = tsm.run("up", str(file))
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"tsm.toml:7: admin.port: port {b + 1} is also web's (line 3): give each app its own port" in r.stderr, r.stderr
    assert tsm.call("ls", all=True) == []


@pytest.mark.notebook
def test_a_kernel_interrupt_while_waiting_stops_the_bring_up_and_the_kernel_goes_on(tsm, tmp_path):
    from jupyter_client.manager import start_new_kernel

    file, gate, (db, api, web) = gated_stack(tmp_path)
    km, kc = start_new_kernel(kernel_name="python3", env=tsm.env, cwd=str(tmp_path))

    def run(code: str, interrupt_when=None, timeout: float = 60) -> tuple[str, str | None]:
        """Execute ``code``; interrupt the kernel once ``interrupt_when()`` is true. (stdout, error name)."""
        msg_id, out, error, sent = kc.execute(code), [], None, False
        deadline = time.monotonic() + timeout
        while True:
            if interrupt_when is not None and not sent and interrupt_when():
                km.interrupt_kernel()
                sent = True
            try:
                m = kc.get_iopub_msg(timeout=0.05)
            except queue.Empty:
                assert time.monotonic() < deadline, f"cell did not finish: {code!r} {out}"
                continue
            if m["parent_header"].get("msg_id") != msg_id:
                continue
            if m["msg_type"] == "stream":
                out.append(m["content"]["text"])
            elif m["msg_type"] == "error":
                error = m["content"]["ename"]
            elif m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
                return "".join(out), error

    try:
        assert run("%load_ext tsm_notebook") == ("", None)
        assert run("st = %tsm up") == ("", None)  # returns at once: the bring-up runs on
        _, error = run("st.wait(60)", interrupt_when=lambda: online(tsm, f"api-{api}"))
        assert error == "KeyboardInterrupt"
        out, error = run("print(st.done, [(a['name'], a['state']) for a in st.apps])\nprint(st.error)")
        assert error is None and out.startswith("True [('db', 'ready'), ('api', 'interrupted'), ('web', 'skipped')]"), out
        assert "bring-up interrupted" in out
        assert f"web-{web}" not in rows(tsm)
        gate.touch()
        out, error = run("st = %tsm up\nst.wait(60)\nprint([(a['name'], a['state']) for a in st.apps])")
        assert error is None and "('web', 'ready')" in out, out
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_up_says_what_it_removed(tsm, tmp_path):
    one, two = free_port(), free_port()
    file = tmp_path / "tsm.toml"
    apps = f"""\
        [one]
        argv = ["{PY}", "-m", "http.server", "{one}", "--bind", "127.0.0.1"]
        port = {one}
        """
    file.write_text(textwrap.dedent(apps + f"""\
        [two]
        cmd = "{PY} -m http.server $PORT --bind 127.0.0.1"
        port = {two}
        """))
    tsm.run("up", str(file), check=True)
    file.write_text(textwrap.dedent(apps))
    r = tsm.run("up", str(file), check=True)
    assert f"x two-{two}" in r.stdout and "removed    no longer in the file" in r.stdout, r.stdout
    assert sorted(rows(tsm)) == [f"one-{one}"]


def test_up_after_save_and_resurrect_leaves_the_stack_alone(tsm, tmp_path):
    fixed, searched = free_port(), free_port()
    file = tmp_path / "tsm.toml"
    file.write_text(textwrap.dedent(f"""\
        [db]
        argv = ["{PY}", "-m", "http.server", "{fixed}", "--bind", "127.0.0.1"]
        port = {fixed}
        [web]
        cmd = "{PY} -m http.server $PORT --bind 127.0.0.1"
        port = "{searched}+"
        depends_on = ["db"]
        """))
    tsm.run("up", str(file), check=True)
    tsm.run("save", check=True)
    tsm.run("kill", check=True)
    tsm.run("resurrect", check=True)
    before = {n: (r["pid"], r["restarts"]) for n, r in rows(tsm).items()}
    r = tsm.run("up", str(file), check=True)
    assert [line.split()[:3] for line in r.stdout.splitlines()[1:]] == [["=", "db", "unchanged"], ["=", "web", "unchanged"]], r.stdout
    assert {n: (r["pid"], r["restarts"]) for n, r in rows(tsm).items()} == before


def test_start_of_a_stack_file_takes_env_and_apps_and_refuses_the_rest(tsm, tmp_path):
    port = free_port()
    (tmp_path / "mode.py").write_text(textwrap.dedent("""\
        import os, sys, http.server
        print("mode", os.environ["MODE"], flush=True)
        http.server.test(port=int(os.environ["PORT"]), bind="127.0.0.1")
        """))
    file = tmp_path / "tsm.toml"
    file.write_text(textwrap.dedent(f"""\
        name = "pm2like"
        [env]
        MODE = "dev"
        [env.production]
        MODE = "prod"
        [web]
        argv = ["{PY}", "mode.py"]
        port = {port}
        [other]
        argv = ["{PY}", "-c", "import time; time.sleep(600)"]
        """))
    for args in (("--port", "9"), ("-e", "A=B"), ("--env", "production", "--env", "staging")):
        r = tsm.run("start", str(file), *args)
        assert r.returncode == 2 and ("does not apply" in r.stderr or "--env" in r.stderr), r.stderr
    assert tsm.call("ls", all=True) == []
    r = tsm.run("start", str(file), "web", "--env", "production")  # pm2 start ecosystem.json --env production
    assert r.returncode == 0, r.stdout + r.stderr
    assert sorted(rows(tsm)) == [f"web-{port}"]
    wait_for(lambda: "mode prod" in tsm.run("logs", f"web-{port}", "--out").stdout, 10, message="the production MODE")


def test_a_syntax_error_at_the_end_of_the_file_names_its_line(tsm, tmp_path):
    file = tmp_path / "tsm.toml"
    file.write_text('[a]\ncmd = "sleep 100"\nready = [\n')
    r = tsm.run("up", str(file))
    assert r.returncode == 2 and r.stderr.startswith("tsm: ") and "tsm.toml:3: invalid TOML:" in r.stderr, r.stderr
    assert "end of document" not in r.stderr and tsm.call("ls", all=True) == []


def test_stop_of_a_stack_stops_dependants_first(tsm, tmp_path):
    file, gate, (db, api, web) = gated_stack(tmp_path, name="chain")
    gate.touch()
    tsm.run("up", str(file), check=True)
    plain = free_port()  # not in the stack: left alone, and stopped by `stop all` with the rest
    tsm.run("start", f"{PY} -m http.server {plain} --bind 127.0.0.1", "--name", "plain", check=True)
    mark = max(e["id"] for e in json.loads(tsm.run("events", "--json", check=True).stdout))
    r = tsm.run("stop", "stack:chain")
    assert r.returncode == 0, r.stderr
    evs = [e for e in json.loads(tsm.run("events", "--json", check=True).stdout) if e["id"] > mark]
    order = [e["name"].split("-")[0] for e in sorted(evs, key=lambda e: e["id"]) if e["event"] == "stop"]
    assert order == ["web", "api", "db"], order
    assert [r["status"] for n, r in rows(tsm).items() if n.startswith("plain")] == ["online"]
    tsm.run("up", str(file), check=True)
    r = tsm.run("stop", "all")
    assert r.returncode == 0 and all(row["status"] == "stopped" for row in rows(tsm).values()), r.stderr


def test_up_of_an_app_the_file_does_not_have_is_bad_input(tsm, tmp_path):
    file, gate, ports = gated_stack(tmp_path)
    r = tsm.run("up", str(file), "apii")
    assert r.returncode == 2 and r.stdout == "", r.stdout + r.stderr
    assert r.stderr.startswith("tsm: ") and "no app named 'apii' (apps: db, api, web)" in r.stderr, r.stderr
    assert tsm.call("ls", all=True) == []


UNHEALTHY = textwrap.dedent("""\
    import http.server, os
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            print("health asked", flush=True)
            self.send_response(503)
            self.end_headers()
        def log_message(self, *a):
            pass
    http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
    """)


def test_a_health_check_that_never_passes_says_what_it_answered_and_is_not_hammered(tsm, tmp_path):
    port = free_port()
    (tmp_path / "unhealthy.py").write_text(UNHEALTHY)
    file = tmp_path / "tsm.toml"
    file.write_text(textwrap.dedent(f"""\
        [api]
        argv = ["{PY}", "unhealthy.py"]
        port = {port}
        ready = "http://127.0.0.1:$PORT/health"
        ready_timeout = "2s"
        """))
    r = tsm.run("up", str(file))
    assert r.returncode == 1, r.stdout + r.stderr
    assert "not ready after 2s (waited for http://127.0.0.1:" in r.stderr and "last answer: 503 Service Unavailable" in r.stderr, r.stderr
    asked = tsm.run("logs", f"api-{port}", "--out", "--lines", "10000").stdout.count("health asked")
    assert 1 <= asked <= 40, asked  # about ten a second once it is clearly not ready (it was ~70)


def test_down_while_up_is_still_going_stops_the_bring_up_first(tsm, tmp_path):
    import tsm_notebook as api_

    file, gate, (db, api, web) = gated_stack(tmp_path, name="halfway")
    going = api_.up(str(file), home=tsm.home)
    wait_for(lambda: dict((a["name"], a["state"]) for a in going.apps)["api"] == "checking", 30, message="api checking")
    down = api_.down("halfway", home=tsm.home)
    assert going.done and "stopped by a down of stack halfway" in going.error, going.error
    assert [(a["name"], a["state"]) for a in going.apps] == [("db", "ready"), ("api", "interrupted"), ("web", "skipped")]
    assert [(a["name"], a["state"]) for a in down.apps] == [("api", "stopped"), ("db", "stopped")]
    gate.touch()  # were the bring-up still going, web would start now
    assert all(r["status"] == "stopped" for r in rows(tsm).values()) and f"web-{web}" not in rows(tsm)
