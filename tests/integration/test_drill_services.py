"""The private servers of fault drills: they stop, crash and restart with their data intact,
and stopping them leaves the machine's shared MariaDB (127.0.0.1:3306) answering.

Drills stop only what the test started; these tests prove the servers they stop are their own.
One server per class keeps them fast (a MariaDB start or stop takes well under a second).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import MySQLdb
import pytest
from botocore.exceptions import EndpointConnectionError
from tests.drill_services import HOST, PrivateDynamoDB, PrivateMariaDB, free_port

from cutover.local.services import port_open

pytestmark = [pytest.mark.integration, pytest.mark.mysql, pytest.mark.dynamodb]

SHARED_MYSQL_PORT = 3306


def _shared_mysql_datadir() -> str:
    conn = MySQLdb.connect(host=HOST, port=SHARED_MYSQL_PORT, user="root", passwd="",
                           connect_timeout=5)  # fmt: skip
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT @@datadir")
            return str(cur.fetchone()[0])
    finally:
        conn.close()


def _rows(server: PrivateMariaDB, database: str, sql: str) -> list[tuple[Any, ...]]:
    conn = server.connect(database)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return list(cur.fetchall())
    finally:
        conn.close()


def _execute(server: PrivateMariaDB, database: str, *statements: str) -> None:
    conn = server.connect(database)
    try:
        with conn.cursor() as cur:
            for sql in statements:
                cur.execute(sql)
        conn.commit()
    finally:
        conn.close()


@pytest.fixture(scope="class")
def mariadb() -> Iterator[PrivateMariaDB]:
    """One private MariaDB per test class, with a database `drill`; removed afterwards."""
    with PrivateMariaDB() as server:
        server.create_database("drill")
        _execute(server, "drill", "CREATE TABLE rows_kept (id INT PRIMARY KEY, note TEXT)")
        yield server
    assert not server.directory.exists()


@pytest.fixture(scope="class")
def dynamodb() -> Iterator[PrivateDynamoDB]:
    """One private DynamoDB Local per test class, with a table `drill`; removed afterwards."""
    with PrivateDynamoDB() as server:
        server.client().create_table(
            TableName="drill",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield server
    assert not server.directory.exists()


def test_free_port_is_free() -> None:
    port = free_port()
    assert 0 < port < 65536 and not port_open(HOST, port)


class TestPrivateMariaDB:
    """Stopping or killing a private MariaDB must not touch the shared one on 3306."""

    def test_it_is_its_own_server(self, mariadb: PrivateMariaDB) -> None:
        assert mariadb.port != SHARED_MYSQL_PORT
        assert mariadb.url("drill") == f"mysql://root@127.0.0.1:{mariadb.port}/drill"
        (datadir,) = _rows(mariadb, "drill", "SELECT @@datadir")[0]
        assert datadir.rstrip("/") == str(mariadb.datadir)
        assert _shared_mysql_datadir() != datadir
        charset = _rows(mariadb, "drill", "SELECT @@character_set_database, "
                        "@@collation_database, @@log_bin")  # fmt: skip
        assert charset == [("utf8mb4", "utf8mb4_unicode_ci", 0)]

    def test_start_is_idempotent(self, mariadb: PrivateMariaDB) -> None:
        pid = mariadb.pid
        mariadb.start()
        assert pid is not None and mariadb.pid == pid

    def test_a_row_survives_stop_and_start(self, mariadb: PrivateMariaDB) -> None:
        _execute(mariadb, "drill", "INSERT INTO rows_kept VALUES (1, 'before stop')")
        mariadb.stop()
        assert not mariadb.running
        with pytest.raises(MySQLdb.OperationalError):
            mariadb.connect("drill", connect_timeout=2)
        # The shared server never noticed: it still answers while ours is down.
        assert _shared_mysql_datadir()
        mariadb.start()
        assert _rows(mariadb, "drill", "SELECT note FROM rows_kept WHERE id = 1") == [
            ("before stop",)
        ]

    def test_a_committed_row_survives_a_crash(self, mariadb: PrivateMariaDB) -> None:
        _execute(mariadb, "drill", "INSERT INTO rows_kept VALUES (2, 'before kill')")
        mariadb.kill()
        assert not mariadb.running and not port_open(HOST, mariadb.port)
        assert _shared_mysql_datadir()
        mariadb.restart()
        assert _rows(mariadb, "drill", "SELECT note FROM rows_kept WHERE id = 2") == [
            ("before kill",)
        ]


class TestPrivateDynamoDB:
    """Stopping a private DynamoDB Local must not touch the suite's own."""

    def test_it_keeps_its_tables_on_disk_in_its_own_directory(
        self, dynamodb: PrivateDynamoDB
    ) -> None:
        assert dynamodb.endpoint == f"http://127.0.0.1:{dynamodb.port}"
        assert not dynamodb.local.in_memory
        assert dynamodb.local.data_dir.is_relative_to(dynamodb.directory)
        assert any(dynamodb.local.data_dir.iterdir())

    def test_an_item_survives_restart(self, dynamodb: PrivateDynamoDB) -> None:
        client = dynamodb.client()
        client.put_item(TableName="drill", Item={"pk": {"S": "kept"}, "n": {"N": "1"}})
        pid = dynamodb.pid
        dynamodb.stop()
        assert not dynamodb.running
        with pytest.raises(EndpointConnectionError):
            client.list_tables()
        dynamodb.start()
        assert dynamodb.pid != pid
        item = client.get_item(TableName="drill", Key={"pk": {"S": "kept"}}, ConsistentRead=True)
        assert item["Item"] == {"pk": {"S": "kept"}, "n": {"N": "1"}}
