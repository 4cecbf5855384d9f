"""The pure parts of the sync's preflight: the server's kind from VERSION(), SHOW GRANTS lines,
the privileges they lack with the GRANT that adds them, and the binlog retention."""

from __future__ import annotations

import pytest

from cutover.sync.preflight import (
    Grant,
    account_literal,
    binlog_retention,
    grant_statements,
    missing_privileges,
    parse_grant,
    server_kind,
)

pytestmark = pytest.mark.unit

MARIADB = server_kind("10.11.19-MariaDB-0+deb12u1")
MYSQL = server_kind("8.0.36")


@pytest.mark.parametrize(
    ("version", "mariadb", "numbers", "monitor"),
    [
        ("10.11.19-MariaDB-0+deb12u1", True, (10, 11, 19), "BINLOG MONITOR"),
        ("5.5.5-10.4.34-MariaDB", True, (10, 4, 34), "REPLICATION CLIENT"),
        ("10.5.2-MariaDB-log", True, (10, 5, 2), "BINLOG MONITOR"),
        ("8.0.36", False, (8, 0, 36), "REPLICATION CLIENT"),
        ("8.0.mysql_aurora.3.05.2", False, (8, 0, 0), "REPLICATION CLIENT"),
        ("5.7.44-log", False, (5, 7, 44), "REPLICATION CLIENT"),
    ],
)
def test_server_kind(
    version: str, mariadb: bool, numbers: tuple[int, int, int], monitor: str
) -> None:
    kind = server_kind(version)
    assert (kind.mariadb, kind.version, kind.monitor_privilege) == (mariadb, numbers, monitor)


def test_server_kind_name() -> None:
    assert MARIADB.name == "MariaDB 10.11.19" and MYSQL.name == "MySQL 8.0.36"


@pytest.mark.parametrize(
    ("line", "grant"),
    [
        (
            "GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost` IDENTIFIED VIA unix_socket "
            "OR mysql_native_password USING '' WITH GRANT OPTION",
            Grant(frozenset({"ALL PRIVILEGES"}), "*", "*"),
        ),
        (
            "GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO `sync`@`%`",
            Grant(frozenset({"REPLICATION SLAVE", "BINLOG MONITOR"}), "*", "*"),
        ),
        (
            "GRANT RELOAD, REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO `sync`@`%`",
            Grant(frozenset({"RELOAD", "REPLICATION SLAVE", "BINLOG MONITOR"}), "*", "*"),
        ),
        (
            "GRANT USAGE ON *.* TO `reader`@`%` IDENTIFIED BY PASSWORD '*ABC'",
            Grant(frozenset({"USAGE"}), "*", "*"),
        ),
        ("GRANT SELECT ON `shop`.* TO `reader`@`%`", Grant(frozenset({"SELECT"}), "shop", "*")),
        (
            "GRANT SELECT, INSERT ON `my shop`.`order ``items``` TO 'u'@'h'",
            Grant(frozenset({"SELECT", "INSERT"}), "my shop", "order `items`"),
        ),
        # a column-level privilege does not cover the table
        (
            "GRANT SELECT (`id`, `name`), INSERT ON `shop`.`users` TO `u`@`%`",
            Grant(frozenset({"INSERT"}), "shop", "users"),
        ),
        ("GRANT ALL ON shop.* TO 'u'@'%'", Grant(frozenset({"ALL PRIVILEGES"}), "shop", "*")),
        (
            "GRANT REPLICATION REPLICA ON *.* TO `u`@`%`",
            Grant(frozenset({"REPLICATION SLAVE"}), "*", "*"),
        ),
    ],
)
def test_parse_grant(line: str, grant: Grant) -> None:
    assert parse_grant(line) == grant


@pytest.mark.parametrize(
    "line",
    [
        "GRANT `migrator_role` TO `sync`@`%`",
        "GRANT PROXY ON ''@'%' TO 'root'@'localhost' WITH GRANT OPTION",
        "GRANT EXECUTE ON PROCEDURE `shop`.`p` TO `u`@`%`",
        "SET DEFAULT ROLE `migrator_role` FOR `sync`@`%`",
    ],
)
def test_lines_that_grant_no_table_privileges_are_skipped(line: str) -> None:
    assert parse_grant(line) is None


