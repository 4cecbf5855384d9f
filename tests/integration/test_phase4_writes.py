"""Phases 4-5: writes start from DynamoDB's current item, MySQL follows from the change
records in order per row, and a stale phase cache cannot put a write in an ended phase.
One test per finding of the review that reproduced them (issue 18)."""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from dataclasses import replace
from typing import Any

import pytest
from tests.integration.test_routing_layer import _layer, _move, _user_item, migrated
from tests.tcp_proxy import TcpProxy

from cutover.db import connect, query
from cutover.phases.client import PhaseClient
from cutover.phases.model import Phase
from cutover.phases.store import PhaseStore
from cutover.routing.layer import DerivedRefused, DualDatabase, StoreUnavailable
from cutover.routing.mysql_follower import quarantined
from cutover.routing.replay import replay
from cutover.settings import Settings
from cutover.stages import run_backfill

pytestmark = [pytest.mark.integration, pytest.mark.mysql, pytest.mark.dynamodb]
__all__ = ["migrated"]  # the fixture, shared with the layer's tests


def _user_row(uid: int, email: str) -> dict[str, Any]:
    return {"id": uid, "email": email, "username": f"new{uid}",
            "password_hash": hashlib.sha256(str(uid).encode()).hexdigest(),
            "first_name": "Ada", "last_name": "Nowak", "is_seller": 0, "status": "active",
            "preferences": None, "bio": None,
            "created_at": dt.datetime(2024, 1, 2, 3, 4, 5)}  # fmt: skip


def _mysql_user(settings: Settings, uid: int, columns: str) -> list[tuple[Any, ...]]:
    conn = connect(settings.mysql)
    try:
        return query(conn, f"SELECT {columns} FROM users WHERE id = %s", (uid,))
    finally:
        conn.close()


