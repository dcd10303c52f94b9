"""Tests of tsm_notebook.core.spec, cmdline and envfile: from ``tsm start`` options to a validated LaunchSpec.

Pure and fast: real files in tmp_path (scripts, env files, a private PATH directory), no processes.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from conftest import one_line_usage_error
from tsm_notebook.core.errors import UsageError
from tsm_notebook.core.cmdline import (
    base_name,
    classify,
    final_name,
    parse_port,
    port_from_command,
    split_command,
    uses_shell,
)
from tsm_notebook.core.envfile import parse_env_assignments, parse_env_file
from tsm_notebook.core.spec import LaunchSpec, build_spec

MiB = 1024**2


# --------------------------------------------------------------------------- parse_port


@pytest.mark.parametrize(
    "text, expected",
    [
        ("7777", (7777, False)),
        ("8000+", (8000, True)),
        (" 80 ", (80, False)),
        ("1", (1, False)),
        ("65535", (65535, False)),
        ("65535+", (65535, True)),
        (3000, (3000, False)),
    ],
)
def test_parse_port(text, expected):
    assert parse_port(text) == expected


@pytest.mark.parametrize(
    "text, message",
    [
        ("70000", "port 70000 out of range 1-65535"),
        (70000, "port 70000 out of range 1-65535"),
        ("0", "port 0 out of range 1-65535"),
        (0, "port 0 out of range 1-65535"),
        ("0+", "port 0 out of range 1-65535"),
        ("http", "invalid port 'http': use a number 1-65535, or P+ for the first free port from P"),
        ("", "invalid port '': use a number 1-65535, or P+ for the first free port from P"),
        ("-1", "invalid port '-1': use a number 1-65535, or P+ for the first free port from P"),
        ("80++", "invalid port '80++': use a number 1-65535, or P+ for the first free port from P"),
        ("8.5", "invalid port '8.5': use a number 1-65535, or P+ for the first free port from P"),
    ],
)
def test_parse_port_rejects(text, message):
    with pytest.raises(UsageError) as excinfo:
        parse_port(text)
    assert one_line_usage_error(excinfo) == message


# --------------------------------------------------------------------------- port_from_command


@pytest.mark.parametrize(
    "command, expected",
    [
        ("python3 -m http.server 8000", 8000),
        ("python3 -m http.server --bind 127.0.0.1 8001", 8001),
        ("python3 -m http.server -d /srv -p HTTP/1.1 8002", 8002),
        ("python3 -m http.server --directory 2024 8015", 8015),  # 2024 is the directory
        ("python3 -m http.server", None),
        ("python manage.py runserver 8003", 8003),
        ("python manage.py runserver 0.0.0.0:8004", 8004),
        ("python manage.py runserver --noreload 8005", 8005),
        ("python manage.py runserver", None),
        ("uvicorn app:app --port 8006", 8006),
        ("uvicorn app:app --port=8007", 8007),
        ("flask run -p 8008", 8008),
        ("gunicorn -b 0.0.0.0:8009 app:app", 8009),
        ("gunicorn --bind=localhost:8010 app:app", 8010),
        ("caddy file-server --listen :8011", 8011),
        ("server [::1]:8012", 8012),
        ("streamlit run app.py --server.port 8013", 8013),
        ("jupyter lab --ServerApp.port=8014", 8014),
        ("node app.js", None),
        ("sleep 100", None),
        ("celery worker --broker redis://localhost:6379/0", None),  # a URL: where it connects
        ("docker run -p 8080:80 nginx", None),  # host:container, not a plain port
        ("uvicorn app:app --port $PORT", None),
        ("server --port 70000", None),
        ("server --port 0", None),
        ("server --port ²", None),
        ("ssh -p 2222 host", None),  # where ssh connects, not a port it holds
        ("redis-cli -p 6390 monitor", None),
        ("redis-cli --port 6390", None),
        ("psql --port 5432 db", None),
        ("python train.py -p 4", None),  # a count
        ("redis-server --port 6390", 6390),
        ("python -m flask run -p 5001", 5001),
        ("mlflow ui -p 5002", 5002),
        ("npx serve -p 3005", 3005),
        ("npx -y http-server -p 3006", 3006),
        ("poetry run flask run -p 5003", 5003),
        ("cd x && redis-cli -p 6391 monitor", None),
        ("python -c \"print('a:80')\"", None),
        ("app --port 9000 --bind 0.0.0.0:9001", 9000),  # the explicit flag wins
    ],
)
def test_port_from_command(command, expected):
    argv, _ = split_command(command)
    assert port_from_command(argv, command) == expected


@pytest.mark.parametrize(
    "command, expected",
    [
        ("PORT=3000 node app.js", 3000),
        ("cd web && PORT=3001 npm start", 3001),
        ("export PORT=3002; node app.js", 3002),
        ("cd /srv && python3 -m http.server 3003 > log", 3003),
        ("python3 -m http.server 3004 | tee out", 3004),
    ],
)
def test_port_from_shell_command_reads_the_string(command, expected):
    argv, shell = split_command(command)
    assert shell
    assert port_from_command(argv, command) == expected


def test_port_from_env_wrapper_assignment():
    argv = ["env", "PORT=4000", "node", "app.js"]
    assert port_from_command(argv, "env PORT=4000 node app.js") == 4000


# --------------------------------------------------------------------------- uses_shell, split_command


@pytest.mark.parametrize(
    "command, expected",
    [
        ("python app.py", False),
        ("python -c \"print('a;b')\"", False),
        ("python -c 'print(\"$HOME\")'", False),  # $ inside single quotes is literal
        ("echo 'a|b&c>d'", False),
        ("echo a\\;b", False),  # an escaped ; is literal
        ("node server.js --port=3000", False),
        ("uvicorn app:app", False),
        ("printf a#b", False),  # # inside a word is no comment
        ("a | b", True),
        ("a && b", True),
        ("a; b", True),
        ("a > out", True),
        ("a < in", True),
        ("(a)", True),
        ("echo `date`", True),
        ("echo $HOME", True),
        ('echo "$HOME"', True),  # $ and backquote count inside double quotes
        ('echo "`date`"', True),
        ('echo "\\$HOME"', False),  # escaped inside double quotes
        ("ls *.py", True),
        ("ls file?.txt", True),
        ("ls [ab].txt", True),
        ("echo {a,b}", True),
        ("ls ~", True),
        ("a\nb", True),
        ("FOO=1 python app.py", True),
        ("python app.py FOO=1", False),  # only a leading assignment
        ("python app.py # note", True),
        ("cd /srv", True),
        ("exec python app.py", True),
        ("", False),
    ],
)
def test_uses_shell(command, expected):
    assert uses_shell(command) is expected


@pytest.mark.parametrize("command", ["python -c 'print(1)", 'echo "abc', "echo abc\\"])
def test_uses_shell_rejects_unbalanced_quotes(command):
    with pytest.raises(UsageError) as excinfo:
        uses_shell(command)
    assert "invalid command" in one_line_usage_error(excinfo)


@pytest.mark.parametrize(
    "command, expected",
    [
        ("python3 app.py --x 1", (["python3", "app.py", "--x", "1"], False)),
        ("python -c \"print('a;b')\"", (["python", "-c", "print('a;b')"], False)),
        ("sleep 100 &", (["/bin/sh", "-c", "sleep 100 &"], True)),
        ("FOO=1 node app.js", (["/bin/sh", "-c", "FOO=1 node app.js"], True)),
    ],
)
def test_split_command(command, expected):
    assert split_command(command) == expected


@pytest.mark.parametrize("command", ["", "   ", "\t\n", "''"])
def test_split_command_rejects_empty(command):
    with pytest.raises(UsageError) as excinfo:
        split_command(command)
    assert one_line_usage_error(excinfo) == "empty command"


# --------------------------------------------------------------------------- classify


@pytest.mark.parametrize(
    "argv, interpreter, expected",
    [
        (["python", "app.py"], None, ("python", "python")),
        (["python3", "app.py"], None, ("python", "python3")),
        (["/usr/bin/python3.11", "-m", "x"], None, ("python", "/usr/bin/python3.11")),
        (["pypy3", "app.py"], None, ("python", "pypy3")),
        (["node", "app.js"], None, ("node", "node")),
        (["nodejs", "app.js"], None, ("node", "nodejs")),
        (["bash", "run.sh"], None, ("bash", "bash")),
        (["sh", "-c", "x"], None, ("bash", "sh")),
        (["zsh"], None, ("bash", "zsh")),
        (["dash"], None, ("bash", "dash")),
        (["./app.py"], None, ("python", "./app.py")),
        (["./server.mjs"], None, ("node", "./server.mjs")),
        (["lib/index.cjs"], None, ("node", "lib/index.cjs")),
        (["./run.sh"], None, ("bash", "./run.sh")),
        (["sleep", "10"], None, ("other", "")),
        (["npm", "start"], None, ("other", "")),
        (["pythonista"], None, ("other", "")),
        (["env", "FOO=1", "python3", "app.py"], None, ("python", "python3")),
        (["/opt/py/bin/python3", "app.py"], "/opt/py/bin/python3", ("python", "/opt/py/bin/python3")),
        (["/opt/runtime", "app.js"], "/opt/runtime", ("node", "/opt/runtime")),
        (["ruby", "app.rb"], "ruby", ("other", "ruby")),
        (["/bin/sh", "-c", "python3 app.py | tee log"], None, ("python", "python3")),
        (["/bin/sh", "-c", "PORT=1 exec node app.js"], None, ("node", "node")),
        (["/bin/sh", "-c", "cd x && python3 app.py"], None, ("bash", "/bin/sh")),
        (["/bin/sh", "-c", "sleep 1; sleep 2"], None, ("bash", "/bin/sh")),
    ],
)
def test_classify(argv, interpreter, expected):
    assert classify(argv, interpreter) == expected


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    "argv, shell_command, expected",
    [
        (["python3", "app.py"], None, "app"),
        (["python3", "-u", "/srv/web/app.py", "--x"], None, "app"),
        (["python3", "-X", "dev", "train.py"], None, "train"),
        (["python3", "-m", "http.server", "8000"], None, "http.server"),
        (["python3", "-mhttp.server"], None, "http.server"),
        (["python3", "-c", "print(1)"], None, "python3"),
        (["python3"], None, "python3"),
        (["node", "server.mjs"], None, "server"),
        (["node", "-r", "dotenv/config", "index.js"], None, "index"),
        (["node", "-e", "1"], None, "node"),
        (["bash", "-e", "deploy.sh"], None, "deploy"),
        (["bash", "-c", "sleep 1"], None, "bash"),
        (["./worker.py"], None, "worker"),
        (["/usr/bin/sleep", "100"], None, "sleep"),
        (["npm", "run", "dev"], None, "npm"),
        (["env", "A=1", "node", "app.js"], None, "app"),
        (["my tool!"], None, "my-tool"),
        ([".hidden"], None, "hidden"),
        (["123"], None, "process-123"),
        (["???"], None, "process"),
        (["x" * 100], None, "x" * 58),  # leaves room for "-65535"
        (["/bin/sh", "-c", "cd web && npm start"], "cd web && npm start", "npm"),
        (["/bin/sh", "-c", "PORT=1 python3 app.py | tee l"], "PORT=1 python3 app.py | tee l", "app"),
        (["/bin/sh", "-c", "exec node srv.js"], "exec node srv.js", "srv"),
        (["/bin/sh", "-c", "cd /x; export A=1"], "cd /x; export A=1", "sh"),
        (["/bin/sh", "-c", "x"], "while true; do ./job.py; sleep 1; done", "job"),
        (["/bin/sh", "-c", "x"], "if [ -f a ]; then node a.js; fi", "a"),
        (["/bin/sh", "-c", "python3 -m http.server 8000 &"], None, "http.server"),
    ],
)
def test_base_name(argv, shell_command, expected):
    name = base_name(argv, shell_command)
    assert name == expected
    assert final_name(name, 65535)  # always a valid name, even with the longest port


@pytest.mark.parametrize(
    "base, port, expected",
    [
        ("web", 7777, "web-7777"),
        ("web", None, "web"),
        ("web-7777", 7777, "web-7777"),
        ("web-7777", 8000, "web-7777-8000"),
        ("test-pm2", 7777, "test-pm2-7777"),
        ("http.server", 8000, "http.server-8000"),
        ("a@b+c_d", 1, "a@b+c_d-1"),
    ],
)
def test_final_name(base, port, expected):
    assert final_name(base, port) == expected


BAD_NAMES = [
    "../x", "a/b", "", "x" * 65, "bad\x00name", "tab\tname", "bell\x07", "del\x7f",
    ".hidden", "-dash", "42", "a b",
]  # fmt: skip


@pytest.mark.parametrize("bad", BAD_NAMES)
@pytest.mark.parametrize("port", [None, 7777])
def test_final_name_rejects_bad_names(bad, port):
    with pytest.raises(UsageError) as excinfo:
        final_name(bad, port)
    assert one_line_usage_error(excinfo).startswith("invalid name")


def test_final_name_too_long_once_the_port_is_added():
    assert final_name("x" * 64, None) == "x" * 64
    with pytest.raises(UsageError, match="at most 64"):
        final_name("x" * 64, 7777)


# --------------------------------------------------------------------------- env files


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_parse_env_file(tmp_path):
    path = write(
        tmp_path / ".env",
        "# a comment\n"
        "\n"
        "PLAIN=value\n"
        "export EXPORTED=yes\n"
        "SPACED = padded   \n"
        "COMMENTED=abc # trailing comment\n"
        "HASH=a#b\n"
        "EMPTY=\n"
        "EMPTY_COMMENT= # nothing\n"
        "SINGLE='lit $HOME \\n # not a comment'\n"
        'DOUBLE="a\\nb\\tc \\"q\\" back\\\\slash \\x"  # comment\n'
        "URL=postgres://u:p@h:5432/db?x=1\n"
        "EQUALS=a=b=c\n"
        "   INDENTED=1\r\n"
        "_UNDER_9=ok\n"
        "PLAIN=overridden\n",
    )
    assert parse_env_file(path) == {
        "PLAIN": "overridden",
        "EXPORTED": "yes",
        "SPACED": "padded",
        "COMMENTED": "abc",
        "HASH": "a#b",
        "EMPTY": "",
        "EMPTY_COMMENT": "",
        "SINGLE": "lit $HOME \\n # not a comment",
        "DOUBLE": 'a\nb\tc "q" back\\slash \\x',
        "URL": "postgres://u:p@h:5432/db?x=1",
        "EQUALS": "a=b=c",
        "INDENTED": "1",
        "_UNDER_9": "ok",
    }


def test_parse_env_file_is_never_executed(tmp_path):
    marker = tmp_path / "ran"
    path = write(tmp_path / ".env", f"X=$(touch {marker})\nY=`touch {marker}`\n")
    assert parse_env_file(path) == {"X": f"$(touch {marker})", "Y": f"`touch {marker}`"}
    assert not marker.exists()


@pytest.mark.parametrize(
    "text, line",
    [
        ("A=1\nB=2\nnot an assignment\n", 3),
        ("A=1\n=value\n", 2),
        ("1BAD=x\n", 1),
        ("A-B=x\n", 1),
        ("A=1\n\n# c\nB='unterminated\n", 4),
        ('A="unterminated\n', 1),
        ("A='x' trailing\n", 1),
        ('A="x" trailing\n', 1),
        ("export\n", 1),
        ("A B=1\n", 1),
    ],
)
def test_parse_env_file_malformed_names_the_line(tmp_path, text, line):
    path = write(tmp_path / "bad.env", text)
    with pytest.raises(UsageError) as excinfo:
        parse_env_file(path)
    assert one_line_usage_error(excinfo) == f"env file '{path}', line {line}: expected KEY=VALUE"


@pytest.mark.parametrize("kind", ["missing", "directory", "binary"])
def test_parse_env_file_unreadable(tmp_path, kind):
    # tests run as root, where chmod 000 still reads: use a missing file, a directory, bad bytes
    path = tmp_path / "x.env"
    if kind == "directory":
        path.mkdir()
    elif kind == "binary":
        path.write_bytes(b"A=\xff\xfe\n")
    with pytest.raises(UsageError) as excinfo:
        parse_env_file(path)
    message = one_line_usage_error(excinfo)
    assert message.startswith(f"cannot read env file '{path}': ")
    reason = {"missing": "No such file or directory", "directory": "Is a directory", "binary": "not UTF-8"}
    assert reason[kind] in message


@pytest.mark.parametrize(
    "items, expected",
    [
        ([], {}),
        (["A=1"], {"A": "1"}),
        (["A=1", "B=x=y", "A=2"], {"A": "2", "B": "x=y"}),
        (["EMPTY="], {"EMPTY": ""}),
        (["Q='kept'"], {"Q": "'kept'"}),  # the shell already removed quotes: values are literal
        ("ONE=1", {"ONE": "1"}),
        ({"K": "v"}, {"K": "v"}),
    ],
)
def test_parse_env_assignments(items, expected):
    assert parse_env_assignments(items) == expected


@pytest.mark.parametrize("bad", ["NOEQUALS", "=1", "1A=x", "A-B=1", "A B=1", ""])
def test_parse_env_assignments_rejects(bad):
    with pytest.raises(UsageError) as excinfo:
        parse_env_assignments(["OK=1", bad])
    message = one_line_usage_error(excinfo)
    assert message.startswith(f"invalid environment item '{bad}'")


def test_parse_env_assignments_rejects_non_string_values():
    with pytest.raises(UsageError, match="must be a string"):
        parse_env_assignments({"A": 1})


# --------------------------------------------------------------------------- build_spec


@pytest.fixture
def box(tmp_path):
    """A project directory and a private PATH with a few real executables."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for program in ("python3", "node", "bash", "sleep", "npm", "uvicorn"):
        exe = bin_dir / program
        exe.write_text("#!/bin/sh\nexit 0\n")
        exe.chmod(0o755)
    project = tmp_path / "project"
    project.mkdir()
    (project / "app.py").write_text("print('hi')\n")  # no exec bit
    (project / "server.js").write_text("1\n")
    tool = project / "tool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    run = project / "run.py"
    run.write_text("#!/usr/bin/env python3\n")
    run.chmod(0o755)
    (project / "data.txt").write_text("x\n")
    kw = {"base_cwd": str(project), "path_env": str(bin_dir)}
    return {"bin": str(bin_dir), "project": project, "kw": kw}


