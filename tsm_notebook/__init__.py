"""tsm_notebook: a PM2-style process manager for people who work in Jupyter.

::

    import tsm_notebook as tsm
    web = tsm.start("python -m http.server 8000", name="web", wait_port=True)
    tsm.processes()          # a pandas DataFrame of every process
    tsm.logs("web-8000")     # its last lines
    tsm.stop("all")

or, in a notebook, ``%load_ext tsm_notebook`` and then ``%tsm ls``, ``%tsm start ...``.

Importing the package is cheap: the ``tsm`` command line imports it, so only the exception tree
is loaded here and every other name is imported on first use (pandas, IPython and ipywidgets only
by the names that need them). Errors, all under :class:`TsmError`::

    TsmError
     ├── UsageError          ├── PortInUse        └── DaemonError
     ├── ProcessNotFound     ├── StartFailed           ├── DaemonNotRunning
     └── ProcessExists       ├── StackFailed           ├── VersionMismatch
                                                       └── ProtocolError
"""

import importlib as _importlib

TYPE_CHECKING = False  # typing costs the command line ~8 ms to import; annotations are postponed
if TYPE_CHECKING:
    from typing import Any as _Any
del TYPE_CHECKING

from .core.errors import (
    DaemonError,
    DaemonNotRunning,
    HostUnreachable,
    PortInUse,
    ProcessExists,
    ProcessNotFound,
    ProtocolError,
    StackFailed,
    StartFailed,
    TsmError,
    UsageError,
    VersionMismatch,
)

from .core.version import __version__

#: public name -> the module that defines it, imported on first access
_LAZY = {
    "Process": "notebook.api",
    "start": "notebook.api",
    "stop": "notebook.api",
    "restart": "notebook.api",
    "delete": "notebook.api",
    "describe": "notebook.api",
    "ping": "notebook.api",
    "save": "notebook.api",
    "resurrect": "notebook.api",
    "patrol": "notebook.api",
    "flush": "notebook.api",
    "kill": "notebook.api",
    "update": "notebook.api",
    "processes": "notebook.frames",
    "events": "notebook.frames",
    "metrics": "notebook.frames",
    "uptime_report": "notebook.frames",
    "logs": "notebook.logs_api",
    "Panel": "notebook.panel",
    "up": "notebook.stacks",
    "down": "notebook.stacks",
    "Stack": "notebook.stacks",
    "on": "notebook.events_api",
    "reset": "notebook.api",
    "hosts": "notebook.host_frames",
}

__all__ = [
    "__version__",
    # the Python API
    "Process",
    "start",
    "stop",
    "restart",
    "delete",
    "describe",
    "processes",
    "logs",
    "ping",
    "save",
    "resurrect",
    "patrol",
    "flush",
    "kill",
    "update",
    # stacks
    "up",
    "down",
    "Stack",
    "reset",
    "on",
    # history as DataFrames
    "events",
    "metrics",
    "uptime_report",
    # the live panel
    "Panel",
    # other machines ([hosts.NAME] in config.toml)
    "hosts",
    # IPython
    "load_ipython_extension",
    "unload_ipython_extension",
    # errors
    "TsmError",
    "UsageError",
    "ProcessNotFound",
    "ProcessExists",
    "PortInUse",
    "StartFailed",
    "StackFailed",
    "DaemonError",
    "DaemonNotRunning",
    "VersionMismatch",
    "HostUnreachable",
    "ProtocolError",
]


def __getattr__(name: str) -> "_Any":
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tsm_notebook' has no attribute {name!r}")
    value = getattr(_importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def load_ipython_extension(ipython: "_Any") -> None:
    """``%load_ext tsm_notebook``: register the ``%tsm`` / ``%%tsm`` magics and their completion."""
    from .notebook.magics import load

    load(ipython)


def unload_ipython_extension(ipython: "_Any") -> None:
    """``%unload_ext tsm_notebook``: remove the magics and the completion again."""
    from .notebook.magics import unload

    unload(ipython)
