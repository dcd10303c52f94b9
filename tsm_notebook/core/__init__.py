"""The core: what every side of tsm shares, pure standard library.

Errors, the state table, paths of a home, the wire protocol, ``config.toml``, the one grammar of
sizes and durations (``units``), the launch spec and the analysis of a command line (port, shell,
type, name), env files, stack files (``tsm.toml``, Procfile, PM2 ecosystem), text renderers, and
the readers of logs and history.

May import: the standard library and other core modules. Never the engine, the client, a front end
or the package's ``__init__``; never pandas, IPython, ipywidgets or psutil. Every other layer builds
on this one, so it must stay light: the ``tsm`` command line imports it on every call.
"""
