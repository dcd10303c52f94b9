"""config.toml: every key parsed with the command line's checks, bad files refused in one line,
and the keys' effects on a real daemon."""

from __future__ import annotations

import gzip
import sys

import pytest

from conftest import wait_for
from tsm_notebook.core.config import KEYS, Config
from tsm_notebook.core.errors import UsageError
from tsm_notebook.core.logread import parse_rotated_name

SLEEP = [sys.executable, "-c", "import time; time.sleep(60)"]


def load(tmp_path, text: str) -> Config:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return Config.load(path)


def refusal(tmp_path, text: str) -> str:
    with pytest.raises(UsageError) as excinfo:
        load(tmp_path, text)
    message = excinfo.value.message
    assert "\n" not in message and message.startswith(f"config file {tmp_path / 'config.toml'}: ")
    return message.split(": ", 1)[1]


def test_missing_file_gives_the_defaults(tmp_path):
    assert Config.load(tmp_path / "config.toml") == Config()


def test_every_key_is_read(tmp_path):
    cfg = load(tmp_path, """
[logs]
max_size = "2M"
rotate_every = "0"
retain = 3
max_age = "2d"
compress = false
[history]
sample_interval = "500ms"
retention = 3600
[daemon]
launch_window = "1s"
stable_after = "2m"
[hooks]
crash = "echo crash"
errored = "echo errored"
restart = "echo restart"
memory-limit = "echo memory"
online = "echo online"
stop = "echo stop"
timeout = "5s"
[notebook]
url_template = "https://lab.example/proxy/{port}/"
""")
    assert cfg.to_dict() == {
        "log_max_size": 2 * 1024**2, "log_rotate_every": 0.0, "log_retain": 3, "log_max_age": 2 * 86400.0,
        "log_compress": False, "sample_interval": 0.5, "history_retention": 3600.0, "launch_window": 1.0,
        "stable_after": 120.0,
        "hook_crash": "echo crash", "hook_errored": "echo errored", "hook_restart": "echo restart",
        "hook_memory_limit": "echo memory", "hook_online": "echo online", "hook_stop": "echo stop",
        "hook_timeout": 5.0,
        "url_template": "https://lab.example/proxy/{port}/", "hosts": {},
    }
    assert sum(len(keys) for keys in KEYS.values()) == len(cfg.to_dict())


@pytest.mark.parametrize("text, expected", [
    ('[logs]\ncompress = "false"', False), ('[logs]\ncompress = "off"', False), ("[logs]\ncompress = true", True),
])
def test_compress_words_are_words(tmp_path, text, expected):
    assert load(tmp_path, text).log_compress is expected


@pytest.mark.parametrize("text, says", [
    ("[logs]\nretain = -1", "logs.retain: invalid count '-1'"),
    ("[logs]\nretain = 2.5", "logs.retain: invalid count 2.5"),
    ('[logs]\nmax_size = "0"', "logs.max_size: invalid size '0': must be more than 0 bytes"),
    ('[logs]\nmax_size = "10X"', "logs.max_size: invalid size '10X'"),
    ('[logs]\ncompress = "maybe"', "logs.compress: invalid value 'maybe': use true or false"),
    ("[logs]\ncompress = 1", "logs.compress: invalid value 1: use true or false"),
    ('[logs]\nmax_age = "3"', "logs.max_age: '3' needs a unit"),
    ('[logs]\nmax_age = "0"', "logs.max_age: '0' must be more than 0"),
    ('[history]\nsample_interval = "10ms"', "history.sample_interval: '10ms' is too short"),
    ('[history]\nretention = "-1d"', "history.retention: invalid duration '-1d'"),
    ("[logs]\nsize = 3", "unknown key logs.size: [logs] takes max_size, rotate_every, retain, max_age, compress"),
    ("[log]\nmax_size = 3", "unknown section [log]: the sections are [logs], [history], [daemon]"),
    ("logs = 3", "logs must be a table"),
    ("[logs\n", "Expected ']'"),
])
def test_bad_values_are_refused_naming_the_key(tmp_path, text, says):
    assert says in refusal(tmp_path, text)


def test_bad_config_stops_the_first_command_at_once_with_the_key(tsm):
    (tsm.home / "config.toml").write_text("[logs]\nretain = -1\n")
    r = tsm.run("ls")
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(f"tsm: config file {tsm.home / 'config.toml'}: logs.retain: invalid count '-1'")
    assert r.returncode == 2  # a usage error, like a bad option
    assert "daemon.log" not in r.stderr and "Traceback" not in r.stderr
    assert tsm.daemon_pid() is None
    (tsm.home / "config.toml").write_text("[logs]\nretain = 1\n")  # fixed: the next command works
    tsm.run("ls", check=True)


