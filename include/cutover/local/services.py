"""The local services behind `cutover up|down|status`: MariaDB and DynamoDB Local.

A service that already answers is left alone; what cutover starts it records in a pid file
under .local/, and `down` stops only that. No systemd: these machines run without it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
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


def _stop(pid_file: Path, timeout: float = 20) -> bool:
    pid = _pid_alive(pid_file)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return False
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _pid_alive(pid_file):
        time.sleep(0.2)
    if _pid_alive(pid_file):
        os.killpg(pid, signal.SIGKILL)
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


@dataclass(frozen=True)
class LocalMariaDB:
    host: str
    port: int
    state_dir: Path = LOCAL_DIR

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "mariadb.pid"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "mariadb.log"

    def state(self) -> ServiceState:
        running = port_open(self.host, self.port)
        managed = _pid_alive(self.pid_file) is not None
        return ServiceState("mysql", f"{self.host}:{self.port}", running, managed,
                            "" if managed or not running else "already running")  # fmt: skip

    def up(self, timeout: float = 60) -> ServiceState:
        if port_open(self.host, self.port):
            return self.state()
        if self.host not in ("127.0.0.1", "localhost"):
            raise ServiceError(f"MySQL at {self.host}:{self.port} does not answer; cutover "
                               "starts only a local MariaDB")  # fmt: skip
        server = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
        if not Path(server).exists():
            raise ServiceError("mariadbd is not installed; run `make setup`")
        run_dir = Path("/run/mysqld")
        run_dir.mkdir(parents=True, exist_ok=True)
        shutil.chown(run_dir, "mysql", "mysql")
        datadir = Path("/var/lib/mysql")
        if not (datadir / "mysql").exists():
            subprocess.run(["mariadb-install-db", "--user=mysql", f"--datadir={datadir}"],
                           check=True, capture_output=True)  # fmt: skip
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            proc = subprocess.Popen(
                [server, "--user=mysql", f"--port={self.port}", "--bind-address=127.0.0.1"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        self.pid_file.write_text(str(proc.pid))
        _wait(lambda: Path("/run/mysqld/mysqld.sock").exists() or port_open(self.host, self.port),
              "MariaDB", self.log_file, timeout)  # fmt: skip
        _wait(lambda: port_open(self.host, self.port), "MariaDB", self.log_file, timeout)
        return self.state()

    def down(self) -> ServiceState:
        _stop(self.pid_file, timeout=60)
        return self.state()


def allow_root_over_tcp() -> None:
    """A fresh Debian MariaDB admits root over the socket only; allow TCP, empty password."""
    if shutil.which("mariadb") is None:
        return
    subprocess.run(
        ["mariadb", "-uroot", "-e", "ALTER USER root@localhost IDENTIFIED VIA unix_socket "
         "OR mysql_native_password USING PASSWORD('')"],
        check=False, capture_output=True,
    )  # fmt: skip


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
    mariadb = _mariadb(settings)
    started = not port_open(mariadb.host, mariadb.port)
    states = [mariadb.up()]
    if started:
        allow_root_over_tcp()
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
