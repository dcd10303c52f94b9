"""An idle child that ignores the polite stop signals (SIGTERM and SIGINT): only SIGKILL ends it.

Both are ignored because PM2 stops with SIGINT and supervisor with SIGTERM; a manager has to wait
out its kill timeout (PM2 ``kill_timeout`` 1.6 s, supervisor ``stopwaitsecs`` 10 s) and then kill.
"""

import signal

signal.signal(signal.SIGTERM, signal.SIG_IGN)
signal.signal(signal.SIGINT, signal.SIG_IGN)
while True:
    signal.pause()
