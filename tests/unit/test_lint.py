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

Mutation = Callable[[dict[str, Any]], Any]


def _a(name: str, type_: str, column: Any, table: str = "orders", **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, "source_table": table, "source_column": column, **extra}


VALID: dict[str, Any] = {
    "tables": [
        {
            "table": "Orders", "type": "single-entity", "source_table": "orders",
            "pk": "order_id", "sk": None,
            "gsis": [{"index_name": "ByUser", "pk": "user_name", "sk": "amount"}],
            "attributes": [
                _a("order_id", "N", "id"),
                _a("amount", "N", "total"),
                _a("user_name", "S", "user_id", join={
                    "type": "foreign-key", "target_table": "users",
                    "join_condition": "users.id = orders.user_id",
                    "select_column": "users.name"}),
                _a("line_count", "N", "id", calculation={
                    "type": "aggregate", "target_table": "lines",
                    "join_condition": "lines.order_id = orders.id", "operation": "COUNT",
                    "select_column": "lines.id"}),
                _a("line_items", "L", "id", join={
                    "type": "json-construction", "target_table": "lines",
                    "join_condition": "lines.order_id = orders.id",
                    "construction": {"type": "array", "order_by": "lines.id",
                                     "select_columns": {"sku": "lines.sku", "qty": "lines.qty"}}}),
                _a("placed", "S", "created_at", transformation={
                    "type": "date-format", "format": "YYYY-MM-DD", "source_format": "datetime"}),
                _a("carrier", "S", "id", join={
                    "type": "conditional", "condition": "orders.shipped_at IS NOT NULL",
                    "target_table": "shipments", "join_condition": "shipments.order_id = orders.id",
                    "select_column": "shipments.carrier", "else_value": "none"}),
                _a("order_ref", "S", ["id", "user_id"],
                   calculation={"type": "concat", "separator": "-"}),
                _a("weight", "N", "weight",
                   transformation={"type": "number-format", "format": "0.0"}),
                _a("age_days", "N", "created_at", calculation={
                    "type": "date-math", "operation": "diff-days"}),
                _a("size_label", "S", "total", calculation={
                    "type": "case", "cases": [{"when": "orders.total > 100", "then": "'big'"}],
                    "else": "'small'"}),
                _a("best_price", "N", ["id", "user_id"], join={
                    "type": "multi-column", "target_table": "prices",
                    "join_conditions": ["prices.order_id = orders.id",
                                        "prices.user_id = orders.user_id"],
                    "select_column": "prices.amount", "null_value": "0"}),
                _a("region_name", "S", "user_id", join={"type": "chain", "joins": [
                    {"target_table": "users", "join_condition": "users.id = orders.user_id",
                     "select_column": "users.region_id"},
                    {"target_table": "regions", "join_condition": "regions.id = users.region_id",
                     "select_column": "regions.name"}]}),
                _a("meta", "M", "meta", transformation={"type": "json-parse"},
                   cutover={"on_null": "default", "default": {}}),
            ],
            "satisfies": ["Get order"], "estimated_item_size_bytes": 300,
        },
        {
            "table": "Users", "type": "multi-entity", "pk": "PK", "sk": "SK",
            "gsis": [{"index_name": "ByEmail", "pk": "email", "projection": "INCLUDE",
                      "projected_attributes": ["uid"]}],
            "entities": [
                {"entity_type": "USER", "source_table": "users", "pk_template": "USER#{uid}",
                 "sk_template": "PROFILE", "attributes": [
                     _a("uid", "N", "id", "users"), _a("email", "S", "email", "users")]},
                {"entity_type": "ORDER", "source_table": "orders",
                 "pk_template": "USER#{user_id}", "sk_template": "ORDER#{oid}",
                 "attributes": [_a("oid", "N", "id"), _a("user_id", "N", "user_id")]},
            ],
            "satisfies": ["User with orders"], "estimated_item_size_bytes": 300,
        },
        {
            "table": "Categories", "type": "single-entity", "source_table": "categories",
            "pk": "category_id",
            "attributes": [
                _a("category_id", "N", "id", "categories"),
                _a("parent_name", "S", "parent_id", "categories", join={
                    "type": "self-join", "join_alias": "parent",
                    "join_condition": "parent.id = categories.parent_id",
                    "select_column": "parent.name", "null_value": "ROOT"}),
            ],
        },
    ]
}  # fmt: skip


