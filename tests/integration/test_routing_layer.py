"""The routing layer against the real stores: where each phase sends writes and reads (in
phases 1-3 MySQL only, DynamoDB following from the binlog through the sync, which covers
writers that bypass the layer too), shadow-read figures that are exact, and a backfill that
runs under live writes without bringing back deleted items or overwriting newer ones."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from tests.routing_checks import parity_failures, synced_parity

from cutover.binlog.position import Position
from cutover.contract.load import load_contract
from cutover.db import connect, query
from cutover.phases.model import Phase
from cutover.phases.store import PhaseStore
from cutover.routing.changes import Change
from cutover.routing.dynamo_store import key_av
from cutover.routing.entities import Entities
from cutover.routing.layer import DualDatabase
from cutover.routing.mysql_store import Deriver
from cutover.sample.generator import load_sample
from cutover.settings import PROJECT_ROOT, Settings
from cutover.stages import run_backfill, run_prepare
from cutover.sync.runner import run_sync
from cutover.transform.items import Item
from cutover.validate.canonical import canonical_item

pytestmark = [pytest.mark.integration, pytest.mark.mysql, pytest.mark.dynamodb]


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


def _item(ddb: Any, settings: Settings, contract: Any, pk: str, sk: str) -> Any:
    key = key_av(contract.tables[0], {"PK": pk, "SK": sk})
    return ddb.get_item(TableName=settings.table_prefix + "Users", Key=key,
                        ConsistentRead=True).get("Item")  # fmt: skip


def _user_item(ddb: Any, settings: Settings, contract: Any, user_id: int) -> Any:
    return _item(ddb, settings, contract, f"USER#{user_id}", "PROFILE")


def _derived(contract: Any, settings: Settings, entity: str, **where: Any) -> dict[str, Any]:
    """The one item MySQL's rows make now (the contract's view SELECT, as the backfill)."""
    conn = connect(settings.mysql)
    try:
        with conn.cursor() as cur:
            built = Deriver(contract).derive(cur, Entities(contract).get(entity),
                                             {c: [v] for c, v in where.items()})  # fmt: skip
    finally:
        conn.close()
    (item,) = [json.loads(b.body) for b in built if isinstance(b, Item)]
    return item


def _same_item(stored: Any, expected: dict[str, Any]) -> bool:
    return stored is not None and canonical_item(stored) == canonical_item(expected)


def test_each_phase_writes_where_its_row_of_the_phase_table_says(
    migrated: tuple[Any, Settings], ddb: Any
) -> None:
    contract, settings = migrated
    layer = _layer(contract, settings, shadow_rate=0.0)
    conn = connect(settings.mysql)
    try:
        for phase, bio in ((Phase.MYSQL_ONLY, "phase one"), (Phase.DUAL_WRITE, "phase two"),
                           (Phase.DUAL_READ_MYSQL_PRIMARY, "phase three")):  # fmt: skip
            _move(ddb, settings, contract, phase)
            result = layer.update("USER", {"id": 3}, {"bio": bio})
            assert (result.phase, result.items, result.outboxed) == (phase, [], 0)
            assert query(conn, "SELECT bio FROM users WHERE id = 3") == [(bio,)]
            assert _user_item(ddb, settings, contract, 3) is None  # MySQL only: no sync ran
        assert layer.stats.by_phase[Phase.DUAL_WRITE].writes == 0  # no second write counted

        _move(ddb, settings, contract, Phase.DYNAMODB_ONLY)
        from cutover.routing.layer import NotFound

        with pytest.raises(NotFound):  # DynamoDB has no item of user 3: nothing to update
            layer.update("USER", {"id": 3}, {"bio": "phase five"})
        assert _user_item(ddb, settings, contract, 3) is None
        _move(ddb, settings, contract, Phase.DUAL_READ_MYSQL_PRIMARY)  # rolled back to copy
        run_backfill(contract, settings)
        _move(ddb, settings, contract, Phase.DYNAMODB_ONLY)
        layer.update("USER", {"id": 3}, {"bio": "phase five"})
        assert _user_item(ddb, settings, contract, 3)["bio"] == {"S": "phase five"}
        assert query(conn, "SELECT bio FROM users WHERE id = 3") == [("phase three",)]
    finally:
        conn.close()
        layer.close()


def test_a_phase_2_write_reaches_dynamodb_only_through_the_sync(
    migrated: tuple[Any, Settings], ddb: Any
) -> None:
    contract, settings = migrated
    run_sync(contract, settings, once=True)  # the sync starts here (a backfill's handoff would)
    layer = _layer(contract, settings, shadow_rate=0.0)
    try:
        layer.update("USER", {"id": 3}, {"bio": "phase one"})
        run_sync(contract, settings, once=True)
        before = _user_item(ddb, settings, contract, 3)
        assert before is not None and before["bio"] == {"S": "phase one"}

        _move(ddb, settings, contract, Phase.DUAL_WRITE)
        order_id = 900_001
        result = layer.write([
            Change("users", "update", {"id": 3}, {"bio": "phase two"}),
            Change("orders", "put", {"id": order_id}, {"user_id": 3, "status": "paid",
                   "total_amount": "12.50", "shipping_address": '{"city": "Kraków"}'}),
        ])  # fmt: skip
    finally:
        layer.close()
    assert (result.items, result.outboxed) == ([], 0)
    assert _user_item(ddb, settings, contract, 3) == before  # DynamoDB untouched
    assert _item(ddb, settings, contract, "USER#3", f"ORDER#{order_id}") is None

    report = run_sync(contract, settings, once=True)
    assert report["transactions"] == 1 and report["items_written"] >= 2, report
    user = _user_item(ddb, settings, contract, 3)
    assert user["bio"] == {"S": "phase two"}
    # the whole derived item, the order's aggregate on the user included
    assert _same_item(user, _derived(contract, settings, "USER", id=3))
    assert int(user["order_count"]["N"]) == int(before["order_count"]["N"]) + 1
    order = _item(ddb, settings, contract, "USER#3", f"ORDER#{order_id}")
    assert _same_item(order, _derived(contract, settings, "ORDER", id=order_id))
    # the item's version is the binlog position of the transaction in the phase's epoch,
    # not a clock of the layer
    epoch = PhaseStore(ddb, settings.table_prefix).get(contract.name).version
    assert int(user["cutover_version"]["N"]) == (
        epoch * 10**16 + Position.from_dict(report["position"]).ordinal
    )


def test_a_renamed_category_takes_the_fallback_and_rewrites_only_the_items_it_changes(
    migrated: tuple[Any, Settings], ddb: Any
) -> None:
    """The sample's products read their category path in a subquery, so a renamed category
    derives every product again (the documented fallback); only the products of that
    category get a new item: the others keep the version they had (read by this test)."""
    from cutover.transform.items import VERSION_ATTRIBUTE

    contract, settings = migrated
    run_backfill(contract, settings)
    products = settings.table_prefix + "Products"

    def versions() -> dict[str, tuple[int, str]]:
        pages = ddb.get_paginator("scan").paginate(TableName=products, ConsistentRead=True)
        return {i["product_id"]["N"]: (int(i[VERSION_ATTRIBUTE]["N"]), canonical_item(i))
                for p in pages for i in p["Items"]}  # fmt: skip

    before = versions()
    conn = connect(settings.mysql)
    try:
        ((category, count),) = query(conn, "SELECT category_id, COUNT(*) FROM products "
                                           "GROUP BY category_id ORDER BY COUNT(*) DESC, "
                                           "category_id LIMIT 1")  # fmt: skip
        mine = {str(r[0]) for r in query(conn, "SELECT id FROM products WHERE category_id = %s",
                                         (category,))}  # fmt: skip
        query(conn, "UPDATE categories SET name = 'Renamed by a script' WHERE id = %s",
              (category,))  # fmt: skip
    finally:
        conn.close()
    report = run_sync(contract, settings, once=True)
    assert report["fallbacks"] >= 1 and report["unchanged"] > 0, report
    after = versions()
    moved = {pid for pid in after if after[pid][0] != before.get(pid, (None,))[0]}
    assert moved & set(before) == mine & set(before), "products outside the category rewritten"
    for pid in sorted(mine & set(after))[:5]:
        assert after[pid][1] == canonical_item(_derived(contract, settings, "PRODUCTS",
                                                        id=int(pid)))  # fmt: skip
    assert len(mine) == count


def test_a_write_that_bypasses_the_layer_reaches_dynamodb_through_the_sync(
    migrated: tuple[Any, Settings], ddb: Any
) -> None:
    """A script's plain SQL, not the application's layer: the binlog carries it all the
    same, a changed row, a new row and its aggregate on another item, a deleted row."""
    contract, settings = migrated
    run_backfill(contract, settings)  # its handoff leaves the sync's checkpoint
    _move(ddb, settings, contract, Phase.DUAL_WRITE)
    conn = connect(settings.mysql)
    try:
        ((user,),) = query(conn, "SELECT MIN(id) FROM users WHERE email <> '' AND id IN "
                                 "(SELECT user_id FROM shopping_carts GROUP BY user_id "
                                 "HAVING COUNT(*) = COUNT(DISTINCT product_id))")  # fmt: skip
        ((product,),) = query(conn, "SELECT MIN(product_id) FROM shopping_carts "
                                    "WHERE user_id = %s", (user,))  # fmt: skip
        cart_sk = f"CART#{product}"
        before = _user_item(ddb, settings, contract, user)
        assert before is not None and _item(ddb, settings, contract, f"USER#{user}", cart_sk)
        conn.begin()
        with conn.cursor() as cur:
            cur.execute("UPDATE users SET bio = 'set by a script' WHERE id = %s", (user,))
            cur.execute("INSERT INTO orders (user_id, status, total_amount) "
                        "VALUES (%s, 'pending', 20.00)", (user,))  # fmt: skip
            order_id = int(cur.lastrowid)
            cur.execute("DELETE FROM shopping_carts WHERE user_id = %s AND product_id = %s",
                        (user, product))  # fmt: skip
        conn.commit()
    finally:
        conn.close()
    assert _user_item(ddb, settings, contract, user) == before  # nothing wrote DynamoDB yet

    report = run_sync(contract, settings, once=True)
    assert report["transactions"] == 1 and report["items_deleted"] >= 1, report
    item = _user_item(ddb, settings, contract, user)
    assert item["bio"] == {"S": "set by a script"}
    assert int(item["order_count"]["N"]) == int(before["order_count"]["N"]) + 1
    assert _same_item(item, _derived(contract, settings, "USER", id=user))
    order = _item(ddb, settings, contract, f"USER#{user}", f"ORDER#{order_id}")
    assert _same_item(order, _derived(contract, settings, "ORDER", id=order_id))
    assert _item(ddb, settings, contract, f"USER#{user}", cart_sk) is None


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
    # no sync follows here: a difference is judged after half a second, not the gate's 30 s
    layer = _layer(contract, settings, shadow_rate=1.0, recheck_seconds=0.05,
                   sync_wait_seconds=0.5)  # fmt: skip
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


def test_a_phase_3_shadow_read_of_a_change_the_sync_has_not_applied_waits_for_it(
    migrated: tuple[Any, Settings], ddb: Any
) -> None:
    """A script changes a user in MySQL; the application reads it before the sync has
    applied it, so DynamoDB still differs. The shadow comparison judges again once the
    sync's checkpoint has passed where the binlog stood after the read: a change in flight,
    not a mismatch. Nothing but the sync run below could make DynamoDB agree."""
    contract, settings = migrated
    run_backfill(contract, settings)
    _move(ddb, settings, contract, Phase.DUAL_READ_MYSQL_PRIMARY)
    conn = connect(settings.mysql)
    try:
        query(conn, "UPDATE users SET bio = 'not synced yet' WHERE id = 3")
    finally:
        conn.close()
    layer = _layer(contract, settings, shadow_rate=1.0, recheck_seconds=0.0,
                   sync_wait_seconds=120)  # fmt: skip
    try:
        assert layer.get("USER", {"id": 3})["bio"] == "not synced yet"
        assert _user_item(ddb, settings, contract, 3)["bio"] != {"S": "not synced yet"}
        run_sync(contract, settings, once=True)
    finally:
        layer.close()  # waits for the shadow comparison
    evidence = layer.stats.shadow_evidence(Phase.DUAL_READ_MYSQL_PRIMARY)
    assert (evidence["comparisons"], evidence["mismatches"]) == (1, 0), evidence
    assert evidence["transient"] == 1


def test_a_backfill_under_live_writes_converges_with_the_sync(
    migrated: tuple[Any, Settings], ddb: Any
) -> None:
    """Phase 2 traffic while the backfill copies: its handoff applies the changes made
    during the copy, the sync those made after; then DynamoDB is MySQL's derivation, item
    for item (no deleted item came back, no older copy stayed over a newer one)."""
    from cutover.sample.traffic import run_traffic

    contract, settings = migrated
    _move(ddb, settings, contract, Phase.DUAL_WRITE)
    layer = _layer(contract, settings, shadow_rate=0.0)
    stop = threading.Event()
    summary: dict[str, Any] = {}

    def traffic() -> None:
        summary.update(run_traffic(layer, rate=25, duration=600, threads=3, seed=3,
                                   flush_every=1000, stop=stop))  # fmt: skip

    thread = threading.Thread(target=traffic, daemon=True)
    thread.start()
    try:
        manifest = run_backfill(contract, settings, partitions=4)
    finally:
        stop.set()
        thread.join(timeout=120)
        layer.close()
    assert summary["failed"] == 0, summary["errors"]
    ops = summary["by_operation"]
    assert ops["user_delete"]["requests"] + ops["cart_remove"]["requests"] > 0, ops
    assert manifest["handoff"]["transactions"] > 0  # the traffic wrote during the copy
    synced, report = synced_parity(contract, settings)
    assert synced["transactions"] > 0  # and after it
    assert report["success"], parity_failures(report)


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


def test_a_phase_4_write_with_mysql_refusing_connections_is_kept_in_the_outbox(
    migrated: tuple[Any, Settings], ddb: Any
) -> None:
    """A MySQL that refuses the connection is a store that is down, as one that drops it:
    the phase-4 write stands in DynamoDB and MySQL's part waits in the outbox."""
    contract, settings = migrated
    run_backfill(contract, settings)
    _move(ddb, settings, contract, Phase.DUAL_READ_DYNAMODB_PRIMARY)
    refused = replace(settings, mysql=replace(settings.mysql, host="127.0.0.1", port=1))
    layer = _layer(contract, refused, shadow_rate=0.0)
    try:
        result = layer.update("USER", {"id": 5}, {"bio": "while MySQL refuses"})
    finally:
        layer.close()
    assert result.phase == 4 and result.outboxed == 1
    assert _user_item(ddb, settings, contract, 5)["bio"] == {"S": "while MySQL refuses"}


