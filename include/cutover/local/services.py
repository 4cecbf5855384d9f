"""The local services behind `cutover up|down|status`: MariaDB and DynamoDB Local.

A service that already answers is left alone; what cutover starts it records in a pid file
under .local/, and `down` stops only that. No systemd: these machines run without it.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cutover.errors import ServiceError
from cutover.settings import LOCAL_DIR, Settings

DYNAMODB_HOME = LOCAL_DIR / "dynamodb"


@dataclass(frozen=True)
class ServiceState:
    name: str
    address: str
    running: bool
    managed_by_cutover: bool
    detail: str = ""


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _pid_alive(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().strip())
        # an exited child of this process stays a zombie, which kill(pid, 0) counts alive
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return None
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def _wait(check: object, what: str, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.25)
    raise ServiceError(f"{what} did not answer within {timeout:.0f}s; see {log}")


def _terminate(pid: int, alive: Callable[[], bool], timeout: float) -> None:
    """SIGTERM to ``pid``'s process group; SIGKILL when ``alive()`` after ``timeout``."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive():
        time.sleep(0.2)
    if alive():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def _stop(pid_file: Path, timeout: float = 20) -> bool:
    pid = _pid_alive(pid_file)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return False
    _terminate(pid, lambda: _pid_alive(pid_file) is not None, timeout)
    pid_file.unlink(missing_ok=True)
    return True


# --- DynamoDB Local ------------------------------------------------------------------------


