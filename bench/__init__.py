"""Side-by-side benchmarks of tsm_notebook against PM2 and supervisor (see ``bench/run.py``)."""
