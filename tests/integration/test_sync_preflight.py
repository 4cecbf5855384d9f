"""The sync's preflight on real servers, each started with the setting under test: binlog off,
STATEMENT format, MINIMAL row image, a short binlog retention, a table without a primary key
and a user without replication privileges are each refused with their line; a server set up
as the sync needs passes.

The servers are private MariaDBs (tests/drill_services.py), started at once and shared by the
module; the machine's shared MariaDB and cutover's own are never touched.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from tests.drill_services import PrivateMariaDB, free_port

from cutover.errors import ServiceError
from cutover.settings import MySQLSettings
from cutover.sync.preflight import Problem, preflight, preflight_lines

pytestmark = [pytest.mark.integration, pytest.mark.mysql]

DATABASE = "pf"
# As the sync needs it, but for a binlog expiring after one day (see the retention tests).
ROW_SETTINGS = [
    "--server-id=1",
    "--binlog-format=ROW",
    "--binlog-row-image=FULL",
    "--binlog-row-metadata=FULL",
    "--expire-logs-days=1",
]
SERVER_OPTIONS = {
    "good": ["--log-bin=binlog", *ROW_SETTINGS],
    "binlog_off": ["--skip-log-bin", *ROW_SETTINGS],
    "statement": ["--log-bin=binlog", *ROW_SETTINGS, "--binlog-format=STATEMENT"],
    "minimal": ["--log-bin=binlog", *ROW_SETTINGS, "--binlog-row-image=MINIMAL"],
}
# Users of the database `pf` with only SELECT on it, and with no privilege at all.
READER = ("pf_reader", "reader-secret")
NOBODY = ("pf_nobody", "nobody-secret")


def _new_servers() -> dict[str, PrivateMariaDB]:
    """One private server per entry of SERVER_OPTIONS, each on a port of its own."""
    servers: dict[str, PrivateMariaDB] = {}
    for name, options in SERVER_OPTIONS.items():
        server = PrivateMariaDB(options=options)
        while server.port in {s.port for s in servers.values()}:
            shutil.rmtree(server.directory)
            server = PrivateMariaDB(options=options)
        servers[name] = server
    return servers


def _execute(server: PrivateMariaDB, *statements: str) -> None:
    conn = server.connect()
    try:
        with conn.cursor() as cur:
            for sql in statements:
                cur.execute(sql)
    finally:
        conn.close()


def _prepare(server: PrivateMariaDB) -> None:
    server.start()
    server.create_database(DATABASE)
    _execute(
        server,
        f"CREATE TABLE {DATABASE}.keyed (id INT PRIMARY KEY, note TEXT)",
        f"CREATE TABLE {DATABASE}.keyless (note TEXT)",
        f"CREATE USER '{READER[0]}'@'%' IDENTIFIED BY '{READER[1]}'",
        f"GRANT SELECT ON {DATABASE}.* TO '{READER[0]}'@'%'",
        f"CREATE USER '{NOBODY[0]}'@'%' IDENTIFIED BY '{NOBODY[1]}'",
    )


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, PrivateMariaDB]]:
    started = _new_servers()
    try:
        with ThreadPoolExecutor(len(started)) as pool:
            list(pool.map(_prepare, started.values()))
        yield started
    finally:
        for server in started.values():
            server.close()


def _root(server: PrivateMariaDB) -> MySQLSettings:
    return MySQLSettings.from_url(server.url(DATABASE))


def _as(server: PrivateMariaDB, user: tuple[str, str]) -> MySQLSettings:
    return MySQLSettings(server.host, server.port, user[0], user[1], DATABASE)


def _only(problems: list[Problem], setting: str) -> Problem:
    assert [p.setting for p in problems] == [setting], preflight_lines(problems)
    return problems[0]


def test_a_server_set_up_for_the_sync_passes(servers: dict[str, PrivateMariaDB]) -> None:
    assert preflight(_root(servers["good"]), ["keyed"]) == []


def test_binlog_off_is_refused(servers: dict[str, PrivateMariaDB]) -> None:
    problem = _only(preflight(_root(servers["binlog_off"]), ["keyed"]), "log_bin")
    assert problem.found == "OFF"
    assert "log_bin" in problem.line and "my.cnf" in problem.line
    assert "automated backups" in problem.line  # RDS MySQL's way to turn it on


def test_statement_format_is_refused(servers: dict[str, PrivateMariaDB]) -> None:
    problem = _only(preflight(_root(servers["statement"]), ["keyed"]), "binlog_format")
    assert problem.found == "STATEMENT"
    assert "binlog_format=ROW" in problem.line and "parameter group" in problem.line


def test_minimal_row_image_is_refused(servers: dict[str, PrivateMariaDB]) -> None:
    problem = _only(preflight(_root(servers["minimal"]), ["keyed"]), "binlog_row_image")
    assert problem.found == "MINIMAL"
    assert "binlog_row_image=FULL" in problem.line and "my.cnf" in problem.line


def test_a_table_without_primary_key_is_refused(servers: dict[str, PrivateMariaDB]) -> None:
    problem = _only(preflight(_root(servers["good"]), ["keyed", "keyless"]), "primary_key")
    assert "`pf`.`keyless`" in problem.line and "ADD PRIMARY KEY" in problem.line


def test_a_missing_table_is_its_own_line(servers: dict[str, PrivateMariaDB]) -> None:
    problems = preflight(_root(servers["good"]), ["keyed", "gone", "keyless"])
    assert [p.setting for p in problems] == ["source_table", "primary_key"]
    assert "`pf`.`gone` does not exist" in problems[0].line


def test_a_retention_shorter_than_needed_is_refused(servers: dict[str, PrivateMariaDB]) -> None:
    mysql = _root(servers["good"])
    problem = _only(
        preflight(mysql, ["keyed"], retention_needed_hours=48), "binlog_expire_logs_seconds"
    )
    assert "24 hours" in problem.found
    assert "binlog_expire_logs_seconds=172800" in problem.line
    assert "CALL mysql.rds_set_configuration('binlog retention hours', 48)" in problem.line
    assert preflight(mysql, ["keyed"], retention_needed_hours=24) == []


def test_a_user_without_replication_privileges_gets_the_grant(
    servers: dict[str, PrivateMariaDB],
) -> None:
    server = servers["good"]
    problem = _only(preflight(_as(server, READER), ["keyed"]), "privileges")
    account = "'pf_reader'@'%'"
    assert f"GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO {account}" in problem.line
    # the line's GRANT is exact: run as it stands, it fixes the problem
    statements = re.search(r"run (GRANT .*?) \(on RDS", problem.line)
    assert statements is not None
    _execute(server, *statements[1].split("; "))
    try:
        assert preflight(_as(server, READER), ["keyed"]) == []
    finally:
        _execute(server, f"REVOKE REPLICATION SLAVE, BINLOG MONITOR ON *.* FROM {account}")


def test_a_user_without_select_gets_that_grant_too(servers: dict[str, PrivateMariaDB]) -> None:
    # it cannot see the tables, so they are not reported missing
    problem = _only(preflight(_as(servers["good"], NOBODY), ["keyed", "keyless"]), "privileges")
    assert "GRANT SELECT ON `pf`.* TO 'pf_nobody'@'%'" in problem.line
    assert "GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO 'pf_nobody'@'%'" in problem.line


def test_an_unreachable_server_is_a_service_error() -> None:
    mysql = MySQLSettings("127.0.0.1", free_port(), "root", "", DATABASE)
    with pytest.raises(ServiceError, match="cannot connect to MySQL"):
        preflight(mysql, ["keyed"])
