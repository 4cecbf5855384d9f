"""What a hostile contract can do against a real MariaDB: nothing. `prepare` refuses it
before opening a connection, connections run one statement per call, and the literals cutover
writes into a view mean the same under every sql_mode."""

from __future__ import annotations

import copy
import json
import socket
from dataclasses import replace
from pathlib import Path
from typing import Any

import MySQLdb
import pytest

from cutover.contract.load import parse_contract
from cutover.db import connect, query
from cutover.errors import ContractError
from cutover.prepare import prepare
from cutover.prepare.views import apply_views
from cutover.settings import MySQLSettings, Settings

pytestmark = [pytest.mark.integration, pytest.mark.mysql]

LIBRARY = json.loads((Path(__file__).parents[1] / "fixtures" / "library_contract.json").read_text())
DROP = "members.id = loans.member_id; DROP TABLE members"


def _hostile() -> dict[str, Any]:
    data = copy.deepcopy(LIBRARY)
    data["tables"][0]["entities"][1]["attributes"][0]["join"]["join_condition"] = DROP
    return data


def test_prepare_refuses_a_hostile_contract_before_connecting(settings: Settings) -> None:
    """A listening socket stands in for MySQL: prepare must fail on the contract without a
    single connection reaching it."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    fake = replace(settings, mysql=MySQLSettings.from_url(f"mysql://root@127.0.0.1:{port}/x"))
    try:
        with pytest.raises(ContractError) as caught:
            prepare(parse_contract(_hostile()), fake)
        assert (
            caught.value.problems[0][0] == "tables[0].entities[1].attributes[0].join.join_condition"
        )
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody connected
    finally:
        listener.close()


def test_a_second_statement_never_runs_on_a_cutover_connection(scratch_db: Settings) -> None:
    conn = connect(scratch_db.mysql)
    try:
        query(conn, "CREATE TABLE victim (id INT)")
        with pytest.raises(MySQLdb.ProgrammingError):
            query(conn, "SELECT 1; DROP TABLE victim")
        assert query(conn, "SELECT COUNT(*) FROM victim") == [(0,)]  # still there
    finally:
        conn.close()


@pytest.mark.parametrize("sql_mode", ["", "NO_BACKSLASH_ESCAPES,ANSI_QUOTES"])
def test_view_literals_mean_the_same_under_every_sql_mode(
    scratch_db: Settings, sql_mode: str
) -> None:
    tricky = "it's a \\'trap\\' -- \" ; DROP TABLE t; \\"
    data = {
        "tables": [{
            "table": "Things", "type": "single-entity", "source_table": "t", "pk": "id",
            "attributes": [
                {"name": "id", "type": "N", "source_table": "t", "source_column": "id"},
                {"name": "up", "type": "S", "source_table": "t", "source_column": "parent_id",
                 "join": {"type": "self-join", "join_alias": "p",
                          "join_condition": "p.id = t.parent_id",
                          "select_column": "p.label", "null_value": tricky}},
                {"name": "tag", "type": "S", "source_table": "t", "source_column": "label",
                 "transformation": {"type": "string-format", "format": tricky + "{label}"}},
                {"name": "case_", "type": "S", "source_table": "t", "source_column": "label",
                 "calculation": {"type": "case",
                                 "cases": [{"when": "t.id > 0", "then": "'a\\\\b'"}]}},
            ],
        }]
    }  # fmt: skip
    contract = parse_contract(data, "lit")
    conn = connect(scratch_db.mysql)
    try:
        query(conn, "CREATE TABLE t (id INT PRIMARY KEY, parent_id INT NULL, label VARCHAR(20))")
        query(conn, "INSERT INTO t VALUES (1, NULL, 'x')")
        query(conn, "SET SESSION sql_mode = %s", (sql_mode,))
        apply_views(conn, contract)
        rows = query(conn, "SELECT `up`, `tag`, `case_` FROM `cutover_lit_things`")
        tables = query(conn, "SELECT COUNT(*) FROM information_schema.TABLES "
                             "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 't'")  # fmt: skip
    finally:
        conn.close()
    assert rows == [(tricky, tricky + "x", "a\\b")]
    assert tables[0][0] == 1
