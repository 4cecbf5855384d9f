"""Every join, calculation and transformation type, as a real MariaDB view, on hand-written
rows whose expected values are worked out by hand below."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from cutover.contract.load import parse_contract
from cutover.contract.model import Contract
from cutover.contract.views import view_name
from cutover.db import connect, query
from cutover.errors import ContractError
from cutover.prepare.views import apply_views
from cutover.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.mysql]

SCHEMA = """
CREATE TABLE categories (id INT PRIMARY KEY, name VARCHAR(50), parent_id INT NULL);
INSERT INTO categories VALUES (1, 'Root', NULL), (2, 'Mid', 1), (3, 'Leaf', 2);
CREATE TABLE users (id INT PRIMARY KEY, username VARCHAR(50), created_at DATETIME,
  born_unix INT, born_text VARCHAR(20));
INSERT INTO users VALUES (10, 'ann', '2024-03-05 06:07:08', 86400, '05/03/2024'),
  (11, 'bob', '2024-12-31 23:59:59', 0, '31/12/2024');
CREATE TABLE products (id INT PRIMARY KEY, name VARCHAR(50), category_id INT, seller_id INT NULL,
  price DECIMAL(10,3), attrs JSON, status CHAR(1), first_name VARCHAR(20), last_name VARCHAR(20),
  created_at DATETIME, updated_at DATETIME);
INSERT INTO products VALUES
  (100, 'Lamp', 3, 10, 12.345, '{"color": "red", "size": {"w": 2.5}}', 'P', 'Ada', 'Lovelace',
   '2024-01-01 00:00:00', '2024-01-11 12:00:00'),
  (101, 'Desk', 2, NULL, 99.999, '[1, 2]', 'X', 'Bo', NULL,
   '2024-02-01 00:00:00', '2024-02-01 00:00:00');
CREATE TABLE variants (product_id INT, variant_id INT, label VARCHAR(20),
  PRIMARY KEY (product_id, variant_id));
INSERT INTO variants VALUES (100, 1, 'small'), (100, 2, 'large'), (101, 1, 'oak');
CREATE TABLE order_lines (id INT PRIMARY KEY, product_id INT, variant_id INT, qty INT,
  price DECIMAL(10,2));
INSERT INTO order_lines VALUES (1, 100, 2, 3, 10.00), (2, 100, 1, 1, 5.50), (3, 100, 2, 2, 10.00);
CREATE TABLE reviews (id INT PRIMARY KEY, product_id INT, rating INT, body VARCHAR(50),
  created_at DATETIME);
INSERT INTO reviews VALUES (1, 100, 5, 'great', '2024-01-02'), (2, 100, 3, 'ok', '2024-01-05'),
  (3, 100, 1, 'bad', '2024-01-03');