def test_build_spec_seed_example(box):
    spec = build_spec("python3 -m http.server 7777", name="test-pm2", **box["kw"])
    assert spec.argv == ["python3", "-m", "http.server", "7777"]
    assert (spec.shell, spec.type, spec.interpreter) == (False, "python", "python3")
    assert (spec.name, spec.name_given, spec.port, spec.port_search) == ("test-pm2", True, 7777, False)
    assert spec.cwd == str(box["project"])
    assert final_name(spec.name, spec.port) == "test-pm2-7777"
    assert spec.command == "python3 -m http.server 7777"
    assert (spec.env, spec.env_file) == ({}, "")


def test_build_spec_defaults_are_pm2s(box):
    spec = build_spec("sleep 100", **box["kw"])
    assert spec.autorestart is True
    assert spec.max_restarts == 15
    assert spec.min_uptime == 1.0
    assert spec.restart_delay == 0.0
    assert spec.exp_backoff is None
    assert spec.max_memory is None
    assert spec.kill_timeout == 1.6
    assert spec.stop_signal == "SIGTERM"
    assert (spec.wait_port, spec.time) == (False, False)
    assert (spec.log_max_size, spec.log_retain, spec.log_compress) == (None, None, None)
    assert (spec.name, spec.name_given, spec.type, spec.interpreter) == ("sleep", False, "other", "")


