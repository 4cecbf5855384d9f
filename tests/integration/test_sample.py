"""The sample generator: deterministic, awkward on purpose, and the planted defects exist."""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Context, Decimal

import pytest

from cutover.db import connect, query
from cutover.sample.generator import load_sample, planted_defects
from cutover.settings import Settings

pytestmark = pytest.mark.integration
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


def test_planted_defects_are_really_there(scratch_db: Settings) -> None:
    report = load_sample(scratch_db, scale=1)
    planted = planted_defects(1)
    assert report.planted == planted
    reasons = sorted({d.reason for d in planted})
    assert reasons == ["duplicate_key", "empty_key", "item_too_large", "number_too_precise"]
    conn = connect(scratch_db.mysql)
    try:
        for d in planted:
            pk = d.source_pk["id"]
            if d.reason == "empty_key" and d.source_table == "users":
                assert query(conn, "SELECT email FROM users WHERE id = %s", (pk,))[0][0] == ""
            elif d.reason == "empty_key":
                assert query(conn, "SELECT name FROM categories WHERE id = %s", (pk,))[0][0] == ""
            elif d.reason == "item_too_large":
                (size,) = query(conn, "SELECT LENGTH(description) FROM products WHERE id = %s",
                                (pk,))[0]  # fmt: skip
                assert size > 400 * 1024
            elif d.reason == "number_too_precise":
                (value,) = query(conn, "SELECT lifetime_value FROM products WHERE id = %s",
                                 (pk,))[0]  # fmt: skip
                digits = Decimal(value).normalize(Context(prec=100)).as_tuple().digits
                assert len(digits) > 38
            else:
                (user, product) = query(
                    conn, "SELECT user_id, product_id FROM shopping_carts WHERE id = %s", (pk,)
                )[0]
                twins = query(conn, "SELECT COUNT(*) FROM shopping_carts WHERE user_id = %s "
                              "AND product_id = %s", (user, product))[0][0]  # fmt: skip
                assert twins == 2
    finally:
        conn.close()
