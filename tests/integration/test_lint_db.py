"""Lint against a real source schema: unknown tables and columns, and types that cannot hold
the source type, each named by its JSON path."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from cutover.contract.lint import Problem, lint
from cutover.contract.load import parse_contract
from cutover.contract.source_schema import SourceSchema
from cutover.db import connect, query
from cutover.settings import Settings

pytestmark = pytest.mark.integration

DDL = [
    "CREATE TABLE users (id INT PRIMARY KEY, email VARCHAR(100), flag TINYINT(1), "
    "prefs JSON, note TEXT, updated_at DATETIME(6))",
    "CREATE TABLE orders (order_no INT PRIMARY KEY, user_id INT, total DECIMAL(10,2))",
]


def _a(name: str, type_: str, column: Any, table: str = "users", **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, "source_table": table, "source_column": column, **extra}


VALID = {
    "tables": [
        {"table": "Users", "type": "multi-entity", "pk": "PK", "sk": "SK", "entities": [
            {"entity_type": "USER", "source_table": "users", "pk_template": "USER#{id}",
             "sk_template": "PROFILE",
             "cutover": {"version_column": "updated_at", "source_key": ["id"]},
             "attributes": [_a("email", "S", "email"), _a("flag", "BOOL", "flag"),
                            _a("prefs", "M", "prefs"),
                            _a("note_doc", "M", "note", transformation={"type": "json-parse"})]},
            {"entity_type": "ORDER", "source_table": "orders", "pk_template": "USER#{user_id}",
             "sk_template": "ORDER#{order_no}", "cutover": {"source_key": ["order_no"]},
             "attributes": [_a("total", "N", "total", "orders")]}]},
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


def test_schema_introspection_sees_json_on_mariadb(schema: SourceSchema) -> None:
    assert schema.column("users", "prefs").data_type == "json"  # type: ignore[union-attr]
    assert schema.primary_key("orders") == ["order_no"]


def test_a_contract_that_fits_the_schema_has_no_errors(schema: SourceSchema) -> None:
    assert _errors(VALID, schema) == []


def _attr(data: dict[str, Any], entity: int, index: int) -> dict[str, Any]:
    return data["tables"][0]["entities"][entity]["attributes"][index]


CASES = [
    (lambda d: d["tables"][0]["entities"][1].update(source_table="order"),
     "tables[0].entities[1].source_table", "did you mean orders"),
    (lambda d: _attr(d, 0, 0).update(source_column="e_mail"),
     "tables[0].entities[0].attributes[0].source_column", "did you mean email"),
    (lambda d: _attr(d, 0, 0).update(type="N"),
     "tables[0].entities[0].attributes[0].type", "needs a numeric column"),
    (lambda d: _attr(d, 0, 0).update(name="email_flag", type="BOOL"),
     "tables[0].entities[0].attributes[0].type", "TINYINT(1)"),
    (lambda d: _attr(d, 0, 3).pop("transformation"),
     "tables[0].entities[0].attributes[3].type", "needs a JSON column"),
    (lambda d: d["tables"][0]["entities"][0].update(sk_template="P#{nothing}"),
     "tables[0].entities[0].sk_template", "neither an attribute"),
    (lambda d: d["tables"][0]["entities"][0]["cutover"].update(version_column="changed"),
     "tables[0].entities[0].cutover.version_column", "does not exist"),
    (lambda d: d["tables"][0]["entities"][0]["cutover"].update(version_column="email"),
     "tables[0].entities[0].cutover.version_column", "must be a date-time"),
]  # fmt: skip


@pytest.mark.parametrize(("mutate", "path", "phrase"), CASES, ids=[c[1] for c in CASES])
def test_schema_problems_name_the_field(
    schema: SourceSchema, mutate: Any, path: str, phrase: str
) -> None:
    data = copy.deepcopy(VALID)
    mutate(data)
    problems = _errors(data, schema)
    assert any(p.path == path and phrase in p.message for p in problems), problems


def test_a_wrong_source_key_is_a_warning_naming_the_real_one(schema: SourceSchema) -> None:
    data = copy.deepcopy(VALID)
    data["tables"][0]["entities"][1]["cutover"]["source_key"] = ["user_id"]
    warnings = [p for p in lint(parse_contract(data), schema) if p.severity == "warning"]
    assert any("['order_no']" in p.message for p in warnings), warnings