def test_build_spec_from_argv(box):
    spec = build_spec(argv=["sleep", "a b"], **box["kw"])
    assert spec.command == "sleep 'a b'"
    assert spec.argv == ["sleep", "a b"]
    assert spec.shell is False


def test_build_spec_argv_may_end_with_an_empty_argument_but_not_start_with_one(box):
    assert build_spec(argv=["sleep", ""], **box["kw"]).argv[1:] == [""]
    with pytest.raises(UsageError, match="^empty command$"):
        build_spec(argv=["", "sleep"], **box["kw"])


def test_build_spec_shell_command(box):
    spec = build_spec("cd sub && PORT=3000 npm start", **box["kw"])
    assert spec.shell is True
    assert spec.argv == ["/bin/sh", "-c", "cd sub && PORT=3000 npm start"]
    assert (spec.type, spec.interpreter, spec.name, spec.port) == ("bash", "/bin/sh", "npm", 3000)


def test_build_spec_script_without_exec_bit_runs_through_its_interpreter(box):
    spec = build_spec("./app.py --flag", **box["kw"])
    assert spec.argv == ["python3", "./app.py", "--flag"]
    assert (spec.type, spec.interpreter, spec.name) == ("python", "python3", "app")
    # a bare script name in cwd works too, as with `pm2 start app.js`
    assert build_spec("server.js", **box["kw"]).argv == ["node", "server.js"]
    assert build_spec("app.py", **box["kw"]).argv == ["python3", "app.py"]