def test_updates_of_different_columns_of_one_row_both_stand(
    migrated: tuple[Any, Settings], ddb: Any
) -> None:
    """Finding 1: two writers update different columns of one user at the same time, from
    their own layers. Each column ends with the last value its writer had acknowledged, in
    DynamoDB and in MySQL (the item is built from DynamoDB's current item and written on the
    version read, not from MySQL's row)."""
    contract, settings = migrated
    run_backfill(contract, settings)
    _move(ddb, settings, contract, Phase.DUAL_READ_DYNAMODB_PRIMARY)
    acked: dict[str, str] = {}
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def writer(column: str) -> None:
        layer = _layer(contract, settings, shadow_rate=0.0)
        try:
            start.wait()
            for i in range(25):
                value = f"{column}-{i}"
                layer.update("USER", {"id": 4}, {column: value})
                acked[column] = value  # recorded by the test, after the layer returned
        except BaseException as exc:
            errors.append(exc)
        finally:
            layer.close()

    threads = [threading.Thread(target=writer, args=(c,)) for c in ("username", "bio")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    item = _user_item(ddb, settings, contract, 4)
    assert item["username"] == {"S": acked["username"]} and item["bio"] == {"S": acked["bio"]}
    assert _mysql_user(settings, 4, "username, bio") == [(acked["username"], acked["bio"])]


def test_a_replayed_insert_never_brings_back_a_row_deleted_after_it(
    migrated: tuple[Any, Settings], ddb: Any
) -> None:
    """Finding 2: a user created in phase 4 while MySQL refused connections (its change
    record waits in the outbox), then deleted with MySQL back: the replay of the older
    record must not re-create the row in MySQL, nor the item."""
    contract, settings = migrated
    run_backfill(contract, settings)
    _move(ddb, settings, contract, Phase.DUAL_READ_DYNAMODB_PRIMARY)
    down = replace(settings, mysql=replace(settings.mysql, host="127.0.0.1", port=1))
    uid = 900_001
    layer = _layer(contract, down, shadow_rate=0.0)
    try:
        assert layer.put("USER", _user_row(uid, f"u{uid}@example.com")).outboxed == 1
    finally:
        layer.close()
    layer = _layer(contract, settings, shadow_rate=0.0)
    try:
        layer.delete("USER", {"id": uid})  # MySQL up: applied at once
    finally:
        layer.close()
    assert _user_item(ddb, settings, contract, uid) is None
    report = replay(contract, settings)
    assert report["error"] is None and report["left"] == 0, report
    assert _mysql_user(settings, uid, "id") == []
    assert _user_item(ddb, settings, contract, uid) is None


def test_a_late_record_still_sets_the_columns_no_newer_change_set(
    migrated: tuple[Any, Settings], ddb: Any
) -> None:
    """Found by the history test with MySQL cut in phase 4: user 4's bio is updated while
    MySQL refuses connections (the record waits), then its username with MySQL back (applied
    at once, a newer version of the row). The replay of the older record must still set the
    bio, which no newer change set, and leave the username as the newer change set it; and
    an even older username change replayed after them must not undo it."""
    contract, settings = migrated
    run_backfill(contract, settings)
    _move(ddb, settings, contract, Phase.DUAL_READ_DYNAMODB_PRIMARY)
    down = replace(settings, mysql=replace(settings.mysql, host="127.0.0.1", port=1))
    layer = _layer(contract, down, shadow_rate=0.0)
    try:
        assert layer.update("USER", {"id": 4}, {"username": "older-name"}).outboxed == 1
        assert layer.update("USER", {"id": 4}, {"bio": "while MySQL was away"}).outboxed == 1
    finally:
        layer.close()
    layer = _layer(contract, settings, shadow_rate=0.0)
    try:
        assert layer.update("USER", {"id": 4}, {"username": "newer-name"}).outboxed == 0
    finally:
        layer.close()
    report = replay(contract, settings)
    assert report["error"] is None and report["left"] == 0, report
    assert _mysql_user(settings, 4, "bio, username") == [("while MySQL was away", "newer-name")]
    item = _user_item(ddb, settings, contract, 4)
    assert item["bio"] == {"S": "while MySQL was away"} and item["username"] == {"S": "newer-name"}


def test_an_update_after_a_waiting_put_of_a_deleted_row_waits_for_it(
    migrated: tuple[Any, Settings], ddb: Any
) -> None:
    """Found by the history test (an item in DynamoDB, its row missing in MySQL): a user is
    deleted, made again while MySQL refuses connections (the put's record waits), then
    updated with MySQL back. The update is newer than the delete MySQL saw, so the row must
    exist by then: MySQL may not apply it, nor count it as newer than the waiting put, which
    would then be skipped as old. It waits too, and the replay applies both, in order."""
    contract, settings = migrated
    run_backfill(contract, settings)
    _move(ddb, settings, contract, Phase.DUAL_READ_DYNAMODB_PRIMARY)
    uid = 900_002
    down = replace(settings, mysql=replace(settings.mysql, host="127.0.0.1", port=1))
    layer = _layer(contract, settings, shadow_rate=0.0)
    try:
        layer.put("USER", _user_row(uid, f"u{uid}@example.com"))
        layer.delete("USER", {"id": uid})
    finally:
        layer.close()
    assert _mysql_user(settings, uid, "id") == []
    layer = _layer(contract, down, shadow_rate=0.0)
    try:
        assert layer.put("USER", _user_row(uid, f"again{uid}@example.com")).outboxed == 1
    finally:
        layer.close()
    layer = _layer(contract, settings, shadow_rate=0.0)
    try:
        layer.update("USER", {"id": uid}, {"bio": "after the put"})
    finally:
        layer.close()
    report = replay(contract, settings)
    assert report["error"] is None and report["left"] == 0, report
    assert _mysql_user(settings, uid, "email, bio") == [(f"again{uid}@example.com",
                                                        "after the put")]  # fmt: skip
    item = _user_item(ddb, settings, contract, uid)
    assert item is not None and item["bio"] == {"S": "after the put"}


def test_a_change_mysql_refuses_is_quarantined_and_blocks_nothing(
    migrated: tuple[Any, Settings], ddb: Any
) -> None:
    """Finding 4: in phase 4 an email update to another user's email (MySQL's unique key
    refuses it) stands in DynamoDB, the request does not fail, the change is quarantined
    with MySQL's reason, and the writes after it reach MySQL."""
    contract, settings = migrated
    run_backfill(contract, settings)
    _move(ddb, settings, contract, Phase.DUAL_READ_DYNAMODB_PRIMARY)
    ((taken,),) = _mysql_user(settings, 2, "email")
    layer = _layer(contract, settings, shadow_rate=0.0)
    try:
        result = layer.update("USER", {"id": 3}, {"email": taken})
        assert result.phase == 4 and result.outboxed == 0
        assert _user_item(ddb, settings, contract, 3)["email"] == {"S": taken}
        layer.update("USER", {"id": 3}, {"bio": "after the refusal"})
        kept = quarantined(layer)
        evidence = layer.flush()["dual_writes"]  # what the gate into phase 5 reads
    finally:
        layer.close()
    assert len(kept) == 1 and "uq_users_email" in kept[0]["reason"], kept
    assert kept[0]["changes"][0]["key"] == {"id": {"v": 3}}
    assert evidence["follow_quarantined"] == 1 and evidence["failures"] == 0
    assert _mysql_user(settings, 3, "bio") == [("after the refusal",)]
    assert PhaseStore(ddb, settings.table_prefix).get(contract.name).phase == 4


def test_with_dynamodb_down_a_phase_4_write_fails_and_mysql_takes_nothing(
    migrated: tuple[Any, Settings], ddb: Any
) -> None:
    """Finding 8: in phase 4 only DynamoDB takes writes. With it unreachable the write fails
    as unavailable and MySQL is left as it was (a write MySQL alone acknowledged would be
    lost or overwritten once DynamoDB answered again); reads still fall back to MySQL."""
    contract, settings = migrated
    run_backfill(contract, settings)
    _move(ddb, settings, contract, Phase.DUAL_READ_DYNAMODB_PRIMARY)
    down = replace(settings, dynamodb_endpoint="http://127.0.0.1:1")
    phases = PhaseClient(PhaseStore(ddb, settings.table_prefix))  # the phase store answers
    layer = DualDatabase(contract, down, phases=phases, shadow_rate=0.0)
    before = _mysql_user(settings, 5, "bio")
    try:
        with pytest.raises(StoreUnavailable):
            layer.update("USER", {"id": 5}, {"bio": "while DynamoDB is down"})
        assert layer.get("USER", {"id": 5}) is not None  # answered by MySQL
    finally:
        layer.close()
    assert _mysql_user(settings, 5, "bio") == before


def test_dynamodb_gone_right_after_its_commit_leaves_the_change_in_mysql(
    migrated: tuple[Any, Settings], ddb: Any
) -> None:
    """DynamoDB stops answering between its commit of a phase-4 write and MySQL's part (a
    relay in front of DynamoDB Local is cut at that moment): an order is cancelled, which
    changes its user's lifetime_spend, an aggregate only MySQL derives. The write is
    acknowledged and MySQL has it at once (a read that falls back to MySQL sees it); the
    user's aggregate waits in MySQL's queue, with the change record in the outbox, until the
    replay derives it."""
    contract, settings = migrated
    run_backfill(contract, settings)
    _move(ddb, settings, contract, Phase.DUAL_READ_DYNAMODB_PRIMARY)
    conn = connect(settings.mysql)
    try:
        ((order, user),) = query(
            conn, "SELECT id, user_id FROM orders WHERE status <> 'cancelled' "
            "AND total_amount > 0 ORDER BY id LIMIT 1")  # fmt: skip
    finally:
        conn.close()
    spend = _user_item(ddb, settings, contract, user)["lifetime_spend"]
    host, port = (settings.dynamodb_endpoint or "").removeprefix("http://").split(":")
    with TcpProxy(host, int(port)) as proxy:
        relayed = replace(settings, dynamodb_endpoint=f"http://127.0.0.1:{proxy.port}")
        phases = PhaseClient(PhaseStore(ddb, settings.table_prefix))  # the phase store answers
        layer = DualDatabase(contract, relayed, phases=phases, shadow_rate=0.0)
        follow = layer.follower.apply

        def cut_then_follow(*args: Any, **kwargs: Any) -> str:
            proxy.down()  # DynamoDB committed the write; now it is gone
            return follow(*args, **kwargs)

        layer.follower.apply = cut_then_follow  # type: ignore[method-assign]
        try:
            result = layer.update("ORDER", {"id": order}, {"status": "cancelled"})
            assert result.outboxed == 0  # MySQL's part is not waiting: MySQL has it
            read = layer.get("USER", {"id": user})  # DynamoDB is away: answered by MySQL
        finally:
            layer.close()
    conn = connect(settings.mysql)
    try:
        assert query(conn, "SELECT status FROM orders WHERE id = %s", (order,)) == [("cancelled",)]
        ((want,),) = query(conn, "SELECT COALESCE(SUM(total_amount), 0) FROM orders "
                           "WHERE user_id = %s AND status <> 'cancelled'", (user,))  # fmt: skip
    finally:
        conn.close()
    assert read is not None and float(read["lifetime_spend"]) == float(want), (read, want)
    assert float(spend["N"]) != float(want)
    assert _user_item(ddb, settings, contract, user)["lifetime_spend"] == spend  # waits
    report = replay(contract, settings)
    assert report["error"] is None and report["left"] == 0, report
    derived = _user_item(ddb, settings, contract, user)["lifetime_spend"]
    assert float(derived["N"]) == float(want)


def test_a_process_holding_an_ended_phase_writes_in_the_new_one(
    migrated: tuple[Any, Settings], ddb: Any
) -> None:
    """Finding 7: a process still caching phase 4 after the contract was rolled back to 3
    must not acknowledge a DynamoDB-only write: the epoch check in its transaction fails,
    and the layer carries the write out in phase 3 (MySQL)."""
    contract, settings = migrated
    run_backfill(contract, settings)
    _move(ddb, settings, contract, Phase.DUAL_READ_DYNAMODB_PRIMARY)
    layer = _layer(contract, settings, shadow_rate=0.0)
    try:
        assert layer.phase() == Phase.DUAL_READ_DYNAMODB_PRIMARY
        layer.phases.ttl = 3600  # the cache would keep phase 4 for an hour
        item_before = _user_item(ddb, settings, contract, 6)
        _move(ddb, settings, contract, Phase.DUAL_READ_MYSQL_PRIMARY)
        result = layer.update("USER", {"id": 6}, {"bio": "after the rollback"})
    finally:
        layer.close()
    assert result.phase == 3 and result.items == []
    assert _mysql_user(settings, 6, "bio") == [("after the rollback",)]
    assert _user_item(ddb, settings, contract, 6) == item_before  # the sync brings it


def test_phase_5_refuses_a_write_whose_derived_attributes_need_mysql(
    migrated: tuple[Any, Settings], ddb: Any
) -> None:
    """Phase 5: MySQL is retired, so an update of a column the contract derives an attribute
    from (first_name feeds full_name) is refused naming the attribute, and so is a delete
    of a row other items read (a product's seller_name); an update of a plain column is
    written."""
    contract, settings = migrated
    run_backfill(contract, settings)
    _move(ddb, settings, contract, Phase.DYNAMODB_ONLY)
    layer = _layer(contract, settings, shadow_rate=0.0)
    try:
        before = _user_item(ddb, settings, contract, 7)
        with pytest.raises(DerivedRefused, match="full_name"):
            layer.update("USER", {"id": 7}, {"first_name": "Grace"})
        assert _user_item(ddb, settings, contract, 7) == before
        layer.update("USER", {"id": 7}, {"bio": "plain"})
        assert _user_item(ddb, settings, contract, 7)["bio"] == {"S": "plain"}
        with pytest.raises(DerivedRefused, match="seller_name"):  # products read the user
            layer.delete("USER", {"id": 7})
        assert _user_item(ddb, settings, contract, 7)["bio"] == {"S": "plain"}
    finally:
        layer.close()
