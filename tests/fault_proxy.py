"""A loopback HTTP proxy in front of the real DynamoDB Local, for faults it never produces by
itself (throttling, UnprocessedItems, a page slower than the client's timeout).

It is a fault injector, not a mock: every call it lets through is served by DynamoDB Local.
A subclass decides per call in ``answer``; the default forwards the call unchanged.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

CONTENT_TYPE = "application/x-amz-json-1.0"


class DynamoProxy:
    """Serves on a free port of 127.0.0.1 while used as a context manager; ``url`` is the
    endpoint to give the client under test."""

    def __init__(self, upstream: str) -> None:
        self.upstream = urlsplit(upstream)
        self.lock = threading.Lock()
        self.paths: list[str] = []  # the path of every call, as the client posted it
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                target = self.headers.get("X-Amz-Target", "").rsplit(".", 1)[-1]
                with proxy.lock:
                    proxy.paths.append(self.path)
                status, payload = proxy.answer(target, self.headers, body)
                # a page from something in front of DynamoDB is HTML, not DynamoDB's JSON
                kind = "text/html" if payload.lstrip().startswith(b"<") else CONTENT_TYPE
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", kind)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass  # the client gave up on this call (its read timeout)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> DynamoProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def answer(self, target: str, headers: Mapping[str, str], body: bytes) -> tuple[int, bytes]:
        """(status, payload) for one call; ``target`` is the operation, e.g. ``Scan``."""
        return self.forward(headers, body)

    def forward(self, headers: Mapping[str, str], body: bytes) -> tuple[int, bytes]:
        # The client's signature covers the proxy's host; DynamoDB Local does not check it.
        conn = http.client.HTTPConnection(self.upstream.hostname or "", self.upstream.port)
        keep = {k: v for k, v in headers.items() if k.lower() != "content-length"}
        try:
            conn.request("POST", "/", body=body, headers=keep)
            reply = conn.getresponse()
            return reply.status, reply.read()
        finally:
            conn.close()
