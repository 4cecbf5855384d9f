"""The server settings the sync needs, checked before it reads a single binlog event.

``preflight`` returns one ``Problem`` per setting that is wrong, each with one line naming the
setting, what the server has, what the sync needs and the fix, both for a self-managed
MySQL/MariaDB (an option under ``[mysqld]`` in my.cnf) and for RDS/Aurora (the DB parameter
group, or ``mysql.rds_set_configuration``). An empty list means the sync can start. A server
that does not answer raises ``ServiceError``: that is no setting to fix.

The parsing (server version, SHOW GRANTS lines, binlog retention) is pure and tested alone.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cutover.errors import ServiceError
from cutover.settings import MySQLSettings

# The global variables the checks read; a name missing from the answer does not exist there.
VARIABLES = (
    "log_bin",
    "binlog_format",
    "binlog_row_image",
    "binlog_row_metadata",
    "binlog_transaction_compression",
    "log_bin_compress",
    "binlog_expire_logs_seconds",
    "binlog_expire_logs_auto_purge",
    "expire_logs_days",
    "server_id",
    "basedir",
    "aurora_version",
)
RDS_RETENTION = "binlog retention hours"


@dataclass(frozen=True)
class Problem:
    setting: str  # e.g. "binlog_format"
    found: str  # what the server has
    line: str  # one line naming the setting, what is needed and the fix


def preflight_lines(problems: Iterable[Problem]) -> list[str]:
    return [problem.line for problem in problems]


# --- pure parts ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerKind:
    mariadb: bool
    version: tuple[int, int, int]

    @property
    def name(self) -> str:
        return ("MariaDB " if self.mariadb else "MySQL ") + ".".join(map(str, self.version))

    @property
    def monitor_privilege(self) -> str:
        """What SHOW MASTER STATUS / SHOW BINARY LOGS need: MariaDB 10.5.2 renamed it."""
        if self.mariadb and self.version >= (10, 5, 2):
            return "BINLOG MONITOR"
        return "REPLICATION CLIENT"


def server_kind(version: str) -> ServerKind:
    """``SELECT VERSION()``'s answer, e.g. ``10.11.19-MariaDB-0+deb12u1`` or ``8.0.36``."""
    text = version.removeprefix("5.5.5-")  # the prefix old MariaDB clients were shown
    found = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
    major, minor, patch = (int(n or 0) for n in found.groups()) if found else (0, 0, 0)
    return ServerKind("mariadb" in version.lower(), (major, minor, patch))


@dataclass(frozen=True)
class Grant:
    """One ``GRANT privileges ON database.table`` line; ``*`` stands for all."""

    privileges: frozenset[str]
    database: str
    table: str


_NAME = r"(?:\*|`(?:[^`]|``)*`|[\w$]+)"
_GRANT = re.compile(
    rf"^GRANT\s+(?P<privileges>.+?)\s+ON\s+(?:TABLE\s+)?"
    rf"(?P<database>{_NAME})\.(?P<table>{_NAME})\s+TO\s",
    re.I | re.S,
)
_SYNONYMS = {
    "ALL": "ALL PRIVILEGES",
    "REPLICATION REPLICA": "REPLICATION SLAVE",
    "REPLICATION CLIENT": "BINLOG MONITOR",  # an alias since MariaDB 10.5.2
}


def _unquote(name: str) -> str:
    return name[1:-1].replace("``", "`") if name.startswith("`") else name


