"""Private MariaDB and DynamoDB Local servers that a fault drill may stop, kill and restart.

A drill that stops "the database" must stop one that the test itself started, never the
machine's shared ones (MariaDB on 127.0.0.1:3306, the suite's DynamoDB Local): other tests,
other sessions and the user's own work depend on those. So each server here runs on a free
port, with its data, socket, pid file and log under one directory of its own, and stop() and
kill() act only on the process this object started (or, after a crash of the test process,
the one its pid file names and whose command line names its own data directory).

Data lives on disk, so it survives stop()/start() and, for MariaDB, kill() (crash recovery).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
import weakref
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from cutover.errors import ServiceError
from cutover.local.services import (
    DynamoLocal,
    MariaDBFiles,
    port_open,
    process_cmdline,
)
from cutover.settings import LOCAL_DIR

HOST = "127.0.0.1"
# Under the project, not pytest's tmp_path: /tmp/pytest-of-root is mode 0700, so the `mysql`
# user that mariadbd switches to could not reach a data directory below it.
DRILLS_DIR = LOCAL_DIR / "drills"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _new_directory(kind: str) -> Path:
    return DRILLS_DIR / f"{kind}-{uuid.uuid4().hex[:8]}"


def _remembered_port(directory: Path, port: int | None) -> int:
    """The port this directory's server used before (so a restart keeps its address), else
    ``port``, else a free one; written down for the next time."""
    directory.mkdir(parents=True, exist_ok=True)
    port_file = directory / "port"
    if port is None and port_file.exists():
        port = int(port_file.read_text().strip())
    if port is None:
        port = free_port()
    port_file.write_text(f"{port}\n")
    return port


def _alive(pid: int) -> bool:
    """True while ``pid`` runs; reaps it first if it is our exited child (a zombie still
    answers kill(pid, 0))."""
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    state = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError, IndexError):
        if state.read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)  # poll: until the process is gone
    return not _alive(pid)


def _terminate(pid: int, timeout: float) -> None:
    """SIGTERM to ``pid``'s process group, SIGKILL if it has not exited after ``timeout``."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    if not _wait_gone(pid, timeout):
        _sigkill(pid)


def _sigkill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    if not _wait_gone(pid, 10):
        raise ServiceError(f"process {pid} survived SIGKILL")


class _PrivateServer:
    """What both private servers share: stop, kill, restart, close, and a context manager.
    Subclasses give ``pid``, ``start`` and ``_release`` (what to drop once the process is
    gone)."""

    directory: Path
    _finalizer: weakref.finalize[Any, Any] | None

    @property
    def pid(self) -> int | None:
        raise NotImplementedError

    @property
    def running(self) -> bool:
        return self.pid is not None

    def start(self, timeout: float = 60) -> None:
        raise NotImplementedError

    def stop(self, timeout: float = 30) -> None:
        """A clean shutdown: SIGTERM, then SIGKILL if it has not exited after ``timeout``."""
        pid = self.pid
        if pid is not None:
            _terminate(pid, timeout)
        self._forget()

    def kill(self) -> None:
        """SIGKILL: a crash."""
        pid = self.pid
        if pid is not None:
            _sigkill(pid)
        self._forget()

    def restart(self, timeout: float = 60) -> None:
        self.stop()
        self.start(timeout)

    def close(self) -> None:
        """Stop the server and remove its directory, data and all."""
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _release(self) -> None:
        pass

    def _forget(self) -> None:
        self._release()
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None


