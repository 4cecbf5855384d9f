"""Lint against a real source schema: unknown tables and columns, and types that cannot hold
the source type, each named by its JSON path."""

from __future__ import annotations

import copy
import json
from importlib import resources
from typing import Any

import pytest

from cutover.contract.lint import Problem, lint
from cutover.contract.load import parse_contract
from cutover.contract.source_schema import SourceSchema
from cutover.db import connect, query
from cutover.settings import PROJECT_ROOT, Settings

pytestmark = [pytest.mark.integration, pytest.mark.mysql]

DDL = [
    "CREATE TABLE users (id INT PRIMARY KEY, email VARCHAR(100), flag TINYINT(1), "
    "prefs JSON, note TEXT, photo BLOB, born DATE, updated_at DATETIME(6))",
    "CREATE TABLE orders (order_no INT PRIMARY KEY, user_id INT, total DECIMAL(10,2), "
    "state VARCHAR(20), paid_unix INT, paid_text VARCHAR(20), version BIGINT)",
    "CREATE TABLE order_lines (id INT PRIMARY KEY, order_no INT, sku VARCHAR(20), qty INT)",
    "CREATE TABLE tags (user_id INT, tag VARCHAR(20), PRIMARY KEY (tag, user_id))",
]


def _a(name: str, type_: str, column: Any, table: str = "users", **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, "source_table": table, "source_column": column, **extra}


VALID: dict[str, Any] = {
    "tables": [
        {"table": "Users", "type": "multi-entity", "pk": "PK", "sk": "SK", "entities": [
            {"entity_type": "USER", "source_table": "users", "pk_template": "USER#{id}",
             "sk_template": "PROFILE",
             "cutover": {"version_column": "updated_at", "source_key": ["id"]},
             "attributes": [
                 _a("email", "S", "email"),
                 _a("flag", "BOOL", "flag"),
                 _a("prefs", "M", "prefs"),
                 _a("note_doc", "M", "note", transformation={"type": "json-parse"}),
                 _a("photo", "B", "photo"),
                 _a("born", "S", "born", transformation={"type": "date-format",
                                                         "format": "YYYY-MM-DD"}),
                 _a("tag_names", "SS", "id", join={
                     "type": "lookup-table", "target_table": "tags",
                     "join_condition": "tags.user_id = users.id", "select_column": "tags.tag"}),
             ]},
            {"entity_type": "ORDER", "source_table": "orders", "pk_template": "USER#{user_id}",
             "sk_template": "ORDER#{order_no}",
             "cutover": {"source_key": ["order_no"], "partition_column": "order_no",
                         "version_column": "version"},
             "attributes": [
                 _a("amount", "N", "total", "orders"),
                 _a("amount_text", "S", "total", "orders",
                    transformation={"type": "number-format", "format": "0.0"}),
                 _a("paid", "S", "paid_unix", "orders", transformation={
                     "type": "date-format", "format": "iso8601", "source_format": "unix"}),
                 _a("paid_on", "S", "paid_text", "orders", transformation={
                     "type": "date-format", "format": "YYYY-MM-DD",
                     "source_format": "string:DD/MM/YYYY"}),
                 _a("label", "S", "state", "orders", transformation={
                     "type": "string-format", "format": "{state}#{user_id}"}),
                 _a("owner_email", "S", "user_id", "orders", join={
                     "type": "foreign-key", "target_table": "users",
                     "join_condition": "users.id = orders.user_id",
                     "select_column": "users.email"}),
                 _a("item_qty", "N", "order_no", "orders", calculation={
                     "type": "aggregate", "target_table": "order_lines",
                     "join_condition": "order_lines.order_no = orders.order_no",
                     "operation": "SUM", "select_column": "order_lines.qty"}),
                 _a("skus", "L", "order_no", "orders", join={
                     "type": "json-construction", "target_table": "order_lines",
                     "join_condition": "order_lines.order_no = orders.order_no",
                     "construction": {"type": "array",
                                      "select_columns": {"sku": "order_lines.sku"}}}),
             ]}]},
    ]
}  # fmt: skip


@pytest.fixture
def schema(scratch_db: Settings) -> SourceSchema:
    conn = connect(scratch_db.mysql)
    try:
        for ddl in DDL:
            query(conn, ddl)
        return SourceSchema.from_connection(conn)
    finally:
        conn.close()


def _errors(data: dict[str, Any], schema: SourceSchema) -> list[Problem]:
    return [p for p in lint(parse_contract(data), schema) if p.severity == "error"]