def _split_privileges(text: str) -> frozenset[str]:
    """Privileges of a grant, column-level ones (``SELECT (`a`)``) left out: they do not
    cover whole tables."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    names = (" ".join(part.split()).upper() for part in parts)
    return frozenset(_SYNONYMS.get(name, name) for name in names if name and "(" not in name)


def parse_grant(line: str) -> Grant | None:
    """A SHOW GRANTS line as a ``Grant``; None for role and PROXY grants and routines."""
    found = _GRANT.match(line.strip())
    if found is None:
        return None
    privileges = _split_privileges(found["privileges"])
    if privileges == {"PROXY"}:
        return None
    return Grant(privileges, _unquote(found["database"]), _unquote(found["table"]))


def _database_matches(pattern: str, database: str) -> bool:
    """A database-level grant's name is a LIKE pattern: ``%`` and ``_`` are wildcards
    unless escaped with a backslash."""
    if pattern == "*":
        return True
    regex = ""
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            regex += re.escape(pattern[i + 1])
            i += 2
            continue
        regex += {"%": ".*", "_": "."}.get(char, re.escape(char))
        i += 1
    return re.fullmatch(regex, database) is not None


def _has(grant: Grant, privilege: str) -> bool:
    return privilege in grant.privileges or "ALL PRIVILEGES" in grant.privileges


def _can_select(grants: Sequence[Grant], database: str, tables: Sequence[str]) -> bool:
    wide = [g for g in grants if g.table == "*" and _database_matches(g.database, database)]
    if any(_has(g, "SELECT") for g in wide):
        return True
    if not tables:
        return False
    covered = {g.table for g in grants if g.database == database and _has(g, "SELECT")}
    return all(table in covered for table in tables)


def missing_privileges(
    grants: Sequence[Grant], kind: ServerKind, database: str, tables: Sequence[str]
) -> list[str]:
    """What the binlog dump (REPLICATION SLAVE), reading the binlog position (REPLICATION
    CLIENT, MariaDB's BINLOG MONITOR) and re-reading rows (SELECT) need and the grants lack."""
    global_grants = [g for g in grants if g.database == "*"]
    needed = ["REPLICATION SLAVE", "BINLOG MONITOR"]
    missing = [
        kind.monitor_privilege if privilege == "BINLOG MONITOR" else privilege
        for privilege in needed
        if not any(_has(g, privilege) for g in global_grants)
    ]
    if not _can_select(grants, database, tables):
        missing.append("SELECT")
    return missing


def account_literal(current_user: str) -> str:
    """``CURRENT_USER()``'s ``user@host`` as ``'user'@'host'`` for a GRANT statement."""
    user, _, host = current_user.rpartition("@")

    def quote(text: str) -> str:
        return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"

    return f"{quote(user)}@{quote(host)}"


def grant_statements(missing: Sequence[str], account: str, database: str) -> str:
    global_privileges = [p for p in missing if p != "SELECT"]
    statements = []
    if global_privileges:
        statements.append(f"GRANT {', '.join(global_privileges)} ON *.* TO {account}")
    if "SELECT" in missing:
        statements.append(f"GRANT SELECT ON `{database.replace('`', '``')}`.* TO {account}")
    return "; ".join(statements)


def _number(value: str | None) -> float:
    try:
        return float(value) if value is not None else 0.0
    except ValueError:
        return 0.0


@dataclass(frozen=True)
class Retention:
    setting: str  # the variable to change
    hours: float | None  # None: never expires
    found: str


def binlog_retention(variables: Mapping[str, str]) -> Retention:
    """How long a self-managed server keeps its binlog: ``binlog_expire_logs_seconds`` when
    non-zero, else ``expire_logs_days`` when non-zero, else never (both 0)."""
    setting = (
        "binlog_expire_logs_seconds"
        if "binlog_expire_logs_seconds" in variables
        else "expire_logs_days"
    )
    if variables.get("binlog_expire_logs_auto_purge", "ON").upper() == "OFF":
        return Retention(setting, None, "binlog_expire_logs_auto_purge=OFF")
    seconds = _number(variables.get("binlog_expire_logs_seconds"))
    days = _number(variables.get("expire_logs_days"))
    if seconds > 0:
        return Retention(setting, seconds / 3600, f"{seconds:g} s ({seconds / 3600:g} hours)")
    if days > 0:
        return Retention(setting, days * 24, f"expire_logs_days={days:g} ({days * 24:g} hours)")
    return Retention(setting, None, "0 (never expires)")


# --- the fixes -----------------------------------------------------------------------------


def _fix(option: str, *, rds: str | None = None) -> str:
    rds_fix = rds or (
        f"{option} in the DB parameter group (Aurora: the DB cluster parameter group)"
    )
    return (
        f"self-managed MySQL/MariaDB: {option} under [mysqld] in my.cnf, then restart; "
        f"RDS/Aurora: {rds_fix}"
    )


def _problem(setting: str, found: str, needed: str, fix: str) -> Problem:
    return Problem(setting, found, f"{setting} is {found}; the sync needs {needed}: {fix}")


def _must_equal(variables: Mapping[str, str], setting: str, value: str) -> list[Problem]:
    found = variables.get(setting)
    if found is None or found.upper() == value:
        return []
    return [_problem(setting, found, value, _fix(f"{setting}={value}"))]


# --- the checks ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Server:
    kind: ServerKind
    variables: dict[str, str]
    rds: bool


def _check_log_bin(server: _Server) -> list[Problem]:
    found = server.variables.get("log_bin", "OFF")
    if found.upper() == "ON":
        return []
    fix = (
        "self-managed MySQL/MariaDB: log_bin=binlog and server_id=1 under [mysqld] in "
        "my.cnf, then restart; RDS MySQL: turn on automated backups (backup retention "
        "period > 0); Aurora MySQL: binlog_format=ROW in the DB cluster parameter group, "
        "then reboot the writer"
    )
    return [_problem("log_bin", found, "the binary log ON", fix)]


def _check_server_id(server: _Server) -> list[Problem]:
    found = server.variables.get("server_id", "0")
    if _number(found) != 0:
        return []
    fix = _fix(
        "server_id=1 (unique among the servers that replicate)",
        rds="RDS and Aurora set it themselves",
    )
    return [_problem("server_id", found, "a non-zero server_id (a binary log needs one)", fix)]


def _check_row_metadata(server: _Server) -> list[Problem]:
    if "binlog_row_metadata" in server.variables:
        return _must_equal(server.variables, "binlog_row_metadata", "FULL")
    needed = "MySQL 8.0.1+ or MariaDB 10.5+ with binlog_row_metadata=FULL"
    fix = (
        "the server is too old to put column names in row events: upgrade it "
        "(RDS/Aurora: upgrade the engine version)"
    )
    return [_problem("binlog_row_metadata", f"absent on {server.kind.name}", needed, fix)]


def _check_compression(server: _Server) -> list[Problem]:
    setting = "log_bin_compress" if server.kind.mariadb else "binlog_transaction_compression"
    found = server.variables.get(setting)
    if found is None or found.upper() == "OFF":
        return []
    needed = "OFF (the binlog reader silently drops compressed events)"
    return [_problem(setting, found, needed, _fix(f"{setting}=OFF"))]


def _check_settings(server: _Server) -> list[Problem]:
    variables = server.variables
    return [
        *_check_log_bin(server),
        *_check_server_id(server),
        *_must_equal(variables, "binlog_format", "ROW"),
        *_must_equal(variables, "binlog_row_image", "FULL"),
        *_check_row_metadata(server),
        *_check_compression(server),
    ]


def _retention_fix(setting: str, hours: float) -> str:
    whole_hours = math.ceil(hours)
    if setting == "expire_logs_days":
        option = f"expire_logs_days={math.ceil(hours / 24)}"
    else:
        option = f"binlog_expire_logs_seconds={whole_hours * 3600}"
    rds = f"CALL mysql.rds_set_configuration('{RDS_RETENTION}', {whole_hours})"
    return _fix(option, rds=rds)


def _rds_retention(conn: Any) -> Retention:
    import MySQLdb

    try:
        rows = _rows(
            conn, "SELECT value FROM mysql.rds_configuration WHERE name = %s", (RDS_RETENTION,)
        )
    except (MySQLdb.ProgrammingError, MySQLdb.OperationalError) as exc:
        if isinstance(exc, MySQLdb.OperationalError) and exc.args[0] >= 2000:
            raise  # the connection itself failed (client error codes start at 2000)
        return Retention(RDS_RETENTION, 0.0, f"unreadable ({exc.args[-1]})")
    value = rows[0][0] if rows else None
    if value is None:
        return Retention(RDS_RETENTION, 0.0, "NULL (purged as soon as possible)")
    hours = _number(str(value))
    return Retention(RDS_RETENTION, hours, f"{hours:g} hours")


def _check_retention(conn: Any, server: _Server, needed_hours: float) -> list[Problem]:
    retention = _rds_retention(conn) if server.rds else binlog_retention(server.variables)
    if retention.hours is None or retention.hours >= needed_hours:
        return []
    needed = f"at least {needed_hours:g} hours of binary log"
    fix = _retention_fix(retention.setting, needed_hours)
    return [_problem(retention.setting, retention.found, needed, fix)]


def _table_problem(name: str, kind: str | None, has_primary_key: bool) -> Problem | None:
    if kind is None:
        line = (
            f"source_table: {name} does not exist; the sync needs every source table of the "
            "contract: create it, or fix the table name or the database in CUTOVER_MYSQL_URL"
        )
        return Problem("source_table", f"{name} missing", line)
    if kind == "BASE TABLE" and has_primary_key:
        return None
    what = "has no primary key" if kind == "BASE TABLE" else f"is a {kind.lower()}"
    line = (
        f"primary_key: {name} {what}; the sync needs a table with a PRIMARY KEY to find the "
        f"items a changed row feeds: ALTER TABLE {name} ADD PRIMARY KEY (<its key columns>)"
    )
    return Problem("primary_key", f"{name} {what}", line)


def _check_tables(conn: Any, database: str, tables: Sequence[str]) -> list[Problem]:
    kinds = dict(
        _rows(
            conn,
            "SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s",
            (database,),
        )
    )
    # not TABLE_CONSTRAINTS: MariaDB shows a user with only SELECT none of its rows
    keyed = {
        name
        for (name,) in _rows(
            conn,
            "SELECT DISTINCT TABLE_NAME FROM information_schema.KEY_COLUMN_USAGE "
            "WHERE TABLE_SCHEMA = %s AND CONSTRAINT_NAME = 'PRIMARY'",
            (database,),
        )
    }
    found = (
        _table_problem(f"`{database}`.`{table}`", kinds.get(table), table in keyed)
        for table in tables
    )
    return [problem for problem in found if problem is not None]


def _missing_privileges(
    conn: Any, server: _Server, database: str, tables: Sequence[str]
) -> list[str]:
    grants = [g for (line,) in _rows(conn, "SHOW GRANTS") if (g := parse_grant(line))]
    return missing_privileges(grants, server.kind, database, tables)


def _privileges_problem(conn: Any, server: _Server, database: str, missing: list[str]) -> Problem:
    account = account_literal(_rows(conn, "SELECT CURRENT_USER()")[0][0])
    found = f"{account} without {', '.join(missing)}"
    unseen = " (the tables are checked once it has SELECT)" if "SELECT" in missing else ""
    line = (
        f"privileges: {found}; the sync needs REPLICATION SLAVE (the binlog dump), "
        f"{server.kind.monitor_privilege} (the binlog position) and SELECT on "
        f"`{database}`{unseen}: run {grant_statements(missing, account, database)} (on "
        "RDS/Aurora as the master user; privileges granted through roles are not counted)"
    )
    return Problem("privileges", found, line)


# --- the entry point -----------------------------------------------------------------------


def _rows(conn: Any, sql: str, params: tuple[Any, ...] | None = None) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return list(cur.fetchall())


def _server(conn: Any) -> _Server:
    kind = server_kind(str(_rows(conn, "SELECT VERSION()")[0][0]))
    names = ", ".join(f"'{name}'" for name in VARIABLES)
    variables = {
        str(name).lower(): str(value)
        for name, value in _rows(conn, f"SHOW GLOBAL VARIABLES WHERE Variable_name IN ({names})")
    }
    rds = variables.get("basedir", "").startswith("/rdsdbbin") or bool(
        _rows(
            conn,
            "SELECT 1 FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = 'mysql' AND TABLE_NAME = 'rds_configuration'",
        )
    )
    return _Server(kind, variables, rds or "aurora_version" in variables)


def preflight(
    mysql: MySQLSettings,
    source_tables: Iterable[str],
    *,
    retention_needed_hours: float | None = None,
) -> list[Problem]:
    """Every server setting, table and privilege that keeps the sync from reading
    ``mysql``'s binlog for ``source_tables`` (in ``mysql.database``); [] when none."""
    import MySQLdb

    from cutover.db import connect

    tables = list(dict.fromkeys(source_tables))
    conn = connect(mysql, database=False)
    try:
        server = _server(conn)
        problems = _check_settings(server)
        if retention_needed_hours is not None:
            problems += _check_retention(conn, server, retention_needed_hours)
        missing = _missing_privileges(conn, server, mysql.database, tables)
        # without SELECT the tables are invisible in information_schema, not missing
        if "SELECT" not in missing:
            problems += _check_tables(conn, mysql.database, tables)
        if missing:
            problems.append(_privileges_problem(conn, server, mysql.database, missing))
        return problems
    except MySQLdb.OperationalError as exc:
        raise ServiceError(
            f"MySQL at {mysql.url} failed during the sync's preflight: "
            f"{exc.args[-1]}; check the server and run it again"
        ) from None
    finally:
        conn.close()