def test_from_phase_4_an_update_never_brings_a_deleted_item_back(
    migrated: tuple[Any, Settings], ddb: Any
) -> None:
    """Phase 4: a user's item deleted in DynamoDB (by a writer that bypasses the layer, so
    MySQL still has the row): an update through the layer is refused as not found and the
    item stays deleted. Phase 5: the same after the layer's own delete (of a cart line: a
    user's delete is refused there, products derive their seller's name from it)."""
    from cutover.routing.layer import NotFound

    contract, settings = migrated
    run_backfill(contract, settings)
    _move(ddb, settings, contract, Phase.DUAL_READ_DYNAMODB_PRIMARY)
    users = settings.table_prefix + "Users"
    ddb.delete_item(TableName=users, Key=key_av(contract.tables[0], {"PK": "USER#6",
                                                                     "SK": "PROFILE"}))  # fmt: skip
    layer = _layer(contract, settings, shadow_rate=0.0)
    try:
        with pytest.raises(NotFound, match="deleted"):
            layer.update("USER", {"id": 6}, {"bio": "after the delete"})
        assert _user_item(ddb, settings, contract, 6) is None
        assert layer.update("USER", {"id": 8}, {"bio": "still here"}).phase == 4

        _move(ddb, settings, contract, Phase.DYNAMODB_ONLY)
        layer.phases.ttl = 0
        conn = connect(settings.mysql)
        try:
            ((user_id, product_id),) = query(
                conn, "SELECT user_id, product_id FROM shopping_carts ORDER BY id LIMIT 1"
            )
        finally:
            conn.close()
        cart = {"user_id": int(user_id), "product_id": int(product_id)}
        layer.delete("CART", cart)
        with pytest.raises(NotFound):
            layer.update("CART", dict(cart), {"quantity": 9})
        assert _item(ddb, settings, contract, f"USER#{cart['user_id']}",
                     f"CART#{cart['product_id']}") is None  # fmt: skip
    finally:
        layer.close()
    assert _user_item(ddb, settings, contract, 8)["bio"] == {"S": "still here"}


