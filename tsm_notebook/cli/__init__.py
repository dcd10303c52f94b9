"""The terminal front end: the ``tsm`` command line (``main``) and ``tsm monit``.

May import: the client, the core and the standard library. Never the engine, never the notebook
front end, never pandas, IPython or ipywidgets: every ``tsm`` call pays for what it imports.
"""