def test_build_spec_executable_script_runs_directly(box):
    spec = build_spec("./run.py", **box["kw"])
    assert spec.argv == ["./run.py"]
    assert (spec.type, spec.name) == ("python", "run")
    assert build_spec("./tool", **box["kw"]).argv == ["./tool"]


def test_build_spec_interpreter_option(box):
    spec = build_spec("app.py 1", interpreter="python3", **box["kw"])
    assert spec.argv == ["python3", "app.py", "1"]
    assert (spec.type, spec.interpreter, spec.name) == ("python", "python3", "app")
    spec = build_spec("echo $HOME && sleep 1", interpreter="bash", **box["kw"])
    assert spec.argv == ["bash", "-c", "echo $HOME && sleep 1"]
    assert spec.type == "bash"


def test_build_spec_interpreter_errors(box):
    with pytest.raises(UsageError, match=r"^command not found: pythn \(the --interpreter\)$"):
        build_spec("app.py", interpreter="pythn", **box["kw"])
    with pytest.raises(UsageError, match="cannot run a shell command"):
        build_spec("a | b", interpreter="python3", **box["kw"])


@pytest.mark.parametrize("command", ["nosuchprogram --x", "./missing.py", "sub/tool", "data"])
def test_build_spec_command_not_found(box, command):
    with pytest.raises(UsageError) as excinfo:
        build_spec(command, **box["kw"])
    assert one_line_usage_error(excinfo) == f"command not found: {command.split()[0]}"


