"""A tiny DynamoDB stand-in for unit tests of the HTTP client: a real HTTP/1.1 keep-alive
server on loopback (``http.server`` in a thread) that answers each call from a script of
(status, body, headers) and then with DynamoDB's usual success, and records what it got.
The faults it answers (an HTML 503, throttling, a damaged body) reach the client over a
real socket exactly as a load balancer or DynamoDB would send them."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

JSON = "application/x-amz-json-1.0"
HTML_503 = b"<html><body><b>Http/1.1 Service Unavailable</b></body></html>"
_SUCCESS = {
    "BatchWriteItem": b'{"UnprocessedItems":{}}',
    "ListTables": b'{"TableNames":[]}',
}


@dataclass(frozen=True)
class Seen:
    path: str
    target: str
    headers: dict[str, str]
    body: bytes


def dynamo_error(code: str, message: str = "no") -> bytes:
    return (
        '{"__type":"com.amazonaws.dynamodb.v20120810#' + code + '","message":"' + message + '"}'
    ).encode()


@dataclass
class Answer:
    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    content_type: str = JSON


class FakeDynamo:
    """Serves on a free port of 127.0.0.1 while used as a context manager; ``url`` is the
    endpoint (``path`` appended). ``script`` is answered first, one entry per call."""

    def __init__(self, path: str = "") -> None:
        self.script: list[Answer] = []
        self.seen: list[Seen] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as DynamoDB

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                target = self.headers.get("X-Amz-Target", "").rsplit(".", 1)[-1]
                with fake.lock:
                    fake.seen.append(Seen(self.path, target, dict(self.headers.items()), body))
                    answer = fake.script.pop(0) if fake.script else None
                if answer is None:
                    answer = Answer(200, _SUCCESS.get(target, b"{}"))
                self.send_response(answer.status)
                self.send_header("Content-Type", answer.content_type)
                self.send_header("Content-Length", str(len(answer.body)))
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(answer.body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{path}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeDynamo:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def answer(self, *answers: Answer) -> None:
        with self.lock:
            self.script.extend(answers)

    def targets(self) -> list[str]:
        with self.lock:
            return [s.target for s in self.seen]


def open_sockets() -> int:
    """Sockets this process has open now (client and server ends alike)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # closed while listed
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
    return count