def test_introspection_sees_types_json_and_key_order(schema: SourceSchema) -> None:
    prefs = schema.column("users", "prefs")
    assert prefs is not None and prefs.data_type == "json"
    flag = schema.column("users", "flag")
    assert flag is not None and (flag.data_type, flag.column_type) == ("tinyint", "tinyint(1)")
    assert flag.nullable
    assert schema.primary_key("orders") == ["order_no"]
    assert schema.primary_key("tags") == ["tag", "user_id"]
    assert not schema.has_table("nothing") and schema.column("users", "nothing") is None


def test_a_contract_that_fits_the_schema_has_no_problems(schema: SourceSchema) -> None:
    assert lint(parse_contract(VALID), schema) == []


def test_a_template_column_warns_offline_and_passes_with_the_schema(
    schema: SourceSchema,
) -> None:
    offline = lint(parse_contract(VALID))
    assert [p.path for p in offline] == [
        "tables[0].entities[0].pk_template",
        "tables[0].entities[1].pk_template",
        "tables[0].entities[1].sk_template",
    ]
    assert all(p.severity == "warning" for p in offline)


def _entity(data: dict[str, Any], entity: int) -> dict[str, Any]:
    found: dict[str, Any] = data["tables"][0]["entities"][entity]
    return found


def _attr(data: dict[str, Any], entity: int, index: int) -> dict[str, Any]:
    found: dict[str, Any] = _entity(data, entity)["attributes"][index]
    return found


USER = "tables[0].entities[0]"
ORDER = "tables[0].entities[1]"

CASES = [
    # tables and columns
    (lambda d: _entity(d, 1).update(source_table="order"),
     f"{ORDER}.source_table", "table 'order' does not exist in the source database; did you mean "
     "orders"),
    (lambda d: _attr(d, 1, 5)["join"].update(target_table="user"),
     f"{ORDER}.attributes[5].join.target_table", "did you mean users"),
    (lambda d: _attr(d, 0, 0).update(source_column="e_mail"),
     f"{USER}.attributes[0].source_column", "column 'e_mail' does not exist in table 'users'; "
     "did you mean email"),
    (lambda d: _attr(d, 1, 5)["join"].update(select_column="users.mail"),
     f"{ORDER}.attributes[5].join.select_column", "column 'mail' does not exist in table 'users'"),
    (lambda d: _attr(d, 1, 7)["join"]["construction"].update(
        select_columns={"sku": "order_lines.sk"}),
     f"{ORDER}.attributes[7].join.construction.select_columns.sku", "column 'sk' does not exist"),
    (lambda d: _attr(d, 1, 4)["transformation"].update(format="{state}#{owner}"),
     f"{ORDER}.attributes[4].transformation.format", "column 'owner' does not exist"),
    (lambda d: _entity(d, 0).update(sk_template="P#{nothing}"),
     f"{USER}.sk_template", "neither an attribute of entity 'USER' nor a column of 'users'"),
    (lambda d: _entity(d, 0)["cutover"].update(version_column="changed"),
     f"{USER}.cutover.version_column", "column 'changed' does not exist"),
    (lambda d: _entity(d, 0)["cutover"].update(version_column="email"),
     f"{USER}.cutover.version_column", "must be a date, datetime, timestamp or integer"),
    (lambda d: _entity(d, 1)["cutover"].update(partition_column="order_id"),
     f"{ORDER}.cutover.partition_column", "did you mean order_no"),
    (lambda d: _entity(d, 1)["cutover"].pop("source_key"),
     f"{ORDER}.cutover.source_key", "defaults to ['id']"),
    # types
    (lambda d: _attr(d, 0, 0).update(type="N"),
     f"{USER}.attributes[0].type", "N cannot hold users.email (varchar(100)): type N needs a "
     "numeric column"),
    (lambda d: _attr(d, 0, 0).update(name="email_flag", type="BOOL"),
     f"{USER}.attributes[0].type", "type BOOL needs a TINYINT(1)"),
    (lambda d: _attr(d, 0, 3).pop("transformation"),
     f"{USER}.attributes[3].type", "type M needs a JSON column"),
    (lambda d: _attr(d, 0, 0).update(type="SS"),
     f"{USER}.attributes[0].type", "type SS needs a JSON array column"),
    (lambda d: _attr(d, 0, 1).update(source_column="email", type="B"),
     f"{USER}.attributes[1].type", "type B needs a binary or blob column"),
    (lambda d: _attr(d, 0, 5).update(source_column="email"),
     f"{USER}.attributes[5].type", "date-format with source_format 'date' needs a date"),
    (lambda d: _attr(d, 1, 2).update(source_column="state"),
     f"{ORDER}.attributes[2].type", "source_format 'unix' needs an integer column"),
    (lambda d: _attr(d, 1, 1).update(source_column="state"),
     f"{ORDER}.attributes[1].type", "number-format needs a numeric column"),
    (lambda d: _attr(d, 0, 3).update(source_column="id"),
     f"{USER}.attributes[3].type", "json-parse needs a JSON or text column"),
    (lambda d: _attr(d, 1, 5)["join"].update(select_column="users.email") or
     _attr(d, 1, 5).update(type="N"),
     f"{ORDER}.attributes[5].type", "N cannot hold users.email"),
    (lambda d: _attr(d, 1, 6)["calculation"].update(select_column="order_lines.sku"),
     f"{ORDER}.attributes[6].type", "SUM needs a numeric column"),
    (lambda d: _attr(d, 0, 6).update(type="NS"),
     f"{USER}.attributes[6].type", "needs a numeric select_column"),
]  # fmt: skip