def test_build_spec_not_executable_and_directory(box):
    with pytest.raises(UsageError, match=r"^cannot run './data.txt': it is not executable$"):
        build_spec("./data.txt", **box["kw"])
    (box["project"] / "sub").mkdir()
    with pytest.raises(UsageError, match="it is a directory"):
        build_spec("./sub", **box["kw"])


def test_build_spec_uses_path_env_not_the_callers_path(box, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UsageError, match="command not found: sleep"):
        build_spec("sleep 1", base_cwd=box["kw"]["base_cwd"], path_env=str(empty))


def test_build_spec_cwd(box):
    sub = box["project"] / "sub"
    sub.mkdir()
    (sub / "w.py").write_text("")
    spec = build_spec("./w.py", cwd="sub", **box["kw"])
    assert spec.cwd == str(sub)
    assert spec.argv == ["python3", "./w.py"]  # the script is found relative to cwd
    assert build_spec("sleep 1", cwd=str(sub), **box["kw"]).cwd == str(sub)
    assert build_spec("sleep 1", cwd="sub/../sub/.", **box["kw"]).cwd == str(sub)


def test_build_spec_missing_cwd(box):
    missing = box["project"] / "nope"
    with pytest.raises(UsageError) as excinfo:
        build_spec("sleep 1", cwd="nope", **box["kw"])
    assert one_line_usage_error(excinfo) == f"cwd '{missing}' does not exist"
    with pytest.raises(UsageError, match="is not a directory"):
        build_spec("sleep 1", cwd="data.txt", **box["kw"])


