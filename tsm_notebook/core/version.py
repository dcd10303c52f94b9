"""The package's one version, read by packaging (pyproject.toml) and by the protocol."""

__version__ = "0.1.0"
