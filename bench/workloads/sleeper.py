"""An idle child: it sleeps until a signal ends it, waking for nothing in between.

SIGTERM ends it (default action); SIGINT too, quietly, since PM2 stops with SIGINT and a
KeyboardInterrupt traceback in every log would be noise.
"""

import signal

signal.signal(signal.SIGINT, signal.SIG_DFL)
while True:
    signal.pause()