def test_build_spec_env_file_then_e_values(box):
    write(box["project"] / ".env", "A=from-file\nB=file\nPORT=5000\n")
    spec = build_spec("node server.js", env_file=".env", env=["B=flag", "C=3"], **box["kw"])
    assert spec.env == {"A": "from-file", "B": "flag", "PORT": "5000", "C": "3"}
    assert spec.env_file == str(box["project"] / ".env")
    assert spec.port == 5000  # PORT from the env file, as the command declares none
    assert build_spec("sleep 1", env=None, **box["kw"]).env == {}  # argparse's default for -e


@pytest.mark.parametrize(
    "port, env, command, expected",
    [
        ("9000", ["PORT=5000"], "uvicorn app:app --port 7000", (9000, False)),  # explicit wins
        (None, ["PORT=5000"], "uvicorn app:app --port 7000", (5000, False)),  # then PORT
        (None, [], "uvicorn app:app --port 7000", (7000, False)),  # then the command
        (None, [], "uvicorn app:app", (None, False)),
        ("8000+", [], "uvicorn app:app", (8000, True)),
        (8001, [], "uvicorn app:app", (8001, False)),
    ],
)
def test_build_spec_port_precedence(box, port, env, command, expected):
    spec = build_spec(command, port=port, env=env, **box["kw"])
    assert (spec.port, spec.port_search) == expected


@pytest.mark.parametrize(
    "port, message", [("0", "port 0 out of range 1-65535"), ("70000", "port 70000 out of range 1-65535")]
)
def test_build_spec_bad_port(box, port, message):
    with pytest.raises(UsageError) as excinfo:
        build_spec("sleep 1", port=port, **box["kw"])
    assert one_line_usage_error(excinfo) == message