@pytest.mark.parametrize(("mutate", "path", "phrase"), CASES, ids=[f"{c[1]}:{c[2]}" for c in CASES])
def test_schema_problems_name_the_field(
    schema: SourceSchema, mutate: Any, path: str, phrase: str
) -> None:
    data = copy.deepcopy(VALID)
    mutate(data)
    problems = _errors(data, schema)
    assert any(p.path == path and phrase in p.message for p in problems), problems


def test_a_wrong_source_key_is_a_warning_naming_the_real_one(schema: SourceSchema) -> None:
    data = copy.deepcopy(VALID)
    _entity(data, 1)["cutover"]["source_key"] = ["user_id"]
    problems = lint(parse_contract(data), schema)
    assert [(p.path, p.severity) for p in problems] == [(f"{ORDER}.cutover.source_key", "warning")]
    assert "the primary key of 'orders' is ['order_no']" in problems[0].message


def test_the_sample_contract_fits_the_sample_schema(scratch_db: Settings) -> None:
    sql = resources.files("cutover.sample").joinpath("schema.sql").read_text(encoding="utf-8")
    conn = connect(scratch_db.mysql)
    try:
        for statement in sql.split(";"):
            if statement.strip(" \n-") and "CREATE" in statement:
                query(conn, statement)
        schema = SourceSchema.from_connection(conn)
    finally:
        conn.close()
    data = json.loads((PROJECT_ROOT / "contracts" / "ecommerce.json").read_text())
    assert _errors(data, schema) == []


def test_unique_and_foreign_keys_dynamodb_does_not_enforce_are_warned(
    scratch_db: Settings,
) -> None:
    """Read from a real server's information_schema: a unique email, a composite unique key
    and a foreign key on the entity's source table each get one warning at its path; the
    referenced table, which no entity reads as its own, gets none."""
    conn = connect(scratch_db.mysql)
    try:
        query(conn, "CREATE TABLE teams (id INT PRIMARY KEY, name VARCHAR(40))")
        query(
            conn,
            "CREATE TABLE accounts (id INT PRIMARY KEY, email VARCHAR(100) NOT NULL, "
            "team_id INT NOT NULL, handle VARCHAR(20) NOT NULL, "
            "UNIQUE KEY uq_email (email), UNIQUE KEY uq_team_handle (team_id, handle), "
            "CONSTRAINT fk_account_team FOREIGN KEY (team_id) REFERENCES teams (id))",
        )
        schema = SourceSchema.from_connection(conn)
    finally:
        conn.close()
    contract = parse_contract({"tables": [{
        "table": "Accounts", "type": "single-entity", "source_table": "accounts", "pk": "id",
        "attributes": [_a("id", "N", "id", "accounts"), _a("email", "S", "email", "accounts")],
    }]})  # fmt: skip
    problems = lint(contract, schema)
    assert [(p.path, p.severity) for p in problems] == [("tables[0].source_table", "warning")] * 3
    text = " | ".join(p.message for p in problems)
    assert "accounts(email) is unique in MySQL (key 'uq_email')" in text
    assert "accounts(team_id, handle) is unique in MySQL (key 'uq_team_handle')" in text
    assert "accounts(team_id) references teams (foreign key 'fk_account_team')" in text