def _grants(*lines: str) -> list[Grant]:
    return [g for line in lines if (g := parse_grant(line))]


def test_all_privileges_on_everything_lacks_nothing() -> None:
    grants = _grants("GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost`")
    assert missing_privileges(grants, MARIADB, "shop", ["users"]) == []


def test_select_only_lacks_the_replication_privileges() -> None:
    grants = _grants("GRANT USAGE ON *.* TO `r`@`%`", "GRANT SELECT ON `shop`.* TO `r`@`%`")
    assert missing_privileges(grants, MARIADB, "shop", ["users"]) == [
        "REPLICATION SLAVE",
        "BINLOG MONITOR",
    ]
    assert missing_privileges(grants, MYSQL, "shop", ["users"]) == [
        "REPLICATION SLAVE",
        "REPLICATION CLIENT",
    ]


def test_replication_privileges_on_a_database_do_not_count() -> None:
    grants = _grants("GRANT ALL PRIVILEGES ON `shop`.* TO `r`@`%`")
    assert missing_privileges(grants, MYSQL, "shop", ["users"]) == [
        "REPLICATION SLAVE",
        "REPLICATION CLIENT",
    ]


def test_select_on_every_source_table_is_enough() -> None:
    grants = _grants(
        "GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO `s`@`%`",
        "GRANT SELECT ON `shop`.`users` TO `s`@`%`",
        "GRANT SELECT, UPDATE ON `shop`.`orders` TO `s`@`%`",
    )
    assert missing_privileges(grants, MYSQL, "shop", ["users", "orders"]) == []
    assert missing_privileges(grants, MYSQL, "shop", ["users", "carts"]) == ["SELECT"]
    assert missing_privileges(grants, MYSQL, "other", ["users"]) == ["SELECT"]


@pytest.mark.parametrize(
    ("pattern", "covered"),
    [("shop", True), ("sh%", True), ("s_op", True), ("shop\\_x", False), ("other", False)],
)
def test_a_database_grant_is_a_like_pattern(pattern: str, covered: bool) -> None:
    grants = _grants(
        "GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO `s`@`%`",
        f"GRANT SELECT ON `{pattern}`.* TO `s`@`%`",
    )
    assert (missing_privileges(grants, MARIADB, "shop", ["users"]) == []) is covered


def test_account_literal() -> None:
    assert account_literal("sync@%") == "'sync'@'%'"
    assert account_literal("o'neil@10.0.0.1") == "'o\\'neil'@'10.0.0.1'"
    assert account_literal("user@with@host") == "'user@with'@'host'"


def test_grant_statements() -> None:
    assert grant_statements(["REPLICATION SLAVE", "SELECT"], "'s'@'%'", "shop") == (
        "GRANT REPLICATION SLAVE ON *.* TO 's'@'%'; GRANT SELECT ON `shop`.* TO 's'@'%'"
    )
    assert grant_statements(["SELECT"], "'s'@'%'", "a`b") == "GRANT SELECT ON `a``b`.* TO 's'@'%'"


@pytest.mark.parametrize(
    ("variables", "setting", "hours"),
    [
        # MariaDB 10.6+: the two are linked; 10.11 shows days with decimals
        (
            {"binlog_expire_logs_seconds": "86400", "expire_logs_days": "1.000000"},
            "binlog_expire_logs_seconds",
            24,
        ),
        ({"binlog_expire_logs_seconds": "0", "expire_logs_days": "0.000000"}, "", None),
        # MySQL 8: seconds 0 with days set means days; both 0 means never
        ({"binlog_expire_logs_seconds": "0", "expire_logs_days": "2"}, "", 48),
        ({"binlog_expire_logs_seconds": "0", "expire_logs_days": "0"}, "", None),
        ({"binlog_expire_logs_seconds": "2592000", "expire_logs_days": "0"}, "", 720),
        (
            {"binlog_expire_logs_seconds": "3600", "binlog_expire_logs_auto_purge": "OFF"},
            "",
            None,
        ),
        # old servers have expire_logs_days only
        ({"expire_logs_days": "3"}, "expire_logs_days", 72),
    ],
)
def test_binlog_retention(variables: dict[str, str], setting: str, hours: float | None) -> None:
    retention = binlog_retention(variables)
    assert retention.hours == hours
    assert retention.setting == (setting or "binlog_expire_logs_seconds")