def test_build_spec_bad_port_in_env(box):
    with pytest.raises(UsageError, match=r"^PORT 'abc' in the environment is not a port 1-65535$"):
        build_spec("sleep 1", env=["PORT=abc"], **box["kw"])


def test_build_spec_env_file_errors_pass_through(box):
    write(box["project"] / "bad.env", "A=1\nB\n")
    with pytest.raises(UsageError, match=r"env file '.*bad.env', line 2: expected KEY=VALUE"):
        build_spec("sleep 1", env_file="bad.env", **box["kw"])
    with pytest.raises(UsageError, match=r"cannot read env file '.*missing.env': No such file"):
        build_spec("sleep 1", env_file="missing.env", **box["kw"])


@pytest.mark.parametrize("bad", BAD_NAMES)
def test_build_spec_rejects_bad_names(box, bad):
    with pytest.raises(UsageError) as excinfo:
        build_spec("sleep 1", name=bad, **box["kw"])
    assert one_line_usage_error(excinfo).startswith("invalid name")


def test_build_spec_name_too_long_with_its_port(box):
    assert build_spec("sleep 1", name="x" * 64, **box["kw"]).name == "x" * 64
    with pytest.raises(UsageError, match="at most 64"):
        build_spec("sleep 1", name="x" * 64, port="7777", **box["kw"])
    # with a port search the port is unknown yet: the daemon checks the final name
    assert build_spec("sleep 1", name="x" * 64, port="7777+", **box["kw"]).name == "x" * 64


@pytest.mark.parametrize(
    "kwargs, field, expected",
    [
        ({"min_uptime": "500"}, "min_uptime", 0.5),  # command-line string: milliseconds
        ({"min_uptime": "2s"}, "min_uptime", 2.0),
        ({"min_uptime": 2}, "min_uptime", 2.0),  # Python number: seconds
        ({"restart_delay": "1.5m"}, "restart_delay", 90.0),
        ({"restart_delay": 0}, "restart_delay", 0.0),
        ({"exp_backoff": "100"}, "exp_backoff", 0.1),
        ({"exp_backoff": 0.25}, "exp_backoff", 0.25),
        ({"kill_timeout": "3000"}, "kill_timeout", 3.0),
        ({"kill_timeout": 5}, "kill_timeout", 5.0),
        ({"kill_timeout": "500ms"}, "kill_timeout", 0.5),
        ({"kill_timeout": "1s"}, "kill_timeout", 1.0),
        ({"max_memory": "200M"}, "max_memory", 200 * MiB),
        ({"max_memory": 1000}, "max_memory", 1000),
        ({"log_max_size": "10M"}, "log_max_size", 10 * MiB),
        ({"max_restarts": "0"}, "max_restarts", 0),
        ({"max_restarts": 3}, "max_restarts", 3),
        ({"log_retain": "5"}, "log_retain", 5),
        ({"log_compress": False}, "log_compress", False),
        ({"log_compress": "yes"}, "log_compress", True),
        ({"autorestart": False}, "autorestart", False),
        ({"autorestart": "off"}, "autorestart", False),
        ({"wait_port": True}, "wait_port", True),
        ({"time": "true"}, "time", True),
        ({"stop_signal": "TERM"}, "stop_signal", "SIGTERM"),
        ({"stop_signal": "sigint"}, "stop_signal", "SIGINT"),
        ({"stop_signal": "15"}, "stop_signal", "SIGTERM"),
        ({"stop_signal": 2}, "stop_signal", "SIGINT"),
        ({"stop_signal": "hup"}, "stop_signal", "SIGHUP"),
    ],
)
def test_build_spec_options(box, kwargs, field, expected):
    value = getattr(build_spec("sleep 1", **kwargs, **box["kw"]), field)
    assert value == pytest.approx(expected)
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"max_restarts": "-1"}, "--max-restarts: invalid count '-1'"),
        ({"max_restarts": -1}, "--max-restarts: invalid count '-1'"),
        ({"max_restarts": 1.5}, "--max-restarts: invalid count '1.5'"),
        ({"max_restarts": True}, "--max-restarts: invalid count 'True'"),
        ({"max_restarts": "many"}, "--max-restarts: invalid count 'many'"),
        ({"max_restarts": "²"}, "--max-restarts: invalid count '²'"),
        ({"kill_timeout": "0"}, "--kill-timeout: must be more than 0"),
        ({"kill_timeout": 0}, "--kill-timeout: must be more than 0"),
        ({"kill_timeout": "soon"}, "--kill-timeout: invalid duration 'soon'"),
        ({"min_uptime": "-1s"}, "--min-uptime: invalid duration '-1s'"),
        ({"restart_delay": -2}, "--restart-delay: invalid duration '-2'"),
        ({"exp_backoff": "0"}, "--exp-backoff-restart-delay: must be more than 0"),
        ({"max_memory": "12X"}, "--max-memory-restart: invalid size '12X': use a number with B, K, M or G"),
        ({"max_memory": 0}, "--max-memory-restart: invalid size '0'"),
        ({"log_max_size": "big"}, "--log-max-size: invalid size 'big'"),
        ({"log_retain": "-3"}, "--log-retain: invalid count '-3'"),
        ({"stop_signal": "SIGFOO"}, "invalid stop signal 'SIGFOO'"),
        ({"stop_signal": "0"}, "invalid stop signal '0'"),
        ({"stop_signal": "999"}, "invalid stop signal '999'"),
        ({"stop_signal": "SIG_IGN"}, "invalid stop signal 'SIG_IGN'"),
        ({"autorestart": "maybe"}, "--autorestart: invalid value 'maybe'"),
        ({"env": ["NOPE"]}, "invalid environment item 'NOPE'"),
    ],
)
def test_build_spec_rejects_bad_options(box, kwargs, fragment):
    with pytest.raises(UsageError) as excinfo:
        build_spec("sleep 1", **kwargs, **box["kw"])
    assert one_line_usage_error(excinfo).startswith(fragment)


