"""Contracts nobody on this project tuned cutover to: the DynamoDB modernizer workshop's own
contract (read from ../shared/workshop, never copied) on generated rows of the workshop's
schema, and a contract written in the workshop's style from the format's rules (key
attributes inside entities, a same-row json-construction, no `cutover` section, no version
column). Each is prepared, backfilled and validated for real, with full parity."""

from __future__ import annotations

import json
import os
import random
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from tests.dynamo_tables import drop_tables
from tests.s3_server import S3Storage

from cutover.aws import dynamodb_client
from cutover.backfill.driver import backfill
from cutover.binlog.position import Position, current_position
from cutover.contract.fix import apply_fixes, find_fixes
from cutover.contract.lint import lint
from cutover.contract.load import load_contract, read_json
from cutover.contract.model import Contract
from cutover.contract.source_schema import SourceSchema
from cutover.db import connect, query
from cutover.prepare import prepare
from cutover.sample.workshop import apply_schema
from cutover.sample.workshop import load as load_workshop
from cutover.settings import PROJECT_ROOT, Settings
from cutover.sync.runner import run_sync
from cutover.validate.run import validate

pytestmark = [pytest.mark.e2e, pytest.mark.mysql, pytest.mark.dynamodb, pytest.mark.s3]

WORKSHOP = PROJECT_ROOT.parent / "shared" / "workshop"
FIXTURES = Path(__file__).parents[1] / "fixtures"


