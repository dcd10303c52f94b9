"""tsm_notebook: a PM2-style process manager for people who work in Jupyter."""

__version__ = "0.1.0"
