"""The notebook front end: ``%tsm`` magics, the Python API, pandas frames, the panel, HTML.

May import: the client, the core, IPython, ipywidgets and pandas (each only where needed, so
``import tsm_notebook`` stays cheap). Never the engine and never the command line.
"""