def _errors(data: dict[str, Any]) -> list[Problem]:
    return [p for p in lint(parse_contract(data)) if p.severity == "error"]


def test_the_valid_contract_has_no_problems() -> None:
    assert lint(parse_contract(VALID)) == []


def test_the_sample_contract_has_no_errors() -> None:
    contract, problems = lint_file(PROJECT_ROOT / "contracts" / "ecommerce.json")
    assert contract is not None
    assert [p for p in problems if p.severity == "error"] == []


def _set(path: str, value: Any) -> Mutation:
    """Set the field at a dotted path (``tables.0.pk``) to ``value``."""

    def apply(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = data
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        target[int(last) if last.isdigit() else last] = value

    return apply


def _extra_gsis(count: int) -> Mutation:
    def apply(data: dict[str, Any]) -> None:
        data["tables"][0]["gsis"] = [
            {"index_name": f"G{i:02d}", "pk": "user_name"} for i in range(count)
        ]

    return apply


CASES: list[tuple[Mutation, str, str]] = [
    # keys
    (_set("tables.0.pk", "missing"), "tables[0].pk",
     "not produced by any attribute of table 'Orders'"),
    (_set("tables.0.attributes.0.type", "BOOL"), "tables[0].pk", "a key must be S, N or B"),
    (_set("tables.1.entities.1.sk_template", "PROFILE"), "tables[1].entities[1].sk_template",
     "same shape"),
    (_set("tables.1.entities.0.pk_template", "USER"), "tables[1].entities[0].sk_template",
     "both keys are constant"),
    (_set("tables.1.entities.1.entity_type", "USER"), "tables[1].entities[1].entity_type",
     "already used by entities[0]"),
    (_set("tables.1.entities.0.attributes.0", _a("oid", "S", "id", "users")),
     "tables[1].entities[1].attributes[0].type", "one attribute name must have one type"),
    (_set("tables.1.entities.0.pk_template", "USER#{}"), "tables[1].entities[0].pk_template",
     "empty {}"),
    # GSIs
    (_set("tables.0.gsis.0.pk", "nobody"), "tables[0].gsis[0].pk",
     "not produced by any attribute of table 'Orders'; add an attribute named 'nobody'"),
    (_set("tables.1.gsis.0.pk", "nobody"), "tables[1].gsis[0].pk", "any entity"),
    (_set("tables.0.attributes.1.type", "M"), "tables[0].gsis[0].sk", "a key must be S, N or B"),
    (_set("tables.0.gsis.0.projection", "INCLUDE"), "tables[0].gsis[0].projected_attributes",
     "needs projected_attributes"),
    (_set("tables.1.gsis.0.projection", "ALL"), "tables[1].gsis[0].projected_attributes",
     "only apply to an INCLUDE"),
    (lambda d: d["tables"][0]["gsis"].append({"index_name": "ByUser", "pk": "amount"}),
     "tables[0].gsis[1].index_name", "already used by gsis[0]"),
    (_extra_gsis(21), "tables[0].gsis", "at most 20"),
    # names
    (_set("tables.1.table", "Orders"), "tables[1].table", "already used by tables[0]"),
    (_set("tables.0.attributes.1.name", "order_id"), "tables[0].attributes[1].name",
     "already defined by attributes[0]"),
    (_set("tables.0.attributes.0.name", "__secret"), "tables[0].attributes[0].name", "reserved"),
    (_set("tables.0.attributes.1.name", "cutover_version"), "tables[0].attributes[1].name",
     "row version"),
    (_set("tables.0.estimated_item_size_bytes", 500_000),
     "tables[0].estimated_item_size_bytes", "400 KB"),
    # sources and joins
    (_set("tables.0.attributes.1.source_table", "payments"),
     "tables[0].attributes[1].source_table", "add a join or an aggregate calculation"),
    (_set("tables.0.attributes.2.join.join_condition", "users.id = users.id"),
     "tables[0].attributes[2].join.join_condition", "would match every row"),
    (_set("tables.0.attributes.3.calculation.join_condition", "lines.order_id > 0"),
     "tables[0].attributes[3].calculation.join_condition", "would match every row"),
    (_set("tables.0.attributes.11.join.join_conditions", ["prices.order_id = 1"]),
     "tables[0].attributes[11].join.join_conditions", "would match every row"),
    (_set("tables.2.attributes.1.join.join_condition", "parent.id = parent.parent_id"),
     "tables[2].attributes[1].join.join_condition", "must compare 'parent' with 'categories'"),
    (_set("tables.2.attributes.1.join.join_alias", "categories"),
     "tables[2].attributes[1].join.join_alias", "must differ"),
    (_set("tables.0.attributes.2.join.target_table", "orders"),
     "tables[0].attributes[2].join.target_table", "itself and has no alias"),
    (_set("tables.0.attributes.4.join.target_table", "orders"),
     "tables[0].attributes[4].join.target_table", "rewrite join as"),
    (_set("tables.0.attributes.12.join.joins.1.target_table", "orders"),
     "tables[0].attributes[12].join.joins[1].target_table", "cannot tell the outer row"),
    (_set("tables.0.attributes.3.calculation.target_table", "orders"),
     "tables[0].attributes[3].calculation.target_table", "rewrite calculation as"),
    (_set("tables.0.attributes.2.join.select_column", "accounts.name"),
     "tables[0].attributes[2].join.select_column", "names 'accounts'"),
    (_set("tables.0.attributes.4.join.construction.select_columns.sku", "orders.sku"),
     "tables[0].attributes[4].join.construction.select_columns.sku", "names orders"),
    (_set("tables.0.attributes.12.join.joins.1.select_column", "cities.name"),
     "tables[0].attributes[12].join.joins[1].select_column", "names 'cities'"),
    (_set("tables.0.attributes.11.join.null_value", "none"),
     "tables[0].attributes[11].join.null_value", "not a number"),
    # calculations and types
    (_set("tables.0.attributes.3.type", "S"), "tables[0].attributes[3].type",
     "aggregate COUNT makes N"),
    (_set("tables.0.attributes.7.source_column", "id"), "tables[0].attributes[7].source_column",
     "at least 2 columns"),
    (_set("tables.0.attributes.9.source_column", ["a", "b", "c"]),
     "tables[0].attributes[9].source_column", "1 or 2 columns"),
    (_set("tables.0.attributes.4.type", "N"), "tables[0].attributes[4].type",
     "json-construction array makes L or S"),
    (_set("tables.0.attributes.10.type", "M"), "tables[0].attributes[10].type",
     "case calculation makes S or N or BOOL"),
    (_set("tables.0.attributes.5.type", "N"), "tables[0].attributes[5].type",
     "date-format transformation makes S"),
    (_set("tables.0.attributes.8.type", "BOOL"), "tables[0].attributes[8].type",
     "number-format transformation makes N or S"),
    (_set("tables.0.attributes.13.type", "B"), "tables[0].attributes[13].type",
     "json-parse transformation makes M or L"),
    (_set("tables.0.attributes.13.type", "SS"), "tables[0].attributes[13].cutover.default",
     "a JSON default can only make S, N, BOOL, M or L"),
    (_set("tables.0.attributes.1.source_column", ["total", "id"]),
     "tables[0].attributes[1].type", "a list of source columns makes S"),
    (_set("tables.0.attributes.1.cutover", {"on_null": "default", "default": "lots"}),
     "tables[0].attributes[1].cutover.default", "does not fit type N"),
    (_set("tables.0.attributes.13.cutover.default", [1]),
     "tables[0].attributes[13].cutover.default", "does not fit type M"),
    (_set("tables.0.attributes.5.transformation.source_format", "weekday"),
     "tables[0].attributes[5].transformation.source_format", "is not timestamp"),
]  # fmt: skip


@pytest.mark.parametrize(("mutate", "path", "phrase"), CASES, ids=[f"{c[1]}:{c[2]}" for c in CASES])
def test_each_broken_contract_is_named_by_its_path(
    mutate: Mutation, path: str, phrase: str
) -> None:
    data = copy.deepcopy(VALID)
    mutate(data)
    problems = _errors(data)
    assert any(p.path == path and phrase in p.message for p in problems), problems


def test_a_problem_prints_as_path_and_message() -> None:
    data = copy.deepcopy(VALID)
    data["tables"][0]["attributes"][2]["join"]["select_column"] = "accounts.name"
    (problem,) = _errors(data)
    assert str(problem).startswith("tables[0].attributes[2].join.select_column: 'accounts.name'")
    assert str(Problem("tables[0].pk", "x", "warning")) == "warning: tables[0].pk: x"


def test_reserved_words_are_warnings_not_errors() -> None:
    data = copy.deepcopy(VALID)
    data["tables"][0]["attributes"][1]["name"] = "status"
    data["tables"][0]["gsis"][0]["sk"] = "status"
    problems = lint(parse_contract(data))
    assert [(p.path, p.severity) for p in problems] == [("tables[0].attributes[1].name", "warning")]
    assert "ExpressionAttributeNames" in problems[0].message


def test_a_template_field_that_is_no_attribute_is_a_warning_offline() -> None:
    data = copy.deepcopy(VALID)
    data["tables"][1]["entities"][0]["pk_template"] = "USER#{id}"
    problems = lint(parse_contract(data))
    assert [(p.path, p.severity) for p in problems] == [
        ("tables[1].entities[0].pk_template", "warning")
    ]
    assert "{id} names no attribute of entity 'USER'" in problems[0].message


STRUCTURAL: list[tuple[Mutation, str, str]] = [
    (_set("tables.0.attributes.2.join.type", "outer-join"), "tables[0].attributes[2].join",
     "is not one of"),
    (lambda d: d["tables"][0]["attributes"][2]["join"].pop("select_column"),
     "tables[0].attributes[2].join.select_column", "required"),
    (lambda d: d["tables"][0].pop("pk"), "tables[0].pk", "required"),
    (_set("tables.0.attributes.0.sorce_column", "id"), "tables[0].attributes[0].sorce_column",
     "not a known field"),
    (_set("tables.0.attributes.0.type", "STRING"), "tables[0].attributes[0].type",
     "not allowed"),
    (_set("tables.0.type", "single"), "tables[0].type", "not allowed"),
    (_set("tables.0.attributes.9.calculation.operation", "add"),
     "tables[0].attributes[9].calculation", "needs an interval"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("mutate", "path", "phrase"), STRUCTURAL, ids=[f"{c[1]}:{c[2]}" for c in STRUCTURAL]
)
def test_structural_problems_come_from_the_file_with_paths(
    tmp_path: Path, mutate: Mutation, path: str, phrase: str
) -> None:
    data = copy.deepcopy(VALID)
    mutate(data)
    file = tmp_path / "broken.json"
    file.write_text(json.dumps(data))
    contract, problems = lint_file(file)
    assert contract is None
    assert all(p.severity == "error" for p in problems)
    assert any(p.path == path and phrase in p.message for p in problems), problems


def test_bad_json_names_line_and_column(tmp_path: Path) -> None:
    file = tmp_path / "bad.json"
    file.write_text('{"tables": [\n  {"table": "X",}\n]}')
    contract, problems = lint_file(file)
    assert contract is None
    assert [p.path for p in problems] == ["$"]
    assert "line 2" in problems[0].message


def test_a_valid_file_is_linted_semantically(tmp_path: Path) -> None:
    data = copy.deepcopy(VALID)
    data["tables"][0]["pk"] = "missing"
    file = tmp_path / "shop.json"
    file.write_text(json.dumps(data))
    contract, problems = lint_file(file)
    assert contract is not None and contract.name == "shop"
    assert [p.path for p in problems] == ["tables[0].pk"]


def test_cli_exits_2_with_one_line_per_problem(tmp_path: Path, capsys: Any) -> None:
    from cutover.cli import main

    data = copy.deepcopy(VALID)
    data["tables"][0]["pk"] = "missing"
    data["tables"][0]["gsis"][0]["pk"] = "nobody"
    file = tmp_path / "c.json"
    file.write_text(json.dumps(data))
    assert main(["contract", "lint", str(file)]) == 2
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["tables[0].pk", "tables[0].gsis[0].pk"]


def test_a_conditional_join_that_never_names_its_table_is_a_warning() -> None:
    """Bare column names are valid SQL, so lint warns rather than rejects."""
    data = copy.deepcopy(VALID)
    data["tables"][0]["attributes"][6]["join"]["condition"] = "1 = 1"
    problems = lint(parse_contract(data))
    hits = [p for p in problems if p.path == "tables[0].attributes[6].join.condition"]
    assert [p.severity for p in hits] == ["warning"]
    assert "same for every row" in hits[0].message