class PrivateMariaDB(_PrivateServer):
    """A MariaDB server of one test's own, on a free port of 127.0.0.1.

    Everything it has lives under ``directory``: ``data/`` (initialised once with
    mariadb-install-db; root logs in over TCP with an empty password), ``mysqld.sock``,
    ``mysqld.pid``, ``error.log``, ``tmp/`` and ``port``. It reads no option file
    (``--no-defaults``), so /etc/mysql's port 3306 and /run/mysqld socket are never used, and
    it is kept small (64M buffer pool, 16M redo log, no binary log). ``options`` are added
    after its own (a later option wins), e.g. ``["--log-bin=...", "--binlog-format=ROW"]``.

    ``stop()``, ``kill()`` and ``close()`` act on this server only: the shared one on 3306
    that other tests and users rely on is never touched.
    """

    host = HOST
    user = "root"

    def __init__(
        self,
        directory: Path | None = None,
        port: int | None = None,
        *,
        options: Sequence[str] = (),
    ) -> None:
        self.directory = (directory or _new_directory("mariadb")).resolve()
        self.port = _remembered_port(self.directory, port)
        self.files = MariaDBFiles(self.directory)
        self.extra_options = list(options)
        self._proc: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None

    # --- where things are ------------------------------------------------------------------

    @property
    def datadir(self) -> Path:
        return self.files.datadir

    @property
    def socket(self) -> Path:
        return self.files.socket

    @property
    def pid_file(self) -> Path:
        return self.files.pid_file

    @property
    def log_file(self) -> Path:
        return self.files.log_file

    def url(self, database: str) -> str:
        """The connection URL of ``database`` on this server (as in CUTOVER_MYSQL_URL)."""
        return f"mysql://{self.user}@{self.host}:{self.port}/{database}"

    # --- the process -----------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The pid of this server's mariadbd while it runs, else None."""
        if self._proc is not None:
            if self._proc.poll() is None:
                return self._proc.pid
            self._proc = None
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        # A pid file left behind may name a recycled pid: trust it only if that process is a
        # mariadbd serving this very data directory.
        if _alive(pid) and f"--datadir={self.datadir}" in process_cmdline(pid):
            return pid
        return None

    def start(self, timeout: float = 60) -> None:
        """Start the server unless it runs; return once root can log in over TCP."""
        if self.running:
            self._wait_ready(timeout)
            return
        self.files.prepare(
            ["--auth-root-authentication-method=normal", "--skip-test-db", "--skip-name-resolve",
             "--innodb-log-file-size=16M", "--innodb-buffer-pool-size=64M", "--skip-log-bin"]
        )  # fmt: skip
        self._proc = self.files.spawn(self._options())
        # Should the test process end without close(), do not leave a server behind.
        self._finalizer = weakref.finalize(self, _kill_quietly, self._proc.pid)
        self._wait_ready(timeout)

    # --- SQL -------------------------------------------------------------------------------

    def connect(self, database: str | None = None, connect_timeout: int = 5) -> Any:
        """A MySQLdb connection as root over TCP (never the socket, as clients of 3306 do)."""
        import MySQLdb

        kwargs: dict[str, Any] = {"db": database} if database else {}
        return MySQLdb.connect(host=self.host, port=self.port, user=self.user, passwd="",
                               connect_timeout=connect_timeout, **kwargs)  # fmt: skip

    def create_database(self, name: str) -> None:
        if "`" in name:
            raise ValueError(f"database name {name!r} contains a backquote")
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE IF NOT EXISTS `{name}` "
                            "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")  # fmt: skip
        finally:
            conn.close()

    # --- internals -------------------------------------------------------------------------

    def _options(self) -> list[str]:
        return [
            *self.files.options(self.host, self.port),
            "--collation-server=utf8mb4_general_ci",  # as the shared server's my.cnf has it
            "--skip-log-bin",
            "--innodb-buffer-pool-size=64M",
            "--innodb-log-file-size=16M",
            *self.extra_options,
        ]

    def _wait_ready(self, timeout: float) -> None:
        import MySQLdb

        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if not self.running:
                raise ServiceError(f"mariadbd in {self.directory} exited while starting:\n"
                                   f"{self.files.tail()}")  # fmt: skip
            try:
                conn = self.connect(connect_timeout=2)
            except MySQLdb.OperationalError as exc:
                last = exc
                time.sleep(0.1)  # poll: until the server accepts a connection
                continue
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT @@datadir")
                    (datadir,) = cur.fetchone()
            finally:
                conn.close()
            if Path(datadir).resolve() != self.datadir:
                raise ServiceError(
                    f"port {self.port} is served by another MariaDB (datadir {datadir}), "
                    f"not the one in {self.directory}"
                )
            return
        raise ServiceError(
            f"mariadbd in {self.directory} did not accept root over TCP on port {self.port} "
            f"within {timeout:.0f}s ({last}):\n{self.files.tail()}"
        )

    def _release(self) -> None:
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=1)
        self._proc = None


def _kill_quietly(pid: int) -> None:
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)


class PrivateDynamoDB(_PrivateServer):
    """A DynamoDB Local of one test's own, on a free port, its tables on disk under
    ``directory`` (``-dbPath``, not ``-inMemory``), so they survive stop()/start(); or, with
    ``in_memory``, kept in memory (faster, lost on stop).

    It is cutover's own ``DynamoLocal`` with a private ``state_dir``: its pid file, log and
    data are there, and stop() acts on that pid only, never on the suite's DynamoDB Local.
    """

    def __init__(
        self, directory: Path | None = None, port: int | None = None, *, in_memory: bool = False
    ) -> None:
        self.directory = (directory or _new_directory("dynamodb")).resolve()
        self.port = _remembered_port(self.directory, port)
        self.local = DynamoLocal(port=self.port, state_dir=self.directory, in_memory=in_memory)
        self._finalizer: weakref.finalize[Any, Any] | None = None

    @property
    def endpoint(self) -> str:
        return self.local.address

    @property
    def pid(self) -> int | None:
        try:
            pid = int(self.local.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        cmdline = process_cmdline(pid)
        # on disk its data folder names it; in memory its port (the folder is not passed)
        ours = (
            "-inMemory" in cmdline and str(self.port) in cmdline
            if self.local.in_memory
            else str(self.local.data_dir) in cmdline
        )
        return pid if _alive(pid) and ours else None

    def start(self, timeout: float = 60) -> None:
        """Start DynamoDB Local unless it runs; return once its port answers."""
        if self.running:
            return
        if port_open(HOST, self.port):
            # DynamoLocal.up() would take whatever answers there for ours.
            raise ServiceError(f"port {self.port} is taken by another process")
        self.local.up(timeout=timeout)
        pid = self.pid
        if pid is None:
            raise ServiceError(f"DynamoDB Local on port {self.port} did not start; "
                               f"see {self.local.log_file}")  # fmt: skip
        self._finalizer = weakref.finalize(self, _kill_quietly, pid)

    def client(self, **config: Any) -> Any:
        """A boto3 DynamoDB client for this server that fails fast (one attempt, 2 s to
        connect) instead of retrying a stopped server; ``config`` overrides botocore Config."""
        import boto3
        from botocore.config import Config

        settings: dict[str, Any] = {"retries": {"max_attempts": 1, "mode": "standard"},
                                    "connect_timeout": 2, "read_timeout": 10}  # fmt: skip
        settings.update(config)
        return boto3.client("dynamodb", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id="x", aws_secret_access_key="x",
                            config=Config(**settings))  # fmt: skip

    def _release(self) -> None:
        # the base stop() has terminated and reaped the JVM; down() only removes the pid file
        self.local.down()
