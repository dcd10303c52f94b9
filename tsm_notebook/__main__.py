"""``python -m tsm_notebook`` is the ``tsm`` command line."""

from .cli.main import main

raise SystemExit(main())
