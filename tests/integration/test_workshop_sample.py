"""The workshop data generator, checked from what the database holds: counts, foreign keys, the
awkward values (round-tripped exactly), and determinism per (scale, seed)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from cutover.db import connect, query
from cutover.sample.workshop import apply_schema, generate, load
from cutover.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.mysql]

SCHEMA = (Path(__file__).parents[2] / ".." / "shared" / "workshop" / "schema.sql").resolve()
TABLES = ("users", "categories", "products", "shopping_carts", "orders", "order_items")
# (child table, column, parent table): every foreign key of the workshop schema
FOREIGN_KEYS = (
    ("categories", "parent_id", "categories"),
    ("products", "seller_id", "users"),
    ("products", "category_id", "categories"),
    ("shopping_carts", "user_id", "users"),
    ("shopping_carts", "product_id", "products"),
    ("orders", "user_id", "users"),
    ("order_items", "order_id", "orders"),
    ("order_items", "product_id", "products"),
)


def _count(conn: Any, sql: str, params: tuple[Any, ...] | None = None) -> int:
    return int(query(conn, sql, params)[0][0])


def _checksums(settings: Settings) -> dict[str, int]:
    conn = connect(settings.mysql)
    try:
        return {t: query(conn, f"CHECKSUM TABLE `{t}` EXTENDED")[0][1] for t in TABLES}
    finally:
        conn.close()


@pytest.fixture
def loaded(scratch_db: Settings) -> tuple[Settings, dict[str, int]]:
    return scratch_db, load(scratch_db, SCHEMA)


def test_schema_goes_into_the_current_database(scratch_db: Settings) -> None:
    conn = connect(scratch_db.mysql)
    try:
        sql = SCHEMA.read_text(encoding="utf-8")
        assert apply_schema(conn, sql) == list(TABLES)
        query(
            conn, "INSERT INTO users (id, username, email, password_hash) VALUES (1, 'a', 'b', 'c')"
        )
        assert apply_schema(conn, sql) == list(TABLES)  # a reload starts clean
        assert _count(conn, "SELECT COUNT(*) FROM users") == 0
        rows = query(
            conn,
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            (scratch_db.mysql.database,),
        )
        assert sorted(r[0] for r in rows) == sorted(TABLES)
    finally:
        conn.close()


def test_counts_and_foreign_keys(loaded: tuple[Settings, dict[str, int]]) -> None:
    settings, counts = loaded
    assert set(counts) == set(TABLES)
    conn = connect(settings.mysql)
    try:
        for table in TABLES:
            assert counts[table] > 0
            assert _count(conn, f"SELECT COUNT(*) FROM `{table}`") == counts[table], table
        for child, column, parent in FOREIGN_KEYS:
            orphans = _count(
                conn,
                f"SELECT COUNT(*) FROM `{child}` c LEFT JOIN `{parent}` p ON p.id = c.`{column}` "
                f"WHERE c.`{column}` IS NOT NULL AND p.id IS NULL",
            )
            assert orphans == 0, (child, column)
        non_seller = "SELECT COUNT(*) FROM products p JOIN users u ON u.id = p.seller_id"
        assert _count(conn, non_seller + " WHERE NOT u.is_seller") == 0
        # the sort keys ORDER#{created_at}#{id} and (parent name, name) of categories are unique
        assert _count(conn, "SELECT COUNT(DISTINCT created_at) FROM orders") == counts["orders"]
        pairs = (
            "SELECT COUNT(DISTINCT COALESCE(CAST(p.name AS BINARY), 'ROOT'), "
            "CAST(c.name AS BINARY)) FROM categories c LEFT JOIN categories p ON p.id = c.parent_id"
        )
        assert _count(conn, pairs) == counts["categories"]
    finally:
        conn.close()


def test_awkward_cases_are_in_the_database(loaded: tuple[Settings, dict[str, int]]) -> None:
    settings, _ = loaded
    conn = connect(settings.mysql)
    try:
        assert _count(conn, "SELECT COUNT(*) FROM categories WHERE parent_id IS NULL") >= 2
        three_levels = (
            "SELECT COUNT(*) FROM categories c3 JOIN categories c2 ON c2.id = c3.parent_id "
            "JOIN categories c1 ON c1.id = c2.parent_id WHERE c1.parent_id IS NULL"
        )
        assert _count(conn, three_levels) > 0
        deeper = (
            "SELECT COUNT(*) FROM categories c4 JOIN categories c3 ON c3.id = c4.parent_id "
            "JOIN categories c2 ON c2.id = c3.parent_id WHERE c2.parent_id IS NOT NULL"
        )
        assert _count(conn, deeper) == 0
        empty_categories = (
            "SELECT COUNT(*) FROM categories c WHERE NOT EXISTS "
            "(SELECT 1 FROM products p WHERE p.category_id = c.id) AND NOT EXISTS "
            "(SELECT 1 FROM categories k WHERE k.parent_id = c.id)"
        )
        assert _count(conn, empty_categories) > 0
        assert _count(conn, "SELECT COUNT(*) FROM categories c WHERE c.id < c.parent_id") > 0

        assert _count(conn, "SELECT COUNT(*) FROM users WHERE first_name IS NULL") > 0
        assert _count(conn, "SELECT COUNT(*) FROM users WHERE last_name IS NULL") > 0
        both = "SELECT COUNT(*) FROM users WHERE first_name IS NULL AND last_name IS NULL"
        assert _count(conn, both) > 0
        assert {r[0] for r in query(conn, "SELECT DISTINCT is_seller FROM users")} == {0, 1}
        names = {
            value
            for row in query(conn, "SELECT first_name, last_name FROM users")
            for value in row
            if value is not None
        }
        # exact comparison in Python: under utf8mb4_unicode_ci all emoji compare equal in SQL
        for expected in (
            "Zoë 🦄",
            "👩‍💻",
            "🇳🇿 Kiwi",
            "O'Brien",
            "Back\\slash",
            "C:\\Users\\Name",
            'Dwayne "The Rock"',
            "Robert'); DROP TABLE users;--",
            "Jose\u0301",
            "Ω" * 50,
            " Padded ",
            "",
        ):
            assert expected in names, expected
        emoji = query(
            conn, "SELECT HEX(first_name) FROM users WHERE first_name LIKE %s", ("Zo_ %",)
        )
        assert "Zoë 🦄".encode().hex().upper() in {r[0] for r in emoji}
        lonely = (
            "SELECT COUNT(*) FROM users u WHERE NOT EXISTS "
            "(SELECT 1 FROM shopping_carts s WHERE s.user_id = u.id) AND NOT EXISTS "
            "(SELECT 1 FROM orders o WHERE o.user_id = u.id)"
        )
        assert _count(conn, lonely) > 0

        prices = {r[0] for r in query(conn, "SELECT price FROM products")}
        assert {Decimal("0.10"), Decimal("1.00"), Decimal("99999999.99")} <= prices
        assert _count(conn, "SELECT COUNT(*) FROM products WHERE price = 99999999.99") > 0
        assert _count(conn, "SELECT COUNT(*) FROM products WHERE inventory_quantity = 0") > 0
        assert _count(conn, "SELECT COUNT(*) FROM products WHERE description IS NULL") > 0
        assert _count(conn, "SELECT COUNT(*) FROM products WHERE image_url IS NULL") > 0
        product_names = {r[0] for r in query(conn, "SELECT name FROM products")}
        assert {'Monitor 27" 4K', "Kids' Bike", "C:\\Temp mug", "🚀 Rocket Lamp"} <= product_names

        no_items = (
            "SELECT COUNT(*) FROM orders o LEFT JOIN order_items i ON i.order_id = o.id "
            "WHERE i.id IS NULL"
        )
        assert _count(conn, no_items) > 0
        statuses = {r[0] for r in query(conn, "SELECT DISTINCT status FROM orders")}
        assert statuses == {"pending", "completed", "cancelled"}
        totals = (
            "SELECT COUNT(*) FROM orders o WHERE o.total_amount <> (SELECT "
            "COALESCE(SUM(i.quantity * i.price_at_time), 0) FROM order_items i "
            "WHERE i.order_id = o.id)"
        )
        assert _count(conn, totals) == 0
    finally:
        conn.close()


def test_same_seed_same_data_other_seed_other_data(scratch_db: Settings) -> None:
    first = load(scratch_db, SCHEMA, seed=7)
    sums = _checksums(scratch_db)
    assert all(sums.values())
    assert load(scratch_db, SCHEMA, seed=7) == first
    assert _checksums(scratch_db) == sums
    load(scratch_db, SCHEMA, seed=8)
    other = _checksums(scratch_db)
    for table in TABLES:
        assert other[table] != sums[table], table


def test_generate_is_pure_and_scales() -> None:
    one = generate(1, 7)
    assert one == generate(1, 7)
    assert one != generate(1, 8)
    two = generate(2, 7)
    for table in TABLES:
        assert 1.6 * len(one[table]) <= len(two[table]) <= 2.4 * len(one[table]), table
    with pytest.raises(ValueError):
        generate(0)