@pytest.mark.parametrize(
    "args, message",
    [
        ({}, "give either a command string or an argv list, not both"),
        ({"command": "sleep 1", "argv": ["sleep"]}, "give either a command string or an argv list, not both"),
        ({"command": ""}, "empty command"),
        ({"argv": []}, "empty command"),
        ({"argv": [""]}, "empty command"),
        ({"argv": "sleep 1"}, "argv must be a list of strings"),
        ({"argv": ["sleep", 1]}, "argv must be a list of strings"),
        ({"command": ["sleep"]}, "the command must be a string; give a list as argv"),
        ({"command": "python -c 'x"}, "invalid command: unbalanced ' quote"),
    ],
)
def test_build_spec_rejects_bad_commands(box, args, message):
    with pytest.raises(UsageError) as excinfo:
        build_spec(**args, **box["kw"])
    assert one_line_usage_error(excinfo).startswith(message)


def test_build_spec_defaults_to_the_current_directory(box, monkeypatch):
    monkeypatch.chdir(box["project"])
    spec = build_spec("sleep 1", path_env=box["bin"])
    assert spec.cwd == str(box["project"])


# --------------------------------------------------------------------------- LaunchSpec


def test_launch_spec_round_trips_through_json(box):
    write(box["project"] / ".env", "A=1\n")
    spec = build_spec(
        "python3 -m http.server 7777",
        name="web",
        env_file=".env",
        env=["B=2"],
        max_memory="1G",
        exp_backoff="100ms",
        log_compress=True,
        **box["kw"],
    )
    data = json.loads(json.dumps(spec.to_dict()))
    again = LaunchSpec.from_dict(data)
    assert again == spec
    assert again.to_dict() == spec.to_dict()
    # the dict is a copy: changing it leaves the spec alone
    data["env"]["A"] = "changed"
    assert spec.env["A"] == "1"


def test_launch_spec_from_dict_ignores_unknown_and_requires_known(box):
    data = build_spec("sleep 1", **box["kw"]).to_dict()
    data["from_a_newer_client"] = 1
    assert LaunchSpec.from_dict(data).command == "sleep 1"
    del data["argv"], data["cwd"]
    with pytest.raises(UsageError, match=r"^invalid launch spec: missing argv, cwd$"):
        LaunchSpec.from_dict(data)
    minimal = {k: v for k, v in build_spec("sleep 1", **box["kw"]).to_dict().items() if k != "max_restarts"}
    assert LaunchSpec.from_dict(minimal).max_restarts == 15  # optional fields take their defaults
    minimal["env"] = 5
    with pytest.raises(UsageError, match="env must be an object"):
        LaunchSpec.from_dict(minimal)


def test_file_modes_used_above_are_real(box):
    # guards the fixture: app.py really has no exec bit and run.py has one
    assert not os.stat(box["project"] / "app.py").st_mode & stat.S_IXUSR
    assert os.stat(box["project"] / "run.py").st_mode & stat.S_IXUSR
