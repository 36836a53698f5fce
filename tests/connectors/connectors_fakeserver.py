"""A fault-injecting HTTP server on 127.0.0.1 for connector tests: it answers a scripted list of replies.

    with ScriptedServer([Reply(503), Reply(200, body)]) as server:
        ... server.url ...; server.requests -> [(path, {query}), ...]; server.request_headers -> [{...}, ...]

A reply may be delayed (to provoke timeouts) or cut short (Content-Length larger than the body sent).
`route` instead of a list: a function (path, query) -> Reply.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/xml"
    delay_s: float = 0.0
    truncate_to: int | None = None  # send only this many body bytes, then close
    headers: dict = field(default_factory=dict)


class ScriptedServer:
    def __init__(self, script):
        self._script = list(script) if not callable(script) else None
        self._route = script if callable(script) else None
        self._lock = threading.Lock()
        self.requests: list[tuple[str, dict]] = []
        self.request_headers: list[dict] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                parts = urlsplit(self.path)
                query = dict(parse_qsl(parts.query, keep_blank_values=True))
                with owner._lock:
                    owner.request_headers.append(dict(self.headers.items()))
                reply = owner._next(parts.path, query)
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", reply.content_type)
                    self.send_header("Content-Length", str(len(reply.body)))
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    if reply.truncate_to is not None:
                        self.send_header("Connection", "close")
                    self.end_headers()
                    if reply.truncate_to is not None:
                        self.wfile.write(reply.body[:reply.truncate_to])
                        self.wfile.flush()
                        self.close_connection = True
                    else:
                        self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)

    def _next(self, path: str, query: dict) -> Reply:
        with self._lock:
            self.requests.append((path, query))
            if self._route is not None:
                return self._route(path, query)
            if not self._script:
                return Reply(599, b"script exhausted: unexpected extra request", "text/plain")
            return self._script.pop(0)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> "ScriptedServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
