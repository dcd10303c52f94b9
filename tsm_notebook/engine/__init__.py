"""The engine: the supervisor daemon and everything only it runs.

The daemon (socket server, recovery, signals), the supervisor (spawn, stop, restart policy), the
managed-process nouns, pipe capture, the log writer with rotation, the metric sampler, the history
writer, the port checks, and the dependency order of a stack's apps when the daemon itself brings
them up (recovery, resurrect, restart). It runs in its own process (``python -m tsm_notebook.engine``),
started on demand by a client.

May import: the core, psutil and the standard library. Never the client or a front end: the
daemon talks to the world only through its socket. Nothing outside this folder imports it.
"""