def rotated(directory):
    return sorted(n for n in (p.name for p in directory.iterdir()) if parse_rotated_name(n))


def test_log_keys_reach_the_writers(tsm):
    # compress = "false" (a string) must mean false; retain = 1 keeps one rotated file
    (tsm.home / "config.toml").write_text('[logs]\nmax_size = "1K"\ncompress = "false"\nretain = 1\n')
    code = "import sys, time\nfor i in range(400): print('x' * 60, i, flush=True)\ntime.sleep(60)"
    tsm.run("start", "--name", "chatty", "--", sys.executable, "-c", code, check=True)
    d = tsm.proc_dir("chatty")
    def last_line_written() -> bool:  # in current.out, or in the file rotated as it filled
        files = [d / "current.out"] + [d / n for n in rotated(d)]
        return any(f.exists() and f.read_text().rstrip().endswith(" 399") for f in files)

    wait_for(last_line_written, message="400 lines written")
    wait_for(lambda: len(rotated(d)) == 1, message="retention down to one rotated file")
    names = rotated(d)
    assert len(names) == 1 and names[0].endswith(".log"), names  # one kept, never gzipped
    assert not any(n.endswith(".gz") for n in names)
    with pytest.raises(gzip.BadGzipFile):
        gzip.open(d / names[0]).read()


def test_history_keys_reach_the_sampler(tsm):
    (tsm.home / "config.toml").write_text('[history]\nsample_interval = "100ms"\n')
    tsm.run("start", "--name", "s", "--", *SLEEP, check=True)
    from tsm_notebook.core.history import read_metrics

    # at 100ms a few samples land within a second or two; the default (2s) would give none yet
    wait_for(lambda: (tsm.call("history_flush"), len(read_metrics(tsm.home / "db" / "tsm.sqlite", name="s")) >= 5)[1],
             timeout=5, message="five samples at a 100ms interval")


def test_daemon_log_rotates_and_the_daemon_output_follows(tmp_path):
    # daemon.log was the one unbounded file of a home: it rotates, and the daemon's raw stdout and
    # stderr (a stray print, a C library's warning) move to the new file with it
    import subprocess

    probe = (
        "import logging, os, sys\n"
        "from pathlib import Path\n"
        "from tsm_notebook.engine.__main__ import DaemonLogHandler\n"
        "h = DaemonLogHandler(Path(sys.argv[1]), max_bytes=2000, backups=2)\n"
        "log = logging.getLogger('probe'); log.addHandler(h); log.setLevel(logging.INFO)\n"
        "for i in range(200): log.info('line %d %s', i, 'x' * 40)\n"
        "os.write(1, b'raw stdout after rotation\\n'); os.write(2, b'raw stderr after rotation\\n')\n"
    )
    path = tmp_path / "daemon.log"
    subprocess.run([sys.executable, "-c", probe, str(path)], check=True, timeout=60)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["daemon.log", "daemon.log.1", "daemon.log.2"], names
    assert all(p.stat().st_size <= 2100 for p in tmp_path.iterdir())
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in tmp_path.iterdir())
    text = path.read_text()
    assert "line 199" in text and "raw stdout after rotation" in text and "raw stderr after rotation" in text


@pytest.mark.parametrize("text, needle", [
    ("[hooks]\ncrash = 5", "hooks.crash"),
    ("[hooks]\ntimeout = \"0s\"", "hooks.timeout"),
    ("[hooks]\nexit = \"echo\"", "unknown key hooks.exit"),
])
def test_bad_hooks_are_refused(tmp_path, text, needle):
    assert needle in refusal(tmp_path, text)


def test_hosts_tables_are_read_and_checked(tmp_path):
    cfg = load(tmp_path, '[hosts.gpu]\nssh = "me@gpu-box"\nhome = "~/.tsm"\nssh_options = ["-p", "2222"]\ntimeout = "3s"\n'
                         '[hosts.staging]\nssh = "deploy@staging"\n')
    assert cfg.hosts == {"gpu": {"ssh": "me@gpu-box", "home": "~/.tsm", "ssh_options": ["-p", "2222"], "timeout": 3.0},
                         "staging": {"ssh": "deploy@staging"}}


