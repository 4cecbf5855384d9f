"""The routing layer against the real stores: where each phase sends writes and reads,
shadow-read figures that are exact, and a backfill that runs under dual writes without
bringing back deleted items or overwriting newer ones."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from tests.routing_checks import differences_from_log

from cutover.contract.load import load_contract
from cutover.db import connect, query
from cutover.phases.model import Phase
from cutover.phases.store import PhaseStore
from cutover.routing.dynamo_store import key_av
from cutover.routing.layer import DualDatabase
from cutover.sample.generator import load_sample
from cutover.settings import PROJECT_ROOT, Settings
from cutover.stages import run_backfill, run_prepare

pytestmark = pytest.mark.integration


@pytest.fixture
def migrated(scratch_db: Settings, ddb: Any, tmp_path: Path) -> Iterator[tuple[Any, Settings]]:
    """The sample, prepared under a contract name and table prefix of its own."""
    doc = json.loads((PROJECT_ROOT / "contracts" / "ecommerce.json").read_text())
    doc["cutover"]["name"] = f"route_{uuid.uuid4().hex[:6]}"
    path = tmp_path / f"{doc['cutover']['name']}.json"
    path.write_text(json.dumps(doc))
    contract = load_contract(path)
    settings = replace(scratch_db, table_prefix=f"{scratch_db.table_prefix}{contract.name}_")
    load_sample(settings, scale=1)
    run_prepare(contract, settings)
    yield contract, settings
    for table in [*(t.table for t in contract.tables), "cutover_control"]:
        ddb.delete_table(TableName=settings.table_prefix + table)


def _move(ddb: Any, settings: Settings, contract: Any, target: Phase) -> None:
    store = PhaseStore(ddb, settings.table_prefix)
    state = store.get(contract.name)
    while state.phase != target:
        step = 1 if state.phase < target else -1
        state = store.move(state, Phase(state.phase + step), actor="test", kind="advance")


def _layer(contract: Any, settings: Settings, **kwargs: Any) -> DualDatabase:
    layer = DualDatabase(contract, settings, **kwargs)
    layer.phases.ttl = 0
    return layer


def _user_item(ddb: Any, settings: Settings, contract: Any, user_id: int) -> Any:
    table = contract.tables[0]
    key = key_av(table, {"PK": f"USER#{user_id}", "SK": "PROFILE"})
    return ddb.get_item(TableName=settings.table_prefix + "Users", Key=key).get("Item")


def test_each_phase_writes_where_its_row_of_the_phase_table_says(
    migrated: tuple[Any, Settings], ddb: Any
) -> None:
    contract, settings = migrated
    layer = _layer(contract, settings, shadow_rate=0.0)
    conn = connect(settings.mysql)
    try:
        layer.update("USER", {"id": 3}, {"bio": "phase one"})  # phase 1: MySQL only
        assert query(conn, "SELECT bio FROM users WHERE id = 3") == [("phase one",)]
        assert _user_item(ddb, settings, contract, 3) is None  # nothing was backfilled

        _move(ddb, settings, contract, Phase.DUAL_WRITE)
        result = layer.update("USER", {"id": 3}, {"bio": "phase two"})
        item = _user_item(ddb, settings, contract, 3)
        assert item["bio"] == {"S": "phase two"} and result.outboxed == 0
        # the refresh brought the whole derived item, not just the changed column
        assert item["order_count"]["N"] == str(
            query(conn, "SELECT COUNT(*) FROM orders WHERE user_id = 3")[0][0]
        )

        _move(ddb, settings, contract, Phase.DYNAMODB_ONLY)
        layer.update("USER", {"id": 3}, {"bio": "phase five"})
        assert _user_item(ddb, settings, contract, 3)["bio"] == {"S": "phase five"}
        assert query(conn, "SELECT bio FROM users WHERE id = 3") == [("phase two",)]
    finally:
        conn.close()
        layer.close()


def test_shadow_reads_count_exactly_the_corrupted_items(
    migrated: tuple[Any, Settings], ddb: Any
) -> None:
    contract, settings = migrated
    run_backfill(contract, settings)
    _move(ddb, settings, contract, Phase.DUAL_READ_MYSQL_PRIMARY)
    users = list(range(1, 21))

    clean = _layer(contract, settings, shadow_rate=1.0)
    for user in users:
        assert clean.get("USER", {"id": user}) is not None
    clean.close()  # waits for the shadow comparisons
    evidence = clean.stats.shadow_evidence(Phase.DUAL_READ_MYSQL_PRIMARY)
    assert (evidence["comparisons"], evidence["mismatches"]) == (20, 0)
    assert evidence["mismatch_rate"] == 0.0

    corrupted = [4, 9, 17]
    for user in corrupted:
        ddb.update_item(TableName=settings.table_prefix + "Users",
                        Key=key_av(contract.tables[0], {"PK": f"USER#{user}", "SK": "PROFILE"}),
                        UpdateExpression="SET username = :u",
                        ExpressionAttributeValues={":u": {"S": "tampered"}})  # fmt: skip
    layer = _layer(contract, settings, shadow_rate=1.0, recheck_seconds=0.05)
    answers = [layer.get("USER", {"id": user}) for user in users]
    layer.close()
    # phase 3: MySQL answers, so the application never saw the tampered name
    assert all(a is not None and a["username"] != "tampered" for a in answers)
    evidence = layer.stats.shadow_evidence(Phase.DUAL_READ_MYSQL_PRIMARY)
    assert (evidence["comparisons"], evidence["mismatches"]) == (20, 3)
    assert evidence["mismatch_rate"] == 3 / 20
    named = sorted(m["key"]["PK"] for m in evidence["mismatched"])
    assert named == sorted(f"USER#{u}" for u in corrupted)
    assert all(m["attributes"] == ["username"] for m in evidence["mismatched"])


def test_a_backfill_under_live_dual_writes_converges(
    migrated: tuple[Any, Settings], ddb: Any, tmp_path: Path
) -> None:
    from cutover.routing.traffic import run_traffic

    contract, settings = migrated
    _move(ddb, settings, contract, Phase.DUAL_WRITE)
    layer = _layer(contract, settings, shadow_rate=0.0)
    log = tmp_path / "traffic.jsonl"
    stop = threading.Event()
    summary: dict[str, Any] = {}

    def traffic() -> None:
        summary.update(run_traffic(layer, rate=25, duration=600, threads=3, seed=3,
                                   log_path=log, flush_every=1000, stop=stop))  # fmt: skip

    thread = threading.Thread(target=traffic, daemon=True)
    thread.start()
    try:
        manifest = run_backfill(contract, settings, partitions=4)
    finally:
        stop.set()
        thread.join(timeout=120)
        layer.close()
    assert summary["failed"] == 0, summary["errors"]
    ops = [json.loads(line) for line in log.read_text().splitlines()]
    writes = [w for entry in ops for w in entry.get("items") or []]
    assert any(w["op"] == "delete" for w in writes), "the traffic deleted nothing"
    assert len({json.dumps(w["key"]) for w in writes if w["op"] == "put"}) > 20
    assert manifest["catch_up"]["converged"]["changes"] > 0
    checked, wrong = differences_from_log(contract, ddb, settings.table_prefix, log)
    assert checked > 20
    assert wrong == []  # no deleted item came back, no newer item was overwritten


def test_reconcile_follows_the_phase(migrated: tuple[Any, Settings], ddb: Any) -> None:
    """Phase 4: DynamoDB is the source of truth, so drift in MySQL is repaired from it;
    phase 5: MySQL is retired and reconcile does not touch it at all."""
    from cutover.stages import run_reconcile

    contract, settings = migrated
    run_backfill(contract, settings)
    _move(ddb, settings, contract, Phase.DUAL_READ_DYNAMODB_PRIMARY)
    conn = connect(settings.mysql)
    try:
        (name,) = query(conn, "SELECT username FROM users WHERE id = 5")[0]
        query(conn, "UPDATE users SET username = 'drifted' WHERE id = 5")
        result = run_reconcile(contract, settings, repair=True)
        assert result["source_of_truth"] == "dynamodb"
        assert result["repaired"]["mysql_update"] == 1  # the user's row, from its item
        assert result["success"]
        assert query(conn, "SELECT username FROM users WHERE id = 5") == [(name,)]
    finally:
        conn.close()

    _move(ddb, settings, contract, Phase.DYNAMODB_ONLY)
    retired = replace(settings, mysql=settings.mysql.with_database("no_such_database"))
    result = run_reconcile(contract, retired, repair=True)
    assert result["success"] and result["before"] is None and "retired" in result["skipped"]
    assert result["replay"] is None  # the outbox replay would have needed MySQL


def test_rows_sharing_an_item_key_are_not_written_as_the_backfill_quarantines_them(
    migrated: tuple[Any, Settings], ddb: Any
) -> None:
    """The sample plants two cart rows of the same user and product (one item key): the
    backfill quarantines both, so a change to one of them must not put that item either."""
    from cutover.sample.generator import planted_defects

    contract, settings = migrated
    run_backfill(contract, settings)
    _move(ddb, settings, contract, Phase.DUAL_WRITE)
    cart_id = next(d.source_pk["id"] for d in planted_defects(1) if d.reason == "duplicate_key")
    conn = connect(settings.mysql)
    try:
        ((user, product),) = query(
            conn, "SELECT user_id, product_id FROM shopping_carts WHERE id = %s", (cart_id,)
        )
    finally:
        conn.close()
    key = {"PK": f"USER#{user}", "SK": f"CART#{product}"}
    table = settings.table_prefix + "Users"
    assert "Item" not in ddb.get_item(TableName=table, Key=key_av(contract.tables[0], key))

    layer = _layer(contract, settings, shadow_rate=0.0)
    try:
        result = layer.update("CART", {"id": cart_id}, {"quantity": 9})
    finally:
        layer.close()
    assert [w["op"] for w in result.items] == ["delete"]
    assert "Item" not in ddb.get_item(TableName=table, Key=key_av(contract.tables[0], key))
