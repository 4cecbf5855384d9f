"""Broken contracts, one mutation each: lint names the exact JSON path and what is wrong."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cutover.contract.lint import Problem, lint, lint_file
from cutover.contract.load import parse_contract
from cutover.settings import PROJECT_ROOT

pytestmark = pytest.mark.unit


def _a(name: str, type_: str, column: Any, table: str = "orders", **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, "source_table": table, "source_column": column, **extra}


VALID: dict[str, Any] = {
    "tables": [
        {
            "table": "Orders", "type": "single-entity", "source_table": "orders",
            "pk": "order_id", "sk": None,
            "gsis": [{"index_name": "ByUser", "pk": "user_name", "sk": "total"}],
            "attributes": [
                _a("order_id", "N", "id"),
                _a("total", "N", "total"),
                _a("user_name", "S", "user_id", join={
                    "type": "foreign-key", "target_table": "users",
                    "join_condition": "users.id = orders.user_id",
                    "select_column": "users.name"}),
                _a("line_count", "N", "id", calculation={
                    "type": "aggregate", "target_table": "lines",
                    "join_condition": "lines.order_id = orders.id", "operation": "COUNT",
                    "select_column": "lines.id"}),
            ],
            "satisfies": ["Get order"], "estimated_item_size_bytes": 300,
        },
        {
            "table": "Users", "type": "multi-entity", "pk": "PK", "sk": "SK",
            "entities": [
                {"entity_type": "USER", "source_table": "users", "pk_template": "USER#{uid}",
                 "sk_template": "PROFILE", "attributes": [_a("uid", "N", "id", "users")]},
                {"entity_type": "ORDER", "source_table": "orders",
                 "pk_template": "USER#{user_id}", "sk_template": "ORDER#{oid}",
                 "attributes": [_a("oid", "N", "id"), _a("user_id", "N", "user_id")]},
            ],
            "satisfies": ["User with orders"], "estimated_item_size_bytes": 300,
        },
    ]
}  # fmt: skip


def _errors(data: dict[str, Any]) -> list[Problem]:
    return [p for p in lint(parse_contract(data)) if p.severity == "error"]


def test_the_valid_contract_has_no_errors() -> None:
    assert _errors(VALID) == []


def test_the_sample_contract_has_no_errors() -> None:
    contract, problems = lint_file(PROJECT_ROOT / "contracts" / "ecommerce.json")
    assert contract is not None
    assert [p for p in problems if p.severity == "error"] == []


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def apply(data: dict[str, Any]) -> None:
        target: Any = data
        parts = path.replace("]", "").replace("[", ".").split(".")
        for part in parts[:-1]:
            target = target[int(part)] if part.isdigit() else target[part]
        last = parts[-1]
        target[int(last) if last.isdigit() else last] = value

    return apply


CASES = [
    # (mutation, expected path, phrase in the message)
    (_set("tables.0.pk", "missing"), "tables[0].pk", "not produced by any attribute"),
    (_set("tables.0.attributes.1.type", "M"), "tables[0].gsis[0].sk", "a key must be S, N or B"),
    (_set("tables.0.gsis.0.pk", "nobody"), "tables[0].gsis[0].pk", "not produced by any attribute"),
    (_set("tables.0.attributes.1.name", "order_id"), "tables[0].attributes[1].name",
     "defined twice"),
    (_set("tables.0.attributes.2.join.join_condition", "users.id = users.id"),
     "tables[0].attributes[2].join.join_condition", "match every row"),
    (_set("tables.0.attributes.2.join.target_table", "orders"),
     "tables[0].attributes[2].join.target_table", "use a self-join"),
    (_set("tables.0.attributes.2.join.select_column", "accounts.name"),
     "tables[0].attributes[2].join.select_column", "names a table other than"),
    (_set("tables.0.attributes.1.source_table", "payments"),
     "tables[0].attributes[1].source_table", "no join or aggregate"),
    (_set("tables.0.attributes.3.type", "S"), "tables[0].attributes[3].type",
     "COUNT makes a number"),
    (_set("tables.0.attributes.0.name", "__secret"), "tables[0].attributes[0].name", "reserved"),
    (_set("tables.0.estimated_item_size_bytes", 500_000),
     "tables[0].estimated_item_size_bytes", "400 KB"),
    (_set("tables.1.entities.1.attributes.0.name", "SK"),
     "tables[1].entities[1].attributes[0].name", "collides with the key"),
    (_set("tables.1.entities.1.sk_template", "PROFILE"), "tables[1].entities[1].sk_template",
     "same shape"),
    (_set("tables.1.entities.0.attributes.0", _a("oid", "S", "id", "users")),
     "tables[1].entities", "one attribute name must have one type"),
    (_set("tables.0.gsis.0.projection", "INCLUDE"), "tables[0].gsis[0].projected_attributes",
     "needs projected_attributes"),
    (_set("tables.1.table", "Orders"), "tables[1].table", "used twice"),
    (_set("tables.0.attributes.1.cutover", {"on_null": "default", "default": "lots"}),
     "tables[0].attributes[1].cutover.default", "does not fit type N"),
    (_set("tables.0.attributes.1.transformation",
          {"type": "date-format", "format": "YYYY", "source_format": "weekday"}),
     "tables[0].attributes[1].transformation.source_format", "is not timestamp"),
]  # fmt: skip


@pytest.mark.parametrize(("mutate", "path", "phrase"), CASES, ids=[c[1] for c in CASES])
def test_each_broken_contract_is_named_by_its_path(
    mutate: Callable[[dict[str, Any]], None], path: str, phrase: str
) -> None:
    data = copy.deepcopy(VALID)
    mutate(data)
    problems = _errors(data)
    assert any(p.path == path and phrase in p.message for p in problems), problems


STRUCTURAL = [
    (_set("tables.0.attributes.2.join.type", "outer-join"), "tables[0].attributes[2].join",
     "is not one of"),
    (lambda d: d["tables"][0]["attributes"][2]["join"].pop("select_column"),
     "tables[0].attributes[2].join.select_column", "required"),
    (_set("tables.0.attributes.0.sorce_column", "id"), "tables[0].attributes[0].sorce_column",
     "not a known field"),
    (_set("tables.0.attributes.0.type", "STRING"), "tables[0].attributes[0].type",
     "not allowed"),
    (_set("tables.0.type", "single"), "tables[0].type", "not allowed"),
]  # fmt: skip


@pytest.mark.parametrize(("mutate", "path", "phrase"), STRUCTURAL, ids=[c[1] for c in STRUCTURAL])
def test_structural_problems_come_from_the_file_with_paths(
    tmp_path: Path, mutate: Callable[[dict[str, Any]], None], path: str, phrase: str
) -> None:
    data = copy.deepcopy(VALID)
    mutate(data)
    file = tmp_path / "broken.json"
    file.write_text(json.dumps(data))
    contract, problems = lint_file(file)
    assert contract is None
    assert any(p.path == path and phrase in p.message for p in problems), problems


def test_bad_json_names_line_and_column(tmp_path: Path) -> None:
    file = tmp_path / "bad.json"
    file.write_text('{"tables": [\n  {"table": "X",}\n]}')
    _, problems = lint_file(file)
    assert len(problems) == 1 and "line 2" in problems[0].message


def test_reserved_words_are_warnings_not_errors() -> None:
    data = copy.deepcopy(VALID)
    data["tables"][0]["attributes"][1]["name"] = "status"
    data["tables"][0]["gsis"][0]["sk"] = "status"
    problems = lint(parse_contract(data))
    assert [p.severity for p in problems if "reserved word" in p.message] == ["warning"]
    assert not [p for p in problems if p.severity == "error"]


def test_cli_exits_2_with_one_line_per_problem(tmp_path: Path, capsys: Any) -> None:
    from cutover.cli import main

    data = copy.deepcopy(VALID)
    data["tables"][0]["pk"] = "missing"
    data["tables"][0]["gsis"][0]["pk"] = "nobody"
    file = tmp_path / "c.json"
    file.write_text(json.dumps(data))
    assert main(["contract", "lint", str(file)]) == 2
    lines = capsys.readouterr().out.strip().splitlines()
    errors = [line.split(":")[0] for line in lines if not line.startswith("warning:")]
    assert errors == ["tables[0].pk", "tables[0].gsis[0].pk"]