def test_reconcile_holds_its_repair_while_the_outbox_replay_fails(
    migrated: tuple[Any, Settings], ddb: Any
) -> None:
    """Phase 4 with an outbox entry MySQL refuses (replay stops at it): rewriting MySQL
    from DynamoDB now could overwrite what the outbox still holds, so reconcile repairs
    nothing, says why and fails; once the entry is gone, the same drift is repaired."""
    from cutover.routing.dynamo_store import DynamoStore
    from cutover.stages import run_reconcile

    contract, settings = migrated
    run_backfill(contract, settings)
    _move(ddb, settings, contract, Phase.DUAL_READ_DYNAMODB_PRIMARY)
    stuck = DynamoStore.outbox_item(contract.name, 1, {"changes": [
        Change("users", "update", {"id": 5}, {"no_such_column": 1}).to_json()]})  # fmt: skip
    ddb.put_item(TableName=settings.table_prefix + "cutover_control", Item=stuck)
    conn = connect(settings.mysql)
    try:
        (name,) = query(conn, "SELECT username FROM users WHERE id = 5")[0]
        query(conn, "UPDATE users SET username = 'drifted' WHERE id = 5")
        held = run_reconcile(contract, settings, repair=True)
        assert held["replay"]["error"] and not held["success"]
        assert "replay of DynamoDB's outbox" in held["repair_held"]
        assert held["repaired"] == {} and held["after"] is None
        assert query(conn, "SELECT username FROM users WHERE id = 5") == [("drifted",)]

        ddb.delete_item(TableName=settings.table_prefix + "cutover_control",
                        Key={k: stuck[k] for k in ("contract", "record")})  # fmt: skip
        repaired = run_reconcile(contract, settings, repair=True)
        assert repaired["repair_held"] is None and repaired["success"]
        assert query(conn, "SELECT username FROM users WHERE id = 5") == [(name,)]
    finally:
        conn.close()


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
    assert result.items == []  # MySQL only
    report = run_sync(contract, settings, once=True)
    assert report["transactions"] == 1 and report["rejected"] >= 1, report
    assert "Item" not in ddb.get_item(TableName=table, Key=key_av(contract.tables[0], key))
