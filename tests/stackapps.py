"""A small real stack for the tests: Redis, a one-shot migration that writes a key, an HTTP API
that answers /health only once the key is there, a worker that refuses to start unless the API is
healthy, and a web front end with two instances. No dependency beyond the standard library and
Debian's redis-server: the scripts speak RESP over a socket."""

from __future__ import annotations

import shutil
import socket
import textwrap
from pathlib import Path

from conftest import free_port

REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"

RESP = '''
import os, socket, sys

def redis(*args):
    """One RESP command to the stack's Redis; a bulk reply's text, None for nil, else the line."""
    with socket.create_connection(("127.0.0.1", int(os.environ["REDIS_PORT"])), timeout=2) as s:
        s.sendall(("*%d\\r\\n" % len(args) + "".join("$%d\\r\\n%s\\r\\n" % (len(a), a) for a in args)).encode())
        f = s.makefile("rb")
        head = f.readline().decode().strip()
        if head.startswith("$"):
            return None if head == "$-1" else f.readline().decode().strip()
        return head
'''

MIGRATE = RESP + '''
if os.environ.get("MIGRATION_FAILS"):
    print("migration failed: column 'price' already exists", file=sys.stderr, flush=True)
    sys.exit(3)
redis("SET", "schema:version", "3")
print("migrated to version 3", flush=True)
'''

API = RESP + '''
from http.server import BaseHTTPRequestHandler, HTTPServer

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/health":
            version = redis("GET", "schema:version")
            code, body = (200, "ok " + version) if version else (503, "no schema yet")
        elif self.path == "/never":
            code, body = 503, "never healthy"
        else:
            code, body = 404, "no"
        self.send_response(code)
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *a):
        pass

print("api listening", flush=True)
HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
'''

WORKER = '''
import os, sys, time, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
try:
    health = opener.open(os.environ["API"] + "/health", timeout=2).read().decode()
except Exception as exc:
    print("worker: the API is not healthy: %s" % exc, file=sys.stderr, flush=True)
    sys.exit(1)
print("worker ready (api says %s) %s" % (health, " ".join(sys.argv[1:])), flush=True)
while True:
    time.sleep(0.2)
'''

WEB = '''
import os
from http.server import HTTPServer, SimpleHTTPRequestHandler
HTTPServer(("127.0.0.1", int(os.environ["PORT"])), SimpleHTTPRequestHandler).serve_forever()
'''


class Shop:
    """The stack's folder, ports and file; ``write(**changes)`` rewrites ``tsm.toml``."""

    def __init__(self, folder: Path, python: str) -> None:
        self.folder = folder
        self.python = python
        self.redis_port, self.api_port, self.web_port = free_port(), free_port(), free_port()
        for name, body in (("migrate.py", MIGRATE), ("api.py", API), ("worker.py", WORKER), ("web.py", WEB)):
            (folder / name).write_text(textwrap.dedent(body))
        self.file = folder / "tsm.toml"
        self.write()

    def env(self) -> dict[str, str]:
        """What the tests add to the caller's environment: ${API_PORT} is expanded from it."""
        return {"API_PORT": str(self.api_port)}

    def write(self, *, worker_args: str = "", api_ready: str = "http://127.0.0.1:$PORT/health",
              api_timeout: str = "20s", migrate_env: str = "", extra: str = "") -> Path:
        py = self.python
        self.file.write_text(textwrap.dedent(f'''\
            name = "shop"

            [env]
            REDIS_PORT = "{self.redis_port}"

            [redis]
            argv = ["{REDIS}", "--port", "{self.redis_port}", "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes", "--dir", "{self.folder}"]
            ready = "port"

            [migrate]
            argv = ["{py}", "migrate.py"]
            depends_on = ["redis"]
            ready = "exit"
            {migrate_env}

            [api]
            argv = ["{py}", "api.py"]
            port = {self.api_port}
            depends_on = ["migrate", "redis"]
            ready = "{api_ready}"
            ready_timeout = "{api_timeout}"

            [worker]
            cmd = "{py} worker.py {worker_args}"
            depends_on = ["api"]
            env = {{ API = "http://127.0.0.1:${{API_PORT}}" }}
            ready = {{ log = "worker ready" }}

            [web]
            argv = ["{py}", "web.py"]
            port = "{self.web_port}+"
            instances = 2
            depends_on = ["api"]
            kill_timeout = "3s"
            {extra}
            '''))
        return self.file


def redis_get(port: int, key: str) -> str | None:
    """GET over RESP, from the test itself."""
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(f"*2\r\n$3\r\nGET\r\n${len(key)}\r\n{key}\r\n".encode())
        f = s.makefile("rb")
        head = f.readline().decode().strip()
        return None if head == "$-1" else f.readline().decode().strip()