@pytest.mark.parametrize("text, says", [
    ('[hosts.gpu]\nhome = "/x"', "hosts.gpu: ssh is required"),
    ('[hosts.gpu]\nssh = "a@b"\nport = 22', "unknown key hosts.gpu.port: [hosts.gpu] takes ssh, home, tsm, ssh_options, timeout"),
    ('[hosts.gpu]\nssh = "-oProxyCommand=x"', "hosts.gpu.ssh: invalid ssh target"),
    ('[hosts.gpu]\nssh = "a b"', "hosts.gpu.ssh: invalid ssh target"),
    ('[hosts.gpu]\nssh = "a@b"\nssh_options = "-p 22"', "hosts.gpu.ssh_options: invalid value '-p 22': use a list of strings"),
    ('[hosts.gpu]\nssh = "a@b"\nssh_options = [22]', "hosts.gpu.ssh_options: invalid value 22"),
    ('[hosts.gpu]\nssh = "a@b"\ntimeout = "0s"', "hosts.gpu.timeout: '0s' must be more than 0"),
    ('[hosts.all]\nssh = "a@b"', "invalid host name 'all': it is reserved"),
    ('[hosts]\ngpu = "a@b"', "hosts.gpu must be a table"),
])
def test_bad_hosts_are_refused_with_the_key(tmp_path, text, says):
    with pytest.raises(UsageError) as e:
        load(tmp_path, text)
    assert says in e.value.message


def test_the_host_selector_is_found_anywhere_before_the_command():
    from tsm_notebook.client.commands import parse, split_host

    assert split_host(["@gpu", "ls"]) == (["ls"], "gpu")
    assert split_host(["ls", "-H", "all"]) == (["ls"], "all")
    assert split_host(["--host=a,b", "ls", "-a"]) == (["ls", "-a"], "a,b")
    assert split_host(["start", "--", "prog", "-H", "x"]) == (["start", "--", "prog", "-H", "x"], None)
    assert parse(["-H", "gpu", "logs", "web", "-f"]).host == "gpu"
    assert parse(["ls"]).host is None


def all_lines(directory) -> str:
    """Every line of a process's stdout: rotated files (gzipped or not), then current.out."""
    text = ""
    for name in rotated(directory):
        raw = (directory / name).read_bytes()
        text += (gzip.decompress(raw) if name.endswith(".gz") else raw).decode()
    current = directory / "current.out"
    return text + (current.read_text() if current.exists() else "")


def test_rotate_every_and_max_age_reach_the_writers(tsm):
    # no size rotation (10M) and no count limit in reach: only time rotates and only age removes
    (tsm.home / "config.toml").write_text('[logs]\nrotate_every = "1s"\nmax_age = "3s"\nretain = 1000\n'
                                          'compress = false\n')
    code = "import time\nfor i in range(600):\n    print('tick', i, flush=True)\n    time.sleep(0.1)"
    tsm.run("start", "--name", "clock", "--", sys.executable, "-c", code, check=True)
    d = tsm.proc_dir("clock")
    first = wait_for(lambda: (lambda r: r[0] if len(r) >= 2 else None)(rotated(d)), timeout=20,
                     message="two time rotations")
    wait_for(lambda: first not in rotated(d), timeout=30, message="the oldest rotated file to age out")
    assert rotated(d), "newer rotated files stay"


def test_no_log_compress_keeps_this_processs_rotated_files_plain(tsm):
    code = "import time\nfor i in range(100): print('x' * 60, i, flush=True)\ntime.sleep(60)"
    tsm.run("start", "--name", "plain", "--log-max-size", "1K", "--no-log-compress", "--", sys.executable, "-c", code,
            check=True)
    plain = tsm.proc_dir("plain")
    wait_for(lambda: f"{'x' * 60} 99\n" in all_lines(plain), message="plain's last line")
    # a twin started after it, compressing: once its rotated files are all gzipped, plain's have
    # had at least as long a quiet stream to be, and must not be
    tsm.run("start", "--name", "zipped", "--log-max-size", "1K", "--", sys.executable, "-c", code, check=True)
    zipped = tsm.proc_dir("zipped")
    wait_for(lambda: f"{'x' * 60} 99\n" in all_lines(zipped), message="zipped's last line")
    wait_for(lambda: len(rotated(zipped)) >= 3 and all(n.endswith(".log.gz") for n in rotated(zipped)),
             message="zipped's rotated files compressed")
    names = rotated(plain)
    assert len(names) >= 3 and all(n.endswith(".log") for n in names), names
    assert all_lines(plain) == "".join(f"{'x' * 60} {i}\n" for i in range(100))