@dataclass(frozen=True)
class DynamoLocal:
    port: int
    home: Path = DYNAMODB_HOME
    state_dir: Path = LOCAL_DIR
    in_memory: bool = False

    @classmethod
    def for_endpoint(cls, endpoint: str, in_memory: bool = False) -> DynamoLocal:
        return cls(port=urlsplit(endpoint).port or 8000, in_memory=in_memory)

    @property
    def pid_file(self) -> Path:
        return self.state_dir / f"dynamodb-{self.port}.pid"

    @property
    def log_file(self) -> Path:
        return self.state_dir / f"dynamodb-{self.port}.log"

    @property
    def data_dir(self) -> Path:
        return self.state_dir / f"dynamodb-data-{self.port}"

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def state(self) -> ServiceState:
        running = port_open("127.0.0.1", self.port)
        pid = _pid_alive(self.pid_file)
        detail = "in memory" if self.in_memory else f"data in {self.data_dir}"
        return ServiceState("dynamodb", self.address, running, pid is not None,
                            f"pid {pid}, {detail}" if pid else "")  # fmt: skip

    def up(self, timeout: float = 60) -> ServiceState:
        if port_open("127.0.0.1", self.port):
            return self.state()
        jar = self.home / "DynamoDBLocal.jar"
        if not jar.exists():
            raise ServiceError(f"DynamoDB Local is not installed at {jar}; run `make setup`")
        java = shutil.which("java")
        if java is None:
            raise ServiceError("java is not installed; run `make setup`")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        storage = ["-inMemory"] if self.in_memory else ["-dbPath", str(self.data_dir)]
        if not self.in_memory:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        # a large in-memory table needs more than Java's default heap (a quarter of RAM)
        heap = os.environ.get("CUTOVER_DYNAMODB_HEAP")
        jvm = [f"-Xmx{heap}"] if heap else []
        with self.log_file.open("ab") as log:
            proc = subprocess.Popen(
                [java, *jvm, "-Djava.library.path=DynamoDBLocal_lib", "-jar", str(jar),
                 "-sharedDb", "-port", str(self.port), *storage],
                cwd=self.home, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        self.pid_file.write_text(str(proc.pid))
        _wait(lambda: port_open("127.0.0.1", self.port) and proc.poll() is None,
              f"DynamoDB Local on port {self.port}", self.log_file, timeout)  # fmt: skip
        return self.state()

    def down(self) -> ServiceState:
        _stop(self.pid_file)
        return self.state()


# --- MariaDB -------------------------------------------------------------------------------

MARIADBD = "/usr/sbin/mariadbd"
# A unix socket path longer than this (sun_path, less its NUL) cannot be bound.
MAX_SOCKET_PATH = 107
# The binlog the sync reads: every column of every changed row, with the column names.
BINLOG_OPTIONS = (
    "--server-id=1",
    "--binlog-format=ROW",
    "--binlog-row-image=FULL",
    "--binlog-row-metadata=FULL",
    "--log-slave-updates",
    "--expire-logs-days=7",
)


def mariadbd_os_user() -> str | None:
    """Run as root, mariadbd must switch to the unprivileged `mysql`; otherwise it runs as us."""
    return "mysql" if os.geteuid() == 0 else None


def process_cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def reachable_by(user: str, path: Path) -> None:
    """Raise unless ``user`` may enter every directory above ``path`` (mariadbd runs as it)."""
    account = pwd.getpwnam(user)
    groups = set(os.getgrouplist(user, account.pw_gid))
    for parent in reversed(path.resolve().parents):
        st = parent.stat()
        if st.st_uid == account.pw_uid:
            ok = bool(st.st_mode & stat.S_IXUSR)
        elif st.st_gid in groups:
            ok = bool(st.st_mode & stat.S_IXGRP)
        else:
            ok = bool(st.st_mode & stat.S_IXOTH)
        if not ok:
            raise ServiceError(
                f"user {user} cannot enter {parent} (mode {stat.filemode(st.st_mode)}), so "
                f"mariadbd could not reach {path}; allow it (chmod o+x {parent}) or keep the "
                "project in a directory every user may enter"
            )


def chown_tree(path: Path, user: str) -> None:
    account = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        for entry in (root, *(os.path.join(root, name) for name in (*dirs, *files))):
            with contextlib.suppress(FileNotFoundError):
                os.chown(entry, account.pw_uid, account.pw_gid, follow_symlinks=False)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass(frozen=True)
class MariaDBFiles:
    """One directory holding everything of a MariaDB server of cutover's own: ``data/``,
    ``mysqld.sock``, ``mysqld.pid`` (mariadbd's own), ``error.log`` and ``tmp/``. Its server
    reads no option file (``--no-defaults``): /etc/mysql's are the machine's shared server's,
    with its port 3306 and its /run/mysqld socket."""

    directory: Path
    os_user: str | None = field(default_factory=mariadbd_os_user)

    @property
    def datadir(self) -> Path:
        return self.directory / "data"

    @property
    def socket(self) -> Path:
        return self.directory / "mysqld.sock"

    @property
    def pid_file(self) -> Path:
        return self.directory / "mysqld.pid"

    @property
    def log_file(self) -> Path:
        return self.directory / "error.log"

    @property
    def tmpdir(self) -> Path:
        return self.directory / "tmp"

    def options(self, host: str, port: int) -> list[str]:
        """mariadbd's options for these files on ``host:port``; the caller adds the rest."""
        user = [f"--user={self.os_user}"] if self.os_user else []
        return [
            "--no-defaults",  # must come first
            *user,
            f"--datadir={self.datadir}",
            f"--socket={self.socket}",
            f"--pid-file={self.pid_file}",
            f"--log-error={self.log_file}",
            f"--tmpdir={self.tmpdir}",
            f"--port={port}",
            f"--bind-address={host}",
            "--skip-name-resolve",
            "--character-set-server=utf8mb4",
        ]

    def prepare(self, install_options: list[str]) -> None:
        """Create the directory, initialise ``data/`` once (mariadb-install-db with
        ``install_options``) and hand it all to the server's user."""
        if len(str(self.socket)) > MAX_SOCKET_PATH:
            raise ServiceError(f"socket path {self.socket} is too long; use a shorter directory")
        self.tmpdir.mkdir(parents=True, exist_ok=True)
        if self.os_user:
            reachable_by(self.os_user, self.directory)
        self._install(install_options)
        self.log_file.touch()
        if self.os_user:
            chown_tree(self.directory, self.os_user)

    def spawn(self, options: list[str]) -> subprocess.Popen[bytes]:
        """Start mariadbd in a session of its own, its output appended to the error log."""
        if not Path(MARIADBD).exists():
            raise ServiceError(f"{MARIADBD} is not installed; run `make setup`")
        with self.log_file.open("ab") as log:
            return subprocess.Popen(
                [MARIADBD, *options],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip

    def server_pid(self) -> int | None:
        """The pid in mariadbd's pid file while that process serves this data directory (a
        pid file left behind may name a recycled pid; an exited child shows no command line)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if f"--datadir={self.datadir}" in process_cmdline(pid) else None

    def tail(self) -> str:
        return _tail(self.log_file)

    def _install(self, install_options: list[str]) -> None:
        if (self.datadir / "mysql").is_dir():
            return
        shutil.rmtree(self.datadir, ignore_errors=True)  # a half-done earlier attempt
        self.datadir.mkdir(parents=True)
        if self.os_user:
            chown_tree(self.directory, self.os_user)
        user = [f"--user={self.os_user}"] if self.os_user else []
        # Its own tmpdir, never /tmp: a starting mariadbd deletes every #sql* file in its
        # tmpdir, so two installs (or servers) sharing one break each other's temporary tables.
        done = subprocess.run(
            ["mariadb-install-db", "--no-defaults", *user, f"--datadir={self.datadir}",
             f"--tmpdir={self.tmpdir}", *install_options],
            capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        if done.returncode != 0 or not (self.datadir / "mysql").is_dir():
            raise ServiceError(f"mariadb-install-db failed in {self.datadir}: "
                               f"{(done.stderr or done.stdout)[-2000:]}; see the message, "
                               f"then remove {self.datadir} and try again")  # fmt: skip


# A fresh install admits root over the socket only (unix_socket auth); these let root in over
# TCP with an empty password too, as mysql://root@127.0.0.1:PORT/db expects.
_ROOT_OVER_TCP = (
    "ALTER USER root@localhost IDENTIFIED VIA unix_socket "
    "OR mysql_native_password USING PASSWORD('')",
    "CREATE USER IF NOT EXISTS root@'127.0.0.1' IDENTIFIED VIA mysql_native_password "
    "USING PASSWORD('')",
    "GRANT ALL PRIVILEGES ON *.* TO root@'127.0.0.1' WITH GRANT OPTION",
)


@dataclass(frozen=True)
class LocalMariaDB:
    """cutover's own MariaDB: its binlog on for the sync, everything under ``.local/mariadb``.

    The machine's own MariaDB (3306) may run without a binlog and is shared, so it is never
    started, stopped or reconfigured here."""

    host: str
    port: int
    state_dir: Path = LOCAL_DIR

    @property
    def files(self) -> MariaDBFiles:
        return MariaDBFiles(self.state_dir / "mariadb")

    @property
    def pid_file(self) -> Path:
        return self.files.pid_file

    @property
    def log_file(self) -> Path:
        return self.files.log_file

    def options(self) -> list[str]:
        return [
            *self.files.options("127.0.0.1", self.port),
            "--collation-server=utf8mb4_unicode_ci",
            f"--log-bin={self.files.datadir / 'binlog'}",
            *BINLOG_OPTIONS,
            "--innodb-buffer-pool-size=256M",
        ]

    def state(self) -> ServiceState:
        running = port_open(self.host, self.port)
        pid = self.files.server_pid()
        if pid is not None:
            detail = f"pid {pid}, binlog on, data in {self.files.datadir}"
        else:
            detail = "already running" if running else ""
        return ServiceState("mysql", f"{self.host}:{self.port}", running, pid is not None, detail)

    def up(self, timeout: float = 60) -> ServiceState:
        if port_open(self.host, self.port):
            return self.state()
        if self.host not in ("127.0.0.1", "localhost"):
            raise ServiceError(f"MySQL at {self.host}:{self.port} does not answer; cutover "
                               "starts only a local MariaDB")  # fmt: skip
        self._refuse_second_server()
        self.files.prepare(["--skip-test-db"])
        proc = self.files.spawn(self.options())
        self._wait_for_socket(proc, timeout)
        self._allow_root_over_tcp()
        _wait(lambda: port_open(self.host, self.port), f"MariaDB on port {self.port}",
              self.log_file, timeout)  # fmt: skip
        return self.state()

    def down(self, timeout: float = 60) -> ServiceState:
        pid = self.files.server_pid()
        if pid is not None:
            _terminate(pid, lambda: self.files.server_pid() == pid, timeout)
        return self.state()

    def _refuse_second_server(self) -> None:
        pid = self.files.server_pid()
        if pid is not None:
            raise ServiceError(
                f"cutover's MariaDB (pid {pid}, data in {self.files.datadir}) runs but does "
                f"not answer on {self.host}:{self.port}; stop it with `cutover down`, then "
                "run `cutover up` again"
            )

    def _socket_login(self, connect_timeout: int = 5) -> Any:
        import MySQLdb

        return MySQLdb.connect(unix_socket=str(self.files.socket), user="root",
                               connect_timeout=connect_timeout)  # fmt: skip

    def _wait_for_socket(self, proc: subprocess.Popen[bytes], timeout: float) -> None:
        import MySQLdb

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise ServiceError(f"mariadbd exited while starting (code {proc.returncode}); "
                                   f"see {self.log_file}:\n{self.files.tail()}")  # fmt: skip
            try:
                self._socket_login(connect_timeout=2).close()
                return
            except MySQLdb.OperationalError:
                time.sleep(0.2)
        raise ServiceError(
            f"MariaDB did not accept root on {self.files.socket} within {timeout:.0f}s; "
            f"see {self.log_file}:\n{self.files.tail()}"
        )

    def _allow_root_over_tcp(self) -> None:
        conn = self._socket_login()
        try:
            with conn.cursor() as cur:
                for statement in _ROOT_OVER_TCP:
                    cur.execute(statement)
        finally:
            conn.close()


def ensure_database(settings: Settings) -> None:
    from cutover.db import connect, query, quote_ident

    conn = connect(settings.mysql, database=False)
    try:
        query(conn, f"CREATE DATABASE IF NOT EXISTS {quote_ident(settings.mysql.database)} "
                    "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")  # fmt: skip
    finally:
        conn.close()


# --- the commands --------------------------------------------------------------------------


def _mariadb(settings: Settings) -> LocalMariaDB:
    return LocalMariaDB(settings.mysql.host, settings.mysql.port)


def _dynamo(settings: Settings, in_memory: bool = False) -> DynamoLocal | None:
    endpoint = settings.dynamodb_endpoint
    if not endpoint or urlsplit(endpoint).hostname not in ("127.0.0.1", "localhost"):
        return None
    return DynamoLocal.for_endpoint(endpoint, in_memory)


def _aws_state(settings: Settings) -> ServiceState:
    where = settings.dynamodb_endpoint or f"AWS {settings.region}"
    return ServiceState("dynamodb", where, True, False, "not local: nothing to start")


def up(settings: Settings, in_memory: bool = False) -> list[ServiceState]:
    states = [_mariadb(settings).up()]
    ensure_database(settings)
    dynamo = _dynamo(settings, in_memory)
    states.append(dynamo.up() if dynamo else _aws_state(settings))
    return states


def down(settings: Settings) -> list[ServiceState]:
    dynamo = _dynamo(settings)
    return [_mariadb(settings).down(), dynamo.down() if dynamo else _aws_state(settings)]


def status(settings: Settings) -> list[ServiceState]:
    dynamo = _dynamo(settings)
    return [_mariadb(settings).state(), dynamo.state() if dynamo else _aws_state(settings)]
