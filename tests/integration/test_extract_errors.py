"""What the extractor raises when MySQL hands it something it cannot read, produced for real
on MariaDB: a view column of MySQL type NULL (connectorx panics with a pyo3 PanicException,
a BaseException), a missing view, a connection killed mid-query. Each must arrive as one
CutoverError naming the view, the partition and, where known, the column."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from cutover.db import connect, query
from cutover.errors import (
    CutoverError,
    ExtractError,
    ExtractFailed,
    ExtractInterrupted,
    TerminalError,
    TransientError,
)
from cutover.extract.staging import Staging
from cutover.extract.stream import arrow_stream, select_list, stream_to_parquet, view_query
from cutover.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.mysql]

PARTITION = "Items.ITEM.0000"
SCHEMA = """
CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(20), price DECIMAL(10,2));
INSERT INTO items VALUES (1, 'lamp', 12.50), (2, 'desk', 99.00);
CREATE VIEW v_bad AS SELECT id, NULL AS bad, name, price,
  CAST(NULL AS BINARY) AS cast_binary, IF(id > 0, NULL, NULL) AS if_null FROM items;
CREATE VIEW v_slow AS SELECT id, SLEEP(2) AS slept FROM items;
"""


@pytest.fixture
def db(scratch_db: Settings) -> Settings:
    conn = connect(scratch_db.mysql)
    try:
        for statement in filter(str.strip, SCHEMA.split(";")):
            query(conn, statement)
    finally:
        conn.close()
    return scratch_db


def _raised(call: Callable[[], Any]) -> BaseException:
    """Whatever ``call`` raises, BaseException included (pytest.raises would let a
    PanicException through as an error of the test rather than a failed assertion)."""
    try:
        call()
    except BaseException as exc:  # the point: nothing else escapes
        return exc
    raise AssertionError("nothing was raised")


def _sql(settings: Settings, view: str) -> str:
    conn = connect(settings.mysql)
    try:
        return f"SELECT {select_list(conn, view)} FROM `{view}` WHERE `id` >= 1"
    finally:
        conn.close()


def test_null_typed_view_column_is_named(db: Settings, tmp_path: Any) -> None:
    """Backfill's path: stream_to_parquet with the view and the partition id."""
    staging = Staging(tmp_path.as_uri())
    exc = _raised(
        lambda: stream_to_parquet(
            db.mysql,
            _sql(db, "v_bad"),
            staging,
            f"extract/{PARTITION}.parquet",
            view="v_bad",
            partition=PARTITION,
        )
    )
    assert isinstance(exc, ExtractFailed) and isinstance(exc, TerminalError), repr(exc)
    message = str(exc)
    assert "v_bad" in message and PARTITION in message and "`bad`" in message, message
    assert "cast the placeholder to a type" in message and "cutover prepare" in message
    assert "\n" not in message
    # information_schema says binary(0) for these two as well, but MySQL sends them as
    # strings and connectorx reads them: they are not blamed.
    assert exc.columns == ("bad",) and exc.column == "bad"
    assert (exc.view, exc.partition) == ("v_bad", PARTITION)


def test_null_typed_column_through_the_validation_reader(db: Settings) -> None:
    """Validation's path: view_query + arrow_stream, no partition."""
    exc = _raised(
        lambda: arrow_stream(db.mysql, view_query(db.mysql, "v_bad"), view="v_bad").read_all()
    )
    assert isinstance(exc, ExtractFailed), repr(exc)
    assert exc.column == "bad" and "`v_bad`" in str(exc)


def test_readable_columns_of_the_same_view_still_stream(db: Settings) -> None:
    table = arrow_stream(
        db.mysql, "SELECT id, name, price, cast_binary, if_null FROM `v_bad`", view="v_bad"
    ).read_all()
    assert table.num_rows == 2


def test_missing_view_is_terminal(db: Settings) -> None:
    exc = _raised(lambda: view_query(db.mysql, "v_missing"))
    assert isinstance(exc, ExtractFailed) and isinstance(exc, TerminalError), repr(exc)
    assert "view 'v_missing' does not exist; run `cutover prepare` first" in str(exc)

    exc = _raised(
        lambda: arrow_stream(
            db.mysql, "SELECT * FROM `v_missing`", view="v_missing", partition=PARTITION
        ).read_all()
    )
    assert isinstance(exc, ExtractFailed), repr(exc)
    assert PARTITION in str(exc) and "run `cutover prepare` first" in str(exc)


# Runs in its own process: while connectorx streams, pyarrow holds this process's GIL.
KILLER = """
import json, os, sys, time
import MySQLdb
m = json.loads(os.environ["KILL_MYSQL"])
conn = MySQLdb.connect(host=m["host"], port=m["port"], user=m["user"], passwd=m["password"],
                       autocommit=True)
cur = conn.cursor()
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    cur.execute("SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE %s "
                "AND INFO NOT LIKE '%%LIMIT 0%%' AND ID <> CONNECTION_ID()", (sys.argv[1],))
    rows = cur.fetchall()
    for (pid,) in rows:
        cur.execute(f"KILL CONNECTION {int(pid)}")
    if rows:
        sys.exit(0)
    time.sleep(0.02)  # poll: until the extract's connection shows up
sys.exit(1)
"""


def test_connection_killed_mid_query_is_transient(db: Settings) -> None:
    """The server drops the connection while the query runs (as on a failover)."""
    sql = "SELECT id, slept FROM `v_slow` WHERE id >= 1"
    env = {**os.environ, "KILL_MYSQL": json.dumps(dataclasses.asdict(db.mysql))}
    killer = subprocess.Popen([sys.executable, "-c", KILLER, "%FROM `v_slow`%"], env=env)
    try:
        exc = _raised(
            lambda: arrow_stream(db.mysql, sql, view="v_slow", partition=PARTITION).read_all()
        )
    finally:
        assert killer.wait(timeout=30) == 0, "the killer found no query to kill"
    assert isinstance(exc, ExtractInterrupted) and isinstance(exc, TransientError), repr(exc)
    assert not isinstance(exc, TerminalError)
    assert isinstance(exc, ExtractError) and isinstance(exc, CutoverError)
    assert "`v_slow`" in str(exc) and PARTITION in str(exc)