@pytest.fixture(scope="module")
def world(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., Settings]]:
    """Makes isolated worlds: their own database, table prefix, suites and storage URL (with
    the staged files, the reports and the GX project)."""
    made: list[tuple[Settings, str]] = []
    saved = {k: os.environ.get(k) for k in ("CUTOVER_EXPECTATIONS_DIR",)}
    os.environ["CUTOVER_EXPECTATIONS_DIR"] = str(tmp_path_factory.mktemp("expectations"))

    def make(tag: str, staging: str | None = None) -> Settings:
        name = f"cutover_{tag}_{uuid.uuid4().hex[:8]}"
        admin = connect(settings.mysql, database=False)
        query(admin, f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        admin.close()
        w = replace(
            settings,
            mysql=settings.mysql.with_database(name),
            staging=staging or tmp_path_factory.mktemp(f"staging_{tag}").as_uri(),
            table_prefix=f"{settings.table_prefix}{tag}_",
        )
        made.append((w, name))
        return w

    yield make
    for k, v in saved.items():
        os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    for w, name in made:
        client = dynamodb_client(w)
        drop_tables(client, w.table_prefix)
        admin = connect(settings.mysql, database=False)
        query(admin, f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()


def _count(w: Settings, sql: str) -> int:
    conn = connect(w.mysql)
    try:
        return int(query(conn, sql)[0][0])
    finally:
        conn.close()


def _migrate(contract: Contract, w: Settings) -> tuple[dict[str, Any], dict[str, Any]]:
    conn = connect(w.mysql)
    try:
        errors = [p for p in lint(contract, SourceSchema.from_connection(conn))
                  if p.severity == "error"]  # fmt: skip
    finally:
        conn.close()
    assert errors == []
    prepare(contract, w)
    manifest = backfill(contract, w, partitions=2, workers=2)
    report = validate(contract, w)
    return manifest, report


def _item(w: Settings, table: str, key: dict[str, Any]) -> dict[str, Any]:
    client = dynamodb_client(w)
    return client.get_item(TableName=w.table_prefix + table, Key=key, ConsistentRead=True)["Item"]


def test_the_workshop_contract_lints_to_its_real_faults_and_migrates_once_fixed(
    world: Callable[..., Settings], tmp_path: Path, s3_storage_url: S3Storage
) -> None:
    """Its storage is an ``s3://`` URL (moto's server on loopback): the staged Parquet and
    the GX project of a contract nobody here wrote go to the bucket like the sample's."""
    w = world("ws", f"{s3_storage_url.url}/workshop")
    counts = load_workshop(w, WORKSHOP / "schema.sql", scale=1, seed=11)
    original = load_contract(WORKSHOP / "migrationContract.json")

    before = [p for p in lint(original) if p.severity == "error"]
    assert sorted(p.path for p in before) == [
        "tables[2].attributes[0].join.target_table",
        "tables[2].attributes[11].join.target_table",
        "tables[2].attributes[4].join.target_table",
        "tables[2].attributes[7].calculation.target_table",
        "tables[2].attributes[8].calculation.target_table",
    ]
    assert all("rewrite" in p.message for p in before)

    fixes = find_fixes(original, read_json(WORKSHOP / "migrationContract.json"))
    assert len(fixes) == 5
    path = tmp_path / "workshop.json"
    path.write_text(json.dumps(apply_fixes(read_json(WORKSHOP / "migrationContract.json"), fixes)))
    contract = load_contract(path)

    manifest, report = _migrate(contract, w)
    assert manifest["quarantined"] == 0, manifest["quarantine_reasons"]
    assert manifest["items_per_entity"] == {
        "Categories.CATEGORIES": counts["categories"],
        "Products.PRODUCTS": counts["products"],
        "Users.CART": counts["shopping_carts"],
        "Users.ORDER": counts["orders"],
        "Users.USER": counts["users"],
    }
    # no version column: the handoff from the binlog position catches up all the same
    assert manifest["handoff"]["unavailable"] is None
    assert manifest["handoff"]["from"] == manifest["binlog_position"]
    assert report["success"], json.dumps(report, default=str)[:3000]
    keys = s3_storage_url.keys("workshop/")
    assert any(k.endswith(".parquet") for k in keys), keys[:20]
    assert any(k.startswith("workshop/gx/") and k.endswith("index.html") for k in keys), keys[:20]

    # the key attributes made the keys: a cart lives under its user's email
    conn = connect(w.mysql)
    try:
        (email, product_id, first, last), *_ = query(
            conn,
            "SELECT u.email, c.product_id, u.first_name, u.last_name FROM shopping_carts c "
            "JOIN users u ON u.id = c.user_id ORDER BY c.id LIMIT 1",
        )
        (root_id, root_name, children), *_ = query(
            conn,
            "SELECT p.id, p.name, COUNT(c.id) FROM categories p JOIN categories c "
            "ON c.parent_id = p.id WHERE p.parent_id IS NULL GROUP BY p.id, p.name "
            "ORDER BY p.id LIMIT 1",
        )
        (child_name,) = query(
            conn, "SELECT name FROM categories WHERE parent_id = %s ORDER BY id LIMIT 1", (root_id,)
        )[0]
    finally:
        conn.close()
    cart = _item(w, "Users", {"PK": {"S": email}, "SK": {"S": f"CART#{product_id}"}})
    assert cart["PK"] == {"S": email}
    user = _item(w, "Users", {"PK": {"S": email}, "SK": {"S": "#META"}})
    expected_profile = {k: {"S": v} for k, v in (("first_name", first), ("last_name", last)) if v}
    assert user["profile_data"]["M"] == expected_profile  # the same row, not another user's
    # after the fix, a child category's PK is its parent's name and a root counts its children
    child = _item(w, "Categories", {"PK": {"S": root_name}, "SK": {"S": child_name}})
    assert child["parent_name"] == {"S": root_name}
    root = _item(w, "Categories", {"PK": {"S": "ROOT"}, "SK": {"S": root_name}})
    assert root["children_count"] == {"N": str(children)}


LIBRARY_ROWS = {
    "members": [
        (1, "ann@example.org", "Ann O'Neil", None, 1, "2024-01-02 03:04:05"),
        (2, "bo@example.org", "Bo 😀 Back\\slash", "bo", 0, "2024-02-03 04:05:06"),
        (3, "cy@example.org", 'Cy "Quoted"', "", 0, "2024-03-04 05:06:07"),
        (4, "di@example.org", "Di Nobody", "di", 0, "2024-04-05 06:07:08"),
    ],
    "branches": [(1, "Central", None), (2, "North", 1), (3, "North Annex", 2), (4, "Harbor", None)],
    "books": [
        (10, 2, "Dune", 9.99), (11, 3, "Emma", 0.10), (12, 1, "Ulysses", 999999.99),
        (13, 4, "Unlent", 50.00),
    ],
    "loans": [
        (100, 1, 10, "2024-05-01 10:00:00", 0), (101, 1, 11, "2024-05-02 10:00:00", 1.5),
        (102, 2, 10, "2024-05-03 10:00:00", 0.25), (103, 3, 12, "2024-05-04 10:00:00", 12),
        (104, 3, 10, "2024-05-05 10:00:00", 0), (105, 1, 10, "2024-05-06 10:00:00", 3),
    ],
}  # fmt: skip


def test_a_workshop_style_contract_without_cutover_section_migrates_with_full_parity(
    world: Callable[..., Settings],
) -> None:
    w = world("lib")
    conn = connect(w.mysql)
    try:
        apply_schema(conn, (FIXTURES / "library_schema.sql").read_text())
        with conn.cursor() as cur:
            for table, rows in LIBRARY_ROWS.items():
                marks = ", ".join(["%s"] * len(rows[0]))
                cur.executemany(f"INSERT INTO `{table}` VALUES ({marks})", rows)
    finally:
        conn.close()
    contract = load_contract(FIXTURES / "library_contract.json")
    assert "cutover" not in read_json(FIXTURES / "library_contract.json")

    manifest, report = _migrate(contract, w)
    assert manifest["quarantined"] == 0, manifest["quarantine_reasons"]
    assert manifest["items_per_entity"] == {
        "Books.BOOKS": 4, "Branches.BRANCHES": 4, "Members.LOAN": 6, "Members.MEMBER": 4
    }  # fmt: skip
    assert manifest["handoff"]["unavailable"] is None
    assert report["success"], json.dumps(report, default=str)[:3000]

    bo = _item(w, "Members", {"PK": {"S": "bo@example.org"}, "SK": {"S": "PROFILE"}})
    assert bo["full_name"] == {"S": "Bo 😀 Back\\slash"}
    assert bo["contact"]["M"] == {"email": {"S": "bo@example.org"}, "nickname": {"S": "bo"}}
    assert bo["is_staff"] == {"BOOL": False}
    loan = _item(
        w, "Members", {"PK": {"S": "ann@example.org"}, "SK": {"S": "LOAN#2024-05-02 10:00:00#101"}}
    )
    assert loan["book_title"] == {"S": "Emma"} and loan["fee"] == {"N": "1.5"}
    assert loan["GSI1PK"] == {"S": "11"}
    north = _item(w, "Branches", {"PK": {"S": "North Annex"}})
    assert north["parent_name"] == {"S": "North"} and north["label"] == {"S": "sub-branch"}
    central = _item(w, "Branches", {"PK": {"S": "Central"}})
    assert central["parent_name"] == {"S": "ROOT"} and central["label"] == {"S": "main branch"}
    dune = _item(w, "Books", {"PK": {"S": "10"}, "SK": {"S": "#META"}})
    assert dune["loan_count"] == {"N": "4"} and dune["tier"] == {"S": "standard"}
    assert [e["member_id"] for e in json.loads(dune["recent_loans"]["S"])] == [1, 3, 2]
    assert _count(w, "SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = "
                     "DATABASE() AND COLUMN_NAME = '__version'") == 0  # fmt: skip


def _parity_counts(report: dict[str, Any]) -> dict[str, dict[str, int]]:
    return {
        entity: {k: figures[k] for k in ("missing", "extra", "mismatched")}
        for table in report["tables"]
        for entity, figures in table["parity"]["entities"].items()
    }


class PlainSqlWriter(threading.Thread):
    """Another writer of the workshop's database, as a service in another language or a DBA
    would be: plain SQL on its own connection, never through cutover. Inserts, updates and
    deletes; a category renamed and one moved under another parent; users' emails changed
    (which moves their carts' and orders' items to another key); a user deleted (its carts and
    orders go by ON DELETE CASCADE, which the binlog does not carry)."""

    def __init__(self, w: Settings, seed: int) -> None:
        super().__init__(daemon=True)
        self.w = w
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.done: list[str] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        conn = connect(self.w.mysql)
        try:
            n = 0
            while not self.stop.is_set():
                n += 1
                self.done.append(self.step(conn, n))
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            conn.close()

    def one(self, conn: Any, sql: str) -> Any:
        rows = query(conn, sql)
        return rows[0][0] if rows else None

    def step(self, conn: Any, n: int) -> str:
        kinds = ["email", "cart_add", "cart_del", "order", "order_del", "price", "user_new",
                 "category_rename", "category_move", "category_new"]  # fmt: skip
        kind = kinds[n % len(kinds)] if n <= len(kinds) else self.rng.choice(kinds)
        if n % 37 == 0:
            kind = "user_del"
        rand = "ORDER BY RAND() LIMIT 1"
        if kind == "email":
            uid = self.one(conn, f"SELECT id FROM users {rand}")
            query(conn, "UPDATE users SET email = %s WHERE id = %s", (f"moved{n}@example.org", uid))
        elif kind == "cart_add":
            query(conn, "INSERT IGNORE INTO shopping_carts (user_id, product_id, quantity) "
                        f"SELECT u.id, p.id, 2 FROM users u, products p {rand}")  # fmt: skip
        elif kind == "cart_del":
            query(conn, f"DELETE FROM shopping_carts {rand}")
        elif kind == "order":
            uid = self.one(conn, f"SELECT id FROM users {rand}")
            conn.begin()
            query(conn, "INSERT INTO orders (user_id, total_amount, status) "
                        "VALUES (%s, 12.50, 'pending')", (uid,))  # fmt: skip
            oid = self.one(conn, "SELECT LAST_INSERT_ID()")
            query(conn, "INSERT INTO order_items (order_id, product_id, quantity, price_at_time) "
                        f"SELECT %s, id, 1, price FROM products {rand}", (oid,))  # fmt: skip
            conn.commit()
        elif kind == "order_del":
            query(conn, f"DELETE FROM orders {rand}")
        elif kind == "price":
            # down from the largest prices: a product may sit at its column's maximum
            query(conn, "UPDATE products SET price = IF(price >= 1, price - 1, price + 1), "
                        f"name = CONCAT(LEFT(name, 150), '+') {rand}")  # fmt: skip
        elif kind == "user_new":
            query(
                conn,
                "INSERT INTO users (username, email, password_hash, first_name) "
                "VALUES (%s, %s, 'x', %s)",
                (f"new{n}", f"new{n}@example.org", f"N{n}"),
            )
        elif kind == "user_del":
            # a user who sells nothing: products are referenced by order items (RESTRICT)
            query(conn, "DELETE FROM users WHERE id NOT IN (SELECT seller_id FROM products "
                        f"WHERE seller_id IS NOT NULL) {rand}")  # fmt: skip
        elif kind == "category_rename":
            query(conn, f"UPDATE categories SET name = CONCAT(name, ' {n}') {rand}")
        elif kind == "category_move":
            root = self.one(conn, f"SELECT id FROM categories WHERE parent_id IS NULL {rand}")
            query(conn, "UPDATE categories SET parent_id = %s WHERE parent_id IS NOT NULL "
                        "AND id <> %s ORDER BY RAND() LIMIT 1", (root, root))  # fmt: skip
        elif kind == "category_new":
            query(conn, "INSERT INTO categories (name, parent_id) SELECT %s, id FROM categories "
                        f"WHERE parent_id IS NULL {rand}", (f"New {n}",))  # fmt: skip
        return kind


def test_the_workshop_contract_converges_from_the_binlog_while_plain_sql_writes_run(
    world: Callable[..., Settings], tmp_path: Path
) -> None:
    """The workshop's own contract (fixed, no version column) on its schema: the sync follows
    the binlog from before the backfill, the backfill runs while another process writes MySQL
    with plain SQL, the writer stops, the sync reaches the binlog's end: full parity."""
    w = world("wsync")
    load_workshop(w, WORKSHOP / "schema.sql", scale=1, seed=5)
    fixes = find_fixes(load_contract(WORKSHOP / "migrationContract.json"),
                       read_json(WORKSHOP / "migrationContract.json"))  # fmt: skip
    path = tmp_path / "workshop.json"
    path.write_text(json.dumps(apply_fixes(read_json(WORKSHOP / "migrationContract.json"), fixes)))
    contract = load_contract(path)
    assert all(not s.options.version_column for t in contract.tables for s in t.sources)
    prepare(contract, w)

    stop_sync = threading.Event()
    sync_reports: list[dict[str, Any]] = []
    sync = threading.Thread(
        target=lambda: sync_reports.append(run_sync(contract, w, stop=stop_sync)), daemon=True
    )
    writer = PlainSqlWriter(w, seed=17)
    sync.start()
    writer.start()
    try:
        manifest = backfill(contract, w, partitions=2, workers=2)
        # go on writing after the backfill, until the writer has done every kind twice
        while len(writer.done) < 60 and writer.is_alive():
            writer.stop.wait(0.05)
    finally:
        writer.stop.set()
        writer.join(30)
        stop_sync.set()
        sync.join(60)
    assert writer.error is None, writer.error
    assert {"email", "user_del", "category_rename", "category_move", "cart_del"} <= set(writer.done)
    assert sync_reports, "the sync thread failed"
    assert manifest["handoff"]["transactions"] > 0
    conn = connect(w.mysql)
    try:
        stopped = current_position(conn)  # the writers' last commit is at or before this
    finally:
        conn.close()
    final = run_sync(contract, w, once=True)
    # the binlog is the server's: other databases' commits may follow, so "caught up" is
    # having applied past the writers' end, not a binlog with nothing after
    assert final["lag_seconds"] == 0
    assert Position.from_dict(final["position"]).ordinal >= stopped.ordinal

    report = validate(contract, w)
    assert all(c == {"missing": 0, "extra": 0, "mismatched": 0}
               for c in _parity_counts(report).values()), _parity_counts(report)  # fmt: skip
    assert report["success"], json.dumps(report, default=str)[:3000]
