"""The client: how a front end reaches the daemon.

The synchronous socket client (works inside a running Jupyter kernel, starts the daemon on
demand, turns error replies back into the core's exceptions) and the one command grammar that the
``tsm`` command line and ``%tsm`` share, and bringing a stack up and down (dependency order,
readiness) with the keys of a stack file derived from that grammar.

May import: the core and the standard library. Never the engine (it only starts the daemon as a
separate process) and never a front end; never pandas, IPython or ipywidgets.
"""
