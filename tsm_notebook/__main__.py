"""``python -m tsm_notebook`` is the ``tsm`` command line."""

from .cli import main

raise SystemExit(main())
