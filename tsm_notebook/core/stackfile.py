"""Stack files: a ``tsm.toml`` (or a ``Procfile``, or PM2's JSON ecosystem) read into a validated
:class:`Stack` of apps in dependency order. Pure: it reads the file and starts nothing.

A ``tsm.toml`` holds one table per app with the options of ``tsm start`` under their long names,
plus the stack's own keys::

    name = "shop"                        # the stack's name (default: the file's folder)

    [env]                                # variables for every app (and for ${VAR})
    LOG_LEVEL = "info"
    [env.production]                     # picked with --env production: variables ...
    LOG_LEVEL = "warning"
    [env.production.api]                 # ... and any app key overridden
    instances = 4

    [db]
    cmd = "redis-server --port 6390"     # or argv = ["redis-server", "--port", "6390"]
    ready = "port"                       # "port", "online", "exit", "http://127.0.0.1:$PORT/health",
                                         # or {log = "regex"}; ready_timeout = "30s"
    [api]
    cmd = "python api.py"
    port = "8000+"
    depends_on = ["db"]
    instances = 2                        # api-8000, api-8001, ... with TSM_INSTANCE = 0, 1, ...
    [train]
    cmd = "python train.py"
    host = "gpu"                         # runs on [hosts.gpu] of config.toml (default: local)
    depends_on = ["api"]

Which option keys exist is not decided here: the caller passes ``build(options, base_cwd)``, which
turns the keys of ``tsm start`` into a :class:`~tsm_notebook.core.spec.LaunchSpec` (the client
derives it from the command grammar, so every option of ``tsm start`` is a key here) and raises
:class:`UsageError` with a ``key`` field. Every mistake is one :class:`UsageError` naming the
file, the line and the key: ``tsm.toml:7: api.port: invalid port 'x': ...``.

An app on another host (``host = "NAME"``, a host of ``config.toml``; ``local`` is this machine)
is not built here: its spec depends on that machine (its paths, its PATH, its environment), so
``build_remote(options, name=...)`` turns its keys into the keywords the host builds it from
(checked here as far as they do not depend on the machine), kept in :attr:`App.builds`; its
:attr:`App.specs` stay empty until the bring-up asks the host. Ports are checked per host.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

from .errors import UsageError
from .paths import check_name
from .spec import LaunchSpec
from .units import parse_count, parse_duration

__all__ = ["App", "Stack", "DEFAULT_READY_TIMEOUT", "STACK_KEYS", "FILE_NAMES", "find_file", "instance_spec", "load", "parse_text"]

#: the keys an app table has besides the options of ``tsm start``
STACK_KEYS = ("cmd", "argv", "depends_on", "ready", "ready_timeout", "instances", "host")
#: what ``tsm up`` looks for in the current directory, in this order
FILE_NAMES = ("tsm.toml", "Procfile", "ecosystem.json", "ecosystem.config.json")
DEFAULT_READY_TIMEOUT = 30.0
#: variables a process gets when it runs: ``${PORT}`` in a value is left for the process
RUNTIME_VARS = frozenset({"PORT", "TSM_INSTANCE", "TSM_NAME", "TSM_ID", "TSM_HOME"})
_VAR_RE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")
_READY_WORDS = ("port", "online", "exit")

Build = Callable[..., LaunchSpec]
BuildRemote = Callable[..., dict]
LOCAL = "local"


class App:
    """One app of a stack: its options (as written, environment applied), what it depends on,
    when it counts as ready, its instances, the line it starts on, and its ``host`` (a name of
    ``config.toml``'s hosts, or None for this machine)."""

    __slots__ = ("name", "options", "depends_on", "ready", "ready_timeout", "instances", "line", "specs", "host", "builds")

    def __init__(self, name: str, options: dict[str, Any], depends_on: list[str], ready: Any,
                 ready_timeout: float, instances: int, line: int | None) -> None:
        self.name = name
        self.options = options
        self.depends_on = depends_on
        self.ready = ready
        self.ready_timeout = ready_timeout
        self.instances = instances
        self.line = line
        self.specs: list[LaunchSpec] = []  # one per instance, filled by load() (on this machine)
        self.host: str | None = None
        self.builds: list[dict[str, Any]] = []  # one per instance of an app on another host

    def __repr__(self) -> str:
        on = f", host={self.host!r}" if self.host else ""
        return f"App({self.name!r}, depends_on={self.depends_on!r}, ready={self.ready!r}, instances={self.instances}{on})"


class Stack:
    """A validated stack file: ``name``, ``path``, ``apps`` by name in dependency order (an app
    comes after every app it depends on; otherwise the file's order)."""

    def __init__(self, name: str, path: str, apps: dict[str, App]) -> None:
        self.name = name
        self.path = path
        self.apps = apps

    @property
    def order(self) -> list[str]:
        """App names, dependencies first."""
        return list(self.apps)

    def closure(self, names: list[str] | tuple[str, ...] | None) -> list[str]:
        """``names`` and every app they need, in dependency order (all apps when ``names`` is empty).
        Raises UsageError for a name the stack does not have."""
        if not names:
            return self.order
        unknown = [n for n in names if n not in self.apps]
        if unknown:
            raise UsageError(f"{self.path}: no app named {unknown[0]!r} (apps: {', '.join(self.apps)})")
        need: set[str] = set()
        todo = list(names)
        while todo:
            n = todo.pop()
            if n not in need:
                need.add(n)
                todo.extend(self.apps[n].depends_on)
        return [n for n in self.order if n in need]

    def __repr__(self) -> str:
        return f"Stack({self.name!r}, {self.order})"


# ---------------------------------------------------------------------- finding and reading


def find_file(folder: str | os.PathLike[str] | None = None) -> Path:
    """The stack file of ``folder`` (default: the current directory): the first of
    :data:`FILE_NAMES` that exists. Raises UsageError when there is none."""
    base = Path(folder or os.getcwd())
    for name in FILE_NAMES:
        if (base / name).is_file():
            return base / name
    raise UsageError(f"no stack file in {base}: write a tsm.toml (or give a FILE: tsm.toml, Procfile, ecosystem.json)")


def kind_of(path: str | os.PathLike[str]) -> str:
    """``toml``, ``procfile`` or ``ecosystem``, from the file's name."""
    name = Path(path).name.lower()
    if name.endswith(".toml"):
        return "toml"
    if name.endswith(".json"):
        return "ecosystem"
    if name.startswith("procfile"):
        return "procfile"
    raise UsageError(f"{path}: not a stack file (a .toml, a Procfile or a PM2 ecosystem .json)")


def load(path: str | os.PathLike[str], build: Build, *, env_name: str | None = None,
         environ: Mapping[str, str] | None = None, text: str | None = None,
         hosts: Collection[str] = (), build_remote: BuildRemote | None = None) -> Stack:
    """Read and validate the stack file at ``path`` (or ``text`` as if read from it); build one
    spec per instance with ``build``. ``env_name`` picks an ``[env.NAME]`` section; ``${VAR}`` is
    taken from ``environ`` (default ``os.environ``), then the file's ``[env]``. ``hosts`` are the
    names an app's ``host`` may give, ``build_remote`` makes the build keywords of an app there.
    Raises UsageError."""
    path = os.path.abspath(os.fspath(path))
    if text is None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise UsageError(f"{path}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"{path}: cannot read it: {exc}") from None
    return parse_text(text, path, build, env_name=env_name, environ=environ, hosts=hosts, build_remote=build_remote)


def parse_text(text: str, path: str, build: Build, *, env_name: str | None = None,
               environ: Mapping[str, str] | None = None, kind: str | None = None,
               hosts: Collection[str] = (), build_remote: BuildRemote | None = None) -> Stack:
    """:func:`load` for text already read (``kind``: toml, procfile or ecosystem; default from the name)."""
    from . import stackformats

    kind = kind or kind_of(path)
    environ = os.environ if environ is None else environ
    shown = os.path.relpath(path) if not os.path.relpath(path).startswith("..") else path
    if kind == "toml":
        raw, lines = stackformats.read_toml(text, shown), stackformats.TomlLines(text)
    elif kind == "procfile":
        raw, lines = stackformats.read_procfile(text, shown, environ, os.path.dirname(path))
    else:
        raw, lines = stackformats.read_ecosystem(text, shown)
    return _validate(raw, path, shown, lines, build, env_name, environ, hosts, build_remote)


# ---------------------------------------------------------------------- validation


def _fail(shown: str, lines: Any, where: tuple[str, ...], message: str) -> UsageError:
    line = lines.find(where)
    at = f"{shown}:{line}" if line else shown
    return UsageError(f"{at}: {'.'.join(where)}: {message}" if where else f"{at}: {message}")


def _stack_name(raw: dict[str, Any], path: str, err: Callable[..., UsageError]) -> str:
    name = raw.get("name")
    if name is None:
        folder = Path(path).resolve().parent.name or "stack"
        name = re.sub(r"[^A-Za-z0-9_.-]+", "-", folder).strip("-.") or "stack"
        return name[:40]
    if not isinstance(name, str):
        raise err(("name",), "the stack's name must be a string")
    try:
        check_name(name)
    except UsageError as exc:
        raise err(("name",), exc.message) from None
    return name


def _environments(raw: dict[str, Any], env_name: str | None, apps: dict[str, Any], err: Callable[..., UsageError]):
    """(variables, {app: overrides}) of the base ``[env]`` and the picked ``[env.NAME]``."""
    env = raw.get("env", {})
    if not isinstance(env, dict):
        raise err(("env",), "must be a table: [env] for variables, [env.NAME] for an environment")
    variables: dict[str, str] = {}
    named: dict[str, dict[str, Any]] = {}
    for key, value in env.items():
        if isinstance(value, dict):
            named[key] = value
        elif isinstance(value, (str, int, float)) and not isinstance(value, bool):
            variables[key] = str(value)
        else:
            raise err(("env", key), "a variable is a string or a number; an environment is a table [env.NAME]")
    overrides: dict[str, dict[str, Any]] = {}
    if env_name is not None:
        if env_name not in named:
            have = ", ".join(named) or "none"
            raise err((), f"no environment {env_name!r} (environments: {have})")
        for key, value in named[env_name].items():
            if isinstance(value, dict):
                if key not in apps:
                    raise err(("env", env_name, key), f"no app named {key!r} to override")
                overrides[key] = value
            elif isinstance(value, (str, int, float)) and not isinstance(value, bool):
                variables[key] = str(value)
            else:
                raise err(("env", env_name, key), "a variable is a string; an app's overrides are a table")
    return variables, overrides


def _expand(value: Any, lookup: Callable[[str], str | None], where: tuple[str, ...], err: Callable[..., UsageError]) -> Any:
    """``${VAR}`` and ``${VAR:-default}`` in every string of ``value``; ``$$`` is a ``$``."""
    if isinstance(value, list):
        return [_expand(v, lookup, where, err) for v in value]
    if isinstance(value, dict):
        return {k: _expand(v, lookup, where + (k,), err) for k, v in value.items()}
    if not isinstance(value, str) or "$" not in value:
        return value

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$$"  # kept: the shell or the process makes it one $
        var, default = m.group(1), m.group(2)
        if var in RUNTIME_VARS:
            return m.group(0)
        found = lookup(var)
        if found is None or (found == "" and m.group(0).startswith(f"${{{var}:-")):
            if default is not None:
                return default
            raise err(where, f"${{{var}}} is not set (in the environment or the file's [env]): "
                             f"set it, or give a default with ${{{var}:-value}}")
        return found

    return _VAR_RE.sub(sub, value)


def _ready(value: Any, where: tuple[str, ...], err: Callable[..., UsageError]) -> Any:
    if isinstance(value, str):
        v = value.strip()
        if v in _READY_WORDS or v.startswith(("http://", "https://")):
            return v
    elif isinstance(value, dict):
        extra = sorted(set(value) - {"log"})
        if extra:
            raise err(where + (extra[0],), "unknown readiness key (a log check is {log = \"regex\"})")
        pattern = value.get("log")
        if isinstance(pattern, str) and pattern:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise err(where + ("log",), f"invalid regular expression {pattern!r}: {exc}") from None
            return {"log": pattern}
    raise err(where, f"invalid readiness {value!r}: use \"port\", \"online\", \"exit\", an http:// URL, or {{log = \"regex\"}}")


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if key == "env" and isinstance(value, dict) and isinstance(out.get("env"), dict):
            out["env"] = {**out["env"], **value}
        else:
            out[key] = value
    return out


def _validate(raw: dict[str, Any], path: str, shown: str, lines: Any, build: Build, env_name: str | None,
              environ: Mapping[str, str], hosts: Collection[str] = (), build_remote: BuildRemote | None = None) -> Stack:
    def err(where: tuple[str, ...], message: str) -> UsageError:
        return _fail(shown, lines, where, message)

    tables = {k: v for k, v in raw.items() if k not in ("name", "env")}
    for key, value in tables.items():
        if not isinstance(value, dict):
            raise err((key,), f"unknown top-level key (the stack's keys are name and env; an app is a table [{key}])")
    if not tables:
        raise err((), "no apps: add a table per app, e.g. [web] with cmd = \"...\"")
    name = _stack_name(raw, path, err)
    variables, overrides = _environments(raw, env_name, tables, err)

    def lookup(var: str) -> str | None:
        return environ.get(var, variables.get(var))

    apps: dict[str, App] = {}
    for app_name, table in tables.items():
        try:
            check_name(app_name)
        except UsageError as exc:
            raise err((app_name,), exc.message) from None
        table = _expand(_merge(table, overrides.get(app_name, {})), lookup, (app_name,), err)
        apps[app_name] = _app(app_name, table, variables, err, lines, hosts)
    ordered = _dependency_order(apps, err)
    base_cwd = os.path.dirname(path)
    for app in ordered.values():
        if app.host is None:
            app.specs = _specs(app, name, base_cwd, build, err)
        else:
            app.builds = _builds(app, build_remote, err)
    _check_ports([apps[n] for n in tables], lines, err)
    return Stack(name, path, ordered)


def _check_ports(apps: list[App], lines: Any, err: Callable[..., UsageError]) -> None:
    """Refuse two apps of one host that would listen on the same port (an instance's port is its
    app's plus its index, as it starts): the second would only fail at its start, or, worse,
    count as ready on the first's port. An app on another host is checked by its ``port`` key."""
    owner: dict[tuple[str | None, int], App] = {}
    for app in apps:
        ports = [spec.port for spec in app.specs]
        if app.host is not None:
            ports = [_remote_port(b, i) for i, b in enumerate(app.builds)]
        for port in ports:
            if port is None:
                continue
            first = owner.setdefault((app.host, port), app)
            if first is not app:
                line = lines.find((first.name, "port")) or first.line
                at = f" (line {line})" if line else ""
                raise err((app.name, "port"), f"port {port} is also {first.name}'s{at}: give each app its own port")


def _remote_port(build: dict[str, Any], index: int) -> int | None:
    from .cmdline import parse_port

    if build.get("port") is None or build.get("no_port"):
        return None
    try:
        return parse_port(build["port"])[0] + index
    except UsageError:
        return None  # refused when built, by the host


def _host(name: str, value: Any, hosts: Collection[str], err: Callable[..., UsageError]) -> str | None:
    """The app's host: None for this machine (no key, or ``local``), else a name of ``hosts``."""
    if not isinstance(value, str) or not value.strip():
        raise err((name, "host"), "must be a host's name (a [hosts.NAME] of config.toml, or \"local\")")
    if value == LOCAL:
        return None
    if value not in hosts:
        known = ", ".join(sorted(hosts)) or "none yet: add one with `tsm hosts add NAME user@host`"
        raise err((name, "host"), f"unknown host {value!r} (the hosts of config.toml: {known})")
    return value


def _app(name: str, table: dict[str, Any], variables: dict[str, str], err: Callable[..., UsageError], lines: Any,
         hosts: Collection[str] = ()) -> App:
    if "name" in table:
        raise err((name, "name"), f"an app's name is its table's name ([{name}])")
    if ("cmd" in table) == ("argv" in table):
        raise err((name,), "give the command as cmd = \"...\" or argv = [\"...\"] (one of them)")
    deps = table.get("depends_on", [])
    if isinstance(deps, str):
        deps = [deps]
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise err((name, "depends_on"), "must be a list of app names")
    timeout = table.get("ready_timeout", DEFAULT_READY_TIMEOUT)
    try:
        timeout = parse_duration(timeout, "ready_timeout", bare=None)
    except UsageError as exc:
        raise err((name, "ready_timeout"), exc.message.split(": ", 1)[-1]) from None
    if timeout <= 0:
        raise err((name, "ready_timeout"), "must be more than 0")
    try:
        instances = parse_count(table.get("instances", 1), "instances", minimum=1)
    except UsageError as exc:
        raise err((name, "instances"), exc.message.split(": ", 1)[-1]) from None
    ready = _ready(table["ready"], (name, "ready"), err) if "ready" in table else None
    host = _host(name, table["host"], hosts, err) if "host" in table else None
    options = {k: v for k, v in table.items() if k not in ("depends_on", "ready", "ready_timeout", "instances", "host")}
    if variables:
        env = options.get("env", {})
        if isinstance(env, dict):
            options["env"] = {**variables, **env}
    if ready == "exit":
        if options.get("autorestart") is True:
            raise err((name, "autorestart"), "a one-shot job (ready = \"exit\") cannot autorestart")
        options.setdefault("autorestart", False)
    app = App(name, options, list(dict.fromkeys(deps)), ready, timeout, instances, lines.find((name,)))
    app.host = host
    return app


def _dependency_order(apps: dict[str, App], err: Callable[..., UsageError]) -> dict[str, App]:
    """Apps re-ordered so dependencies come first (else the file's order). Unknown names and
    cycles are refused, naming them."""
    for app in apps.values():
        for dep in app.depends_on:
            if dep not in apps:
                raise err((app.name, "depends_on"), f"no app named {dep!r} (apps: {', '.join(apps)})")
    done: dict[str, App] = {}
    visiting: list[str] = []

    def visit(n: str) -> None:
        if n in done:
            return
        if n in visiting:
            cycle = visiting[visiting.index(n):] + [n]
            raise err((cycle[0], "depends_on"), f"dependency cycle: {' -> '.join(cycle)}")
        visiting.append(n)
        for dep in apps[n].depends_on:
            visit(dep)
        visiting.pop()
        done[n] = apps[n]

    for n in apps:
        visit(n)
    return done


def _instance_options(app: App, i: int) -> dict[str, Any]:
    options = dict(app.options)
    if app.instances > 1:
        env = options.get("env", {})
        options["env"] = {**env, "TSM_INSTANCE": str(i)} if isinstance(env, dict) else env
    return options


def _blamed(app: App, exc: UsageError, err: Callable[..., UsageError]) -> UsageError:
    key = exc.fields.get("key")
    message = exc.message[len(key) + 2:] if key and exc.message.startswith(f"{key}: ") else exc.message
    return err((app.name, key) if key else (app.name,), message)


def instance_spec(spec: LaunchSpec, app: App, i: int, stack: str) -> LaunchSpec:
    """``spec`` (built from the options of instance ``i`` of ``app``) made that instance of the
    stack's app: its port (``P + i``) or name (``app-i``), and the stack's fields. Used here and,
    for an app on another host, once that host has built the spec."""
    if app.instances > 1:
        if spec.port is not None:
            spec.port += i  # web-8000, web-8001, ... (a P+ search starts from here)
        else:
            spec.name = f"{app.name}-{i}"
    spec.stack, spec.app = stack, app.name
    spec.depends_on = list(app.depends_on)
    spec.ready = app.ready if app.ready is not None else ("port" if spec.port is not None else "online")
    spec.ready_timeout = app.ready_timeout
    return spec


def _specs(app: App, stack: str, base_cwd: str, build: Build, err: Callable[..., UsageError]) -> list[LaunchSpec]:
    specs = []
    for i in range(app.instances):
        try:
            spec = build(_instance_options(app, i), base_cwd=base_cwd, name=app.name)
        except UsageError as exc:
            raise _blamed(app, exc, err) from None
        specs.append(instance_spec(spec, app, i, stack))
    if app.ready is None:
        app.ready = specs[0].ready
    return specs


def _builds(app: App, build_remote: BuildRemote | None, err: Callable[..., UsageError]) -> list[dict[str, Any]]:
    """The build keywords of each instance of an app on another host (see the module's docstring)."""
    if build_remote is None:
        raise err((app.name, "host"), "this reader of stack files cannot start apps on other hosts")
    builds = []
    for i in range(app.instances):
        try:
            builds.append(build_remote(_instance_options(app, i), name=app.name))
        except UsageError as exc:
            raise _blamed(app, exc, err) from None
    return builds  # app.ready stays None without the key: port or online, once its host built the spec
