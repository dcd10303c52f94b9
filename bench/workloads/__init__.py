"""Tiny child programs the benchmark runs under each process manager (run as scripts, by path)."""
