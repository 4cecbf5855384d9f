"""The sample generator: deterministic, awkward on purpose, and the planted defects exist."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from cutover.db import connect, query
from cutover.sample.generator import load_sample, planted_defects
from cutover.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.mysql]
TABLES = ("users", "categories", "products", "shopping_carts", "orders", "order_items")


def _checksums(settings: Settings) -> dict[str, object]:
    conn = connect(settings.mysql)
    try:
        return {t: query(conn, f"CHECKSUM TABLE {t} EXTENDED")[0][1] for t in TABLES}
    finally:
        conn.close()


def test_same_scale_and_seed_give_identical_data(scratch_db: Settings) -> None:
    first = load_sample(scratch_db, scale=1)
    sums = _checksums(scratch_db)
    second = load_sample(scratch_db, scale=1)
    assert _checksums(scratch_db) == sums
    assert first.rows == second.rows
    assert first.rows["users"] == 2000 and first.rows["order_items"] > 4000
    conn = connect(scratch_db.mysql)
    try:
        for table, count in first.rows.items():
            assert query(conn, f"SELECT COUNT(*) FROM {table}")[0][0] == count
    finally:
        conn.close()
    other_seed = replace(scratch_db)
    load_sample(other_seed, scale=1, seed=8)
    assert _checksums(scratch_db)["users"] != sums["users"]


def test_awkward_data_survives(scratch_db: Settings) -> None:
    load_sample(scratch_db, scale=1)
    conn = connect(scratch_db.mysql)
    try:
        names = [r[0] for r in query(conn, "SELECT name FROM products WHERE name LIKE '%😀%'")]
        assert names and all("😀" in n for n in names)
        assert query(conn, "SELECT COUNT(*) FROM users WHERE first_name IS NULL")[0][0] > 0
        assert query(conn, "SELECT COUNT(DISTINCT status) FROM orders")[0][0] == 5
        assert query(conn, "SELECT MAX(MICROSECOND(updated_at)) FROM orders")[0][0] > 0
        (doc,) = query(conn, "SELECT shipping_address FROM orders WHERE id = 1")[0]
        assert isinstance(json.loads(doc)["geo"]["lat"], float)
        (total, computed) = query(
            conn,
            "SELECT total_amount, (SELECT SUM(quantity * unit_price) FROM order_items "
            "WHERE order_id = 1) FROM orders WHERE id = 1",
        )[0]
        assert total == computed
    finally:
        conn.close()


# Each query finds, straight from the data, the rows of one kind of defect that cannot become
# a valid item under contracts/ecommerce.json: (source table, id) per row.
EMPTY_KEYS = (
    # users.email is the ByEmail GSI key
    ("users", "SELECT id FROM users WHERE email = ''"),
    # categories.name is the ByName GSI key
    ("categories", "SELECT id FROM categories WHERE name = ''"),
    # a product's category name is its ByCategory GSI key
    ("products", "SELECT p.id FROM products p JOIN categories c ON c.id = p.category_id "
                 "WHERE c.name = ''"),
)  # fmt: skip
# DynamoDB numbers hold 38 significant digits: strip sign, point, and leading and trailing
# zeros, and count what is left.
SIGNIFICANT_DIGITS = (
    "CHAR_LENGTH(TRIM(LEADING '0' FROM TRIM(TRAILING '0' FROM "
    "REPLACE(REPLACE(CAST(`{column}` AS CHAR), '-', ''), '.', ''))))"
)
# An item holds at most 400 KB; the product's text columns alone (in bytes) exceed it.
TOO_LARGE = (
    "SELECT id FROM products WHERE LENGTH(name) + COALESCE(LENGTH(description), 0) "
    "+ COALESCE(LENGTH(attributes), 0) > 400 * 1024"
)
# A cart item's key is USER#{user_id} / CART#{product_id}: every row of a shared pair.
DUPLICATE_KEYS = (
    "SELECT c.id FROM shopping_carts c JOIN (SELECT user_id, product_id FROM shopping_carts "
    "GROUP BY user_id, product_id HAVING COUNT(*) > 1) d "
    "ON d.user_id = c.user_id AND d.product_id = c.product_id"
)


def _defects_in_database(settings: Settings) -> set[tuple[str, int, str]]:
    found: set[tuple[str, int, str]] = set()
    conn = connect(settings.mysql)
    try:
        for table, sql in EMPTY_KEYS:
            found |= {(table, int(r[0]), "empty_key") for r in query(conn, sql)}
        # every DECIMAL column wide enough to hold more than 38 digits, in any table
        wide = query(
            conn,
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = DATABASE() AND data_type = 'decimal' "
            "AND numeric_precision > 38",
        )
        assert wide, "the sample has no DECIMAL column that can exceed 38 digits"
        for table, column in wide:
            digits = SIGNIFICANT_DIGITS.format(column=column)
            rows = query(conn, f"SELECT id FROM `{table}` WHERE {digits} > 38")
            found |= {(table, int(r[0]), "number_too_precise") for r in rows}
        found |= {("products", int(r[0]), "item_too_large") for r in query(conn, TOO_LARGE)}
        found |= {
            ("shopping_carts", int(r[0]), "duplicate_key") for r in query(conn, DUPLICATE_KEYS)
        }
    finally:
        conn.close()
    return found


def test_planted_defects_are_exactly_what_the_database_holds(scratch_db: Settings) -> None:
    """The list `planted_defects()` gives (what the backfill tests expect in quarantine) is
    exactly what the loaded data holds, found by SQL alone: nothing missing, nothing extra."""
    report = load_sample(scratch_db, scale=1)
    planted = planted_defects(1)
    listed = {(d.source_table, d.source_pk["id"], d.reason) for d in planted}
    assert len(listed) == len(planted), "a defect is listed twice"
    found = _defects_in_database(scratch_db)
    assert found == listed, (
        f"in the database, not listed: {sorted(found - listed)}; "
        f"listed, not in the database: {sorted(listed - found)}"
    )
    assert sorted({reason for _, _, reason in found}) == [
        "duplicate_key", "empty_key", "item_too_large", "number_too_precise",
    ]  # fmt: skip
    assert {(d.source_table, d.source_pk["id"], d.reason) for d in report.planted} == found
    # where each defect's item would go
    tables = {
        "users": ("Users", "USER"),
        "shopping_carts": ("Users", "CART"),
        "products": ("Products", "PRODUCTS"),
        "categories": ("Categories", "CATEGORIES"),
    }
    for d in planted:
        assert (d.dynamodb_table, d.entity_type) == tables[d.source_table], d