CREATE TABLE tags (id INT PRIMARY KEY, name VARCHAR(20));
INSERT INTO tags VALUES (1, 'eco'), (2, 'sale'), (3, 'new');
CREATE TABLE product_tags (product_id INT, tag_id INT, PRIMARY KEY (product_id, tag_id));
INSERT INTO product_tags VALUES (100, 1), (100, 2);
"""


def _a(name: str, type_: str, column: Any, **extra: Any) -> dict[str, Any]:
    table = extra.pop("table", "products")
    return {"name": name, "type": type_, "source_table": table, "source_column": column, **extra}


PRODUCTS_ATTRS = [
    _a("product_id", "N", "id"),
    _a(
        "category_name",
        "S",
        "category_id",
        join={
            "type": "foreign-key",
            "target_table": "categories",
            "join_condition": "categories.id = products.category_id",
            "select_column": "categories.name",
        },
    ),
    _a(
        "variant_label",
        "S",
        ["id", "category_id"],
        join={
            "type": "multi-column",
            "target_table": "variants",
            "join_conditions": ["variants.product_id = products.id", "variants.variant_id = 2"],
            "select_column": "variants.label",
            "null_value": "none",
        },
    ),
    _a(
        "seller",
        "S",
        "seller_id",
        join={
            "type": "conditional",
            "condition": "products.seller_id IS NOT NULL",
            "target_table": "users",
            "join_condition": "users.id = products.seller_id",
            "select_column": "users.username",
            "else_value": "it's nobody\\",
        },
    ),
    _a(
        "grandparent",
        "S",
        "category_id",
        join={
            "type": "chain",
            "joins": [
                {
                    "target_table": "categories",
                    "join_condition": "categories.id = products.category_id",
                    "select_column": "categories.parent_id",
                },
                {
                    "target_table": "users",
                    "join_condition": "users.id = categories.parent_id + 9",
                    "select_column": "users.username",
                },
            ],
        },
    ),
    _a(
        "path",
        "S",
        "category_id",
        join={
            "type": "chain",
            "chain_separator": " > ",
            "joins": [
                {
                    "target_table": "categories",
                    "join_condition": "categories.id = products.category_id",
                    "select_column": "categories.name",
                },
                {
                    "target_table": "users",
                    "join_condition": "users.id = products.seller_id",
                    "select_column": "users.username",
                },
            ],
        },
    ),
    _a(
        "first_tag",
        "S",
        "id",
        join={
            "type": "lookup-table",
            "target_table": "product_tags",
            "join_condition": "product_tags.product_id = products.id AND product_tags.tag_id = 2",
            "select_column": "(SELECT tags.name FROM tags WHERE tags.id = product_tags.tag_id)",
        },
    ),
    _a(
        "tag_ids",
        "NS",
        "id",
        join={
            "type": "lookup-table",
            "target_table": "product_tags",
            "join_condition": "product_tags.product_id = products.id",
            "select_column": "product_tags.tag_id",
        },
    ),
    _a(
        "top_reviews",
        "L",
        "id",
        join={
            "type": "json-construction",
            "target_table": "reviews",
            "join_condition": "reviews.product_id = products.id",
            "construction": {
                "type": "array",
                "limit": 2,
                "order_by": "reviews.rating DESC",
                "select_columns": {"r": "reviews.rating", "b": "reviews.body"},
            },
        },
    ),
    _a(
        "latest_review",
        "M",
        "id",
        join={
            "type": "json-construction",
            "target_table": "reviews",
            "join_condition": "reviews.product_id = products.id",
            "construction": {
                "type": "object",
                "order_by": "reviews.created_at DESC",
                "select_columns": {"body": "reviews.body"},
            },
        },
    ),
    _a(
        "units_sold",
        "N",
        "id",
        calculation={
            "type": "aggregate",
            "target_table": "order_lines",
            "join_condition": "order_lines.product_id = products.id",
            "operation": "SUM",
            "select_column": "order_lines.qty",
        },
    ),
    _a(
        "line_count",
        "N",
        "id",
        calculation={
            "type": "aggregate",
            "target_table": "order_lines",
            "join_condition": "order_lines.product_id = products.id",
            "operation": "COUNT",
            "select_column": "order_lines.id",
        },
    ),
    _a(
        "max_price",
        "N",
        "id",
        calculation={
            "type": "aggregate",
            "target_table": "order_lines",
            "join_condition": "order_lines.product_id = products.id",
            "operation": "MAX",
            "select_column": "order_lines.price",
        },
    ),
    _a(
        "status_label",
        "S",
        "status",
        calculation={
            "type": "case",
            "cases": [{"when": "status = 'P'", "then": "'Pending'"}],
            "else": "'Unknown'",
        },
    ),
    _a(
        "full_name",
        "S",
        ["first_name", "last_name"],
        calculation={"type": "concat", "separator": " "},
    ),
    _a(
        "review_due",
        "S",
        "created_at",
        calculation={"type": "date-math", "operation": "add", "interval": "30 DAY"},
    ),
    _a(
        "days_to_update",
        "N",
        ["created_at", "updated_at"],
        calculation={"type": "date-math", "operation": "diff-days"},
    ),
    _a(
        "created_day",
        "S",
        "created_at",
        transformation={"type": "date-format", "format": "YYYY-MM-DD", "source_format": "datetime"},
    ),
    _a(
        "created_iso",
        "S",
        "created_at",
        transformation={"type": "date-format", "format": "iso8601"},
    ),
    _a(
        "sku", "S", "id", transformation={"type": "string-format", "format": "SKU#{}-{category_id}"}
    ),
    _a("kind", "S", "id", transformation={"type": "string-format", "format": "PRODUCT"}),
    _a("shout", "S", "name", transformation={"type": "string-format", "format": "upper"}),
    _a("price2", "N", "price", transformation={"type": "number-format", "format": "0.00"}),
    _a("attrs", "M", "attrs", transformation={"type": "json-parse"}),
    _a("width", "N", "attrs", transformation={"type": "json-parse", "format": "$.size.w"}),
]


def contract_dict() -> dict[str, Any]:
    return {
        "cutover": {"name": "viewtest"},
        "tables": [
            {"table": "Products", "type": "single-entity", "source_table": "products",
             "pk": "product_id", "attributes": PRODUCTS_ATTRS,
             "cutover": {"version_column": "updated_at"}},
            {"table": "Categories", "type": "single-entity", "source_table": "categories",
             "pk": "category_id", "attributes": [
                 _a("category_id", "N", "id", table="categories"),
                 _a("parent_name", "S", "parent_id", table="categories", join={
                     "type": "self-join", "join_alias": "parent",
                     "join_condition": "parent.id = categories.parent_id",
                     "select_column": "parent.name", "null_value": "ROOT"})]},
            {"table": "People", "type": "multi-entity", "pk": "PK", "sk": "SK", "entities": [
                {"entity_type": "USER", "source_table": "users", "pk_template": "USER#{uid}",
                 "sk_template": "PROFILE", "attributes": [
                     _a("uid", "N", "id", table="users"),
                     _a("born", "S", "born_unix", table="users", transformation={
                         "type": "date-format", "format": "YYYY-MM-DD", "source_format": "unix"}),
                     _a("born2", "S", "born_text", table="users", transformation={
                         "type": "date-format", "format": "YYYY-MM-DD",
                         "source_format": "string:DD/MM/YYYY"})]},
                {"entity_type": "LISTING", "source_table": "products",
                 "pk_template": "USER#{seller_id}", "sk_template": "LISTING#{pid}",
                 "attributes": [_a("pid", "N", "id")]}]},
        ],
    }  # fmt: skip


@pytest.fixture
def world(scratch_db: Settings) -> Iterator[tuple[Any, Contract]]:
    conn = connect(scratch_db.mysql)
    for statement in SCHEMA.split(";"):
        if statement.strip():
            query(conn, statement)
    contract = parse_contract(contract_dict())
    yield conn, contract
    conn.close()


def _rows(conn: Any, contract: Contract, table: str, order: str) -> list[dict[str, Any]]:
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT * FROM `{view_name(contract, contract.table(table))}` ORDER BY {order}"
        )
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def test_every_derivation_type_yields_the_hand_checked_values(world: tuple[Any, Contract]) -> None:
    conn, contract = world
    changes = apply_views(conn, contract)
    assert [c.action for c in changes] == ["created", "created", "created"]
    lamp, desk = _rows(conn, contract, "Products", "product_id")

    assert lamp["category_name"] == "Leaf" and desk["category_name"] == "Mid"
    assert lamp["variant_label"] == "large" and desk["variant_label"] == "none"
    assert lamp["seller"] == "ann" and desk["seller"] == "it's nobody\\"
    # Leaf's parent is 2 -> users.id 11 (bob); Mid's parent is 1 -> users.id 10 (ann)
    assert lamp["grandparent"] == "bob" and desk["grandparent"] == "ann"
    assert lamp["path"] == "Leaf > ann"
    assert desk["path"] is None  # the chain finds no seller: no row at all
    assert lamp["first_tag"] == "sale" and desk["first_tag"] is None
    assert sorted(json.loads(lamp["tag_ids"])) == [1, 2] and json.loads(desk["tag_ids"]) == []
    assert json.loads(lamp["top_reviews"]) == [{"r": 5, "b": "great"}, {"r": 3, "b": "ok"}]
    assert json.loads(desk["top_reviews"]) == []
    assert json.loads(lamp["latest_review"]) == {"body": "ok"}
    assert lamp["units_sold"] == 6 and desk["units_sold"] is None
    assert lamp["line_count"] == 3 and desk["line_count"] == 0
    assert str(lamp["max_price"]) == "10.00"
    assert lamp["status_label"] == "Pending" and desk["status_label"] == "Unknown"
    assert lamp["full_name"] == "Ada Lovelace" and desk["full_name"] == "Bo"
    assert str(lamp["review_due"]) == "2024-01-31 00:00:00"
    assert lamp["days_to_update"] == 10 and desk["days_to_update"] == 0
    assert lamp["created_day"] == "2024-01-01"
    assert lamp["created_iso"] == "2024-01-01T00:00:00Z"
    assert lamp["sku"] == "SKU#100-3" and lamp["kind"] == "PRODUCT"
    assert lamp["shout"] == "LAMP"
    assert str(lamp["price2"]) == "12.35" and str(desk["price2"]) == "100.00"
    assert json.loads(lamp["attrs"]) == {"color": "red", "size": {"w": 2.5}}
    assert str(lamp["width"]) == "2.5" and desk["width"] is None
    assert json.loads(lamp["__source_pk"]) == {"id": 100}
    assert lamp["__entity"] == "PRODUCTS" and lamp["__part"] == 100
    assert str(lamp["__version"]) == "2024-01-11 12:00:00"

    root, mid, leaf = _rows(conn, contract, "Categories", "category_id")
    assert (root["parent_name"], mid["parent_name"], leaf["parent_name"]) == ("ROOT", "Root", "Mid")


def test_multi_entity_view_is_a_union_with_keys_from_templates(
    world: tuple[Any, Contract],
) -> None:
    conn, contract = world
    apply_views(conn, contract)
    rows = _rows(conn, contract, "People", "`__entity`, PK, SK")
    keys = [(r["__entity"], r["PK"], r["SK"]) for r in rows]
    assert keys == [
        ("LISTING", None, "LISTING#101"),  # no seller: the key is NULL, quarantined later
        ("LISTING", "USER#10", "LISTING#100"),
        ("USER", "USER#10", "PROFILE"),
        ("USER", "USER#11", "PROFILE"),
    ]
    ann = rows[2]
    assert ann["born"] == "1970-01-02" and ann["born2"] == "2024-03-05"
    assert ann["pid"] is None  # an attribute of the other entity
    assert list(rows[0])[:2] == ["PK", "SK"]


def test_applying_twice_changes_nothing_and_a_changed_contract_replaces(
    world: tuple[Any, Contract],
) -> None:
    conn, contract = world
    apply_views(conn, contract)
    assert {c.action for c in apply_views(conn, contract)} == {"unchanged"}
    changed = contract_dict()
    changed["tables"][1]["attributes"][1]["join"]["null_value"] = "TOP"
    actions = {c.view: c.action for c in apply_views(conn, parse_contract(changed))}
    assert actions["cutover_viewtest_categories"] == "replaced"
    assert actions["cutover_viewtest_products"] == "unchanged"


def test_invalid_sql_in_a_contract_is_reported_against_its_table(
    world: tuple[Any, Contract],
) -> None:
    conn, _ = world
    broken = contract_dict()
    broken["tables"][1]["attributes"][1]["join"]["select_column"] = "parent.no_such_column"
    with pytest.raises(ContractError) as err:
        apply_views(conn, parse_contract(broken))
    path, message = err.value.problems[0]
    assert path == "tables[1]" and "no_such_column" in message
