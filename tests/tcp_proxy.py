"""A loopback TCP relay in front of a real server (MariaDB, DynamoDB Local) that can be cut:
``down()`` resets every relayed connection and resets new ones at once, as a server that
crashed; ``up()`` relays again. Only the clients given ``port`` lose the server; the test
keeps its own direct connection."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from typing import Any


class TcpProxy:
    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)
        self.port = self.listener.getsockname()[1]
        self.is_down = False
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> TcpProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.listener.close()
        self.down()

    def down(self) -> None:
        with self._lock:
            self.is_down = True
            for sock in list(self._open):
                _reset(sock)
            self._open.clear()

    def up(self) -> None:
        with self._lock:
            self.is_down = False

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                down = self.is_down
            if down:
                _reset(client)
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                _reset(client)
                continue
            server.settimeout(None)
            with self._lock:
                if self.is_down:  # cut while this one was being made
                    _reset(client)
                    _reset(server)
                    continue
                self._open.update((client, server))
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with self._lock:
                    self._open.discard(sock)
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    sock.close()


def _reset(sock: Any) -> None:
    """Close with RST (SO_LINGER 0), as a peer that went away. The shutdown first wakes the
    relay thread blocked reading the socket: a bare close() would leave the kernel's socket
    open under that read, and the server's side of the connection (a transaction's locks
    with it) alive, as no crash does."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
