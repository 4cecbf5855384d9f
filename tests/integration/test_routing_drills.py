"""Failure drills: a store stops while the application writes and reads through the routing
layer, then comes back. Each drill stops only a server this module started itself (a
private DynamoDB Local on disk, a private MariaDB with its own data directory), never the
machine's shared ones, and each ends in full parity once the other store has caught up:
in phase 2 the sync follows the binlog, in phase 4 DynamoDB's outbox is replayed into
MySQL. (Parity with the authoritative store is the check: what a change becomes in the
other store is derived again from the authoritative one.) Each drill has DynamoDB tables of
its own: the drills of a module share one server, and one drill's items must not be the
next one's starting point.

The sample is cut down to about 200 users so that the on-disk DynamoDB Local (SQLite
underneath, ~400 items/s) loads it in seconds."""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from tests.drill_services import PrivateDynamoDB, PrivateMariaDB
from tests.routing_checks import TrafficThread

from cutover.aws import dynamodb_client
from cutover.contract.load import load_contract
from cutover.db import connect
from cutover.errors import TransientError
from cutover.load.dynamo_http import DynamoHttp, Reply
from cutover.phases.model import Phase
from cutover.phases.store import PhaseStore
from cutover.routing.changes import Change
from cutover.routing.dynamo_store import DynamoStore, key_av
from cutover.routing.layer import Breakers, DualDatabase, StoreUnavailable
from cutover.routing.replay import replay
from cutover.sample.generator import load_sample
from cutover.sample.traffic import load_world
from cutover.settings import PROJECT_ROOT, Settings
from cutover.stages import run_backfill, run_prepare
from cutover.sync.runner import run_sync
from cutover.validate.run import validate

pytestmark = [pytest.mark.integration, pytest.mark.mysql, pytest.mark.dynamodb]

_SHRINK = [
    "DELETE FROM order_items WHERE order_id IN (SELECT id FROM orders WHERE user_id > 200)",
    "DELETE FROM orders WHERE user_id > 200",
    "DELETE FROM shopping_carts WHERE user_id > 200",
    "DELETE FROM order_items WHERE product_id > 300",
    "DELETE FROM shopping_carts WHERE product_id > 300",
    "DELETE FROM products WHERE id > 300",
    "DELETE FROM users WHERE id > 200 AND id NOT IN "
    "(SELECT seller_id FROM products WHERE seller_id IS NOT NULL)",
]


def _small_sample(settings: Settings) -> None:
    load_sample(settings, scale=1)
    conn = connect(settings.mysql)
    try:
        with conn.cursor() as cur:
            for statement in _SHRINK:
                cur.execute(statement)
    finally:
        conn.close()


def _contract(tmp: Path) -> Any:
    doc = json.loads((PROJECT_ROOT / "contracts" / "ecommerce.json").read_text())
    doc["cutover"]["name"] = f"drill_{uuid.uuid4().hex[:6]}"
    path = tmp / f"{doc['cutover']['name']}.json"
    path.write_text(json.dumps(doc))
    return load_contract(path)


def _migrated(settings: Settings, tmp: Path, phase: Phase) -> tuple[Any, Settings]:
    """The cut-down sample backfilled into DynamoDB tables of its own (a fresh table prefix)
    under a new contract, moved to ``phase``."""
    _small_sample(settings)
    settings = replace(settings, table_prefix=f"{settings.table_prefix}{uuid.uuid4().hex[:6]}_")
    contract = _contract(tmp)
    run_prepare(contract, settings)
    run_backfill(contract, settings)
    store = PhaseStore(dynamodb_client(settings), settings.table_prefix)
    state = store.get(contract.name)
    while state.phase < phase:
        state = store.move(state, Phase(state.phase + 1), actor="drill", kind="advance")
    return contract, settings


def _wait(what: str, check: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.25)  # poll: until check() holds
    raise AssertionError(f"timed out waiting for {what}")


def _parity_failures(contract: Any, settings: Settings) -> list[Any]:
    report = validate(contract, settings)
    if report["success"]:
        return []
    return [
        [
            (d["kind"], d["PK"], d.get("SK"), d.get("attributes"))
            for d in t["parity"]["differences"][:3]
        ]
        for t in report["tables"]
    ]


def _assert_full_parity(contract: Any, settings: Settings) -> None:
    failures = _parity_failures(contract, settings)
    assert not failures, failures


# --- DynamoDB stops --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def private_dynamodb(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
    tuple[PrivateDynamoDB, Settings]
]:  # fmt: skip
    from cutover.local.services import ensure_database

    dynamo = PrivateDynamoDB()
    dynamo.start()
    name = f"cutover_drill_{uuid.uuid4().hex[:6]}"
    own = replace(settings, dynamodb_endpoint=dynamo.endpoint, table_prefix="drill_",
                  mysql=settings.mysql.with_database(name))  # fmt: skip
    ensure_database(own)
    try:
        yield dynamo, own
    finally:
        dynamo.close()
        conn = connect(settings.mysql, database=False)
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        conn.close()


class Drill:
    """The cut-down sample migrated to ``phase``, the layer and the traffic running; on
    leaving, the traffic stops and the drill must end with no failed request, DynamoDB
    caught up with the binlog (phases 1-3), an empty DynamoDB outbox after a last replay,
    and (unless ``parity`` is False: the test judges it) full parity. With
    ``unavailable_ok`` requests may fail, as unavailable only (a store the drill stopped)."""

    def __init__(self, settings: Settings, tmp: Path, phase: Phase, parity: bool = True,
                 unavailable_ok: bool = False) -> None:  # fmt: skip
        self.phase = phase
        self.parity = parity
        self.unavailable_ok = unavailable_ok
        self.contract, self.settings = _migrated(settings, tmp, phase)
        self.layer = DualDatabase(self.contract, self.settings)
        self.layer.phases.ttl = 0.5
        self.summary: dict[str, Any] = {}
        self._traffic = TrafficThread(self.layer, tmp / "traffic.jsonl", rate=15, threads=2,
                                      seed=5, flush_every=1000)  # fmt: skip
        self._traffic.wait_requests(30)  # traffic before the fault

    def replay(self) -> dict[str, Any]:
        return replay(self.contract, self.settings)

    def traffic_after(self, n: int) -> None:
        """``n`` more requests of the traffic (after the store came back)."""
        self._traffic.wait_requests(n)

    def __enter__(self) -> Drill:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            self.summary = self._traffic.finish()
        finally:
            self.layer.close()
        if exc_type is not None:
            return
        summary = self.summary
        peak = self.layer.stats.outbox_peak
        print(f"drill: {summary['requests']} requests, {summary['failed']} failed, "
              f"{summary['outboxed']} outboxed, outbox peak {peak}")  # fmt: skip
        if self.unavailable_ok:  # the drill took a store away: only that may fail a request
            assert set(summary["errors"]["by_class"]) <= {"StoreUnavailable"}, summary["errors"]
        else:
            assert summary["failed"] == 0, summary["errors"]
        if self.phase <= Phase.DUAL_READ_MYSQL_PRIMARY:
            run_sync(self.contract, self.settings, once=True)
        assert self.replay()["left"] == 0
        if self.parity:
            _assert_full_parity(self.contract, self.settings)


def _mysql_writes(layer: DualDatabase, phase: Phase) -> int:
    """The layer's MySQL writes so far in ``phase`` (its latency count)."""
    return int(layer.stats.summary()[str(int(phase))]["latency"]["mysql"]["write"]["count"])


def test_dynamodb_down_in_phase_2_goes_unnoticed_and_the_sync_catches_up(
    private_dynamodb: tuple[PrivateDynamoDB, Settings], tmp_path: Path
) -> None:
    """Phase 2 writes MySQL only: with DynamoDB down the application goes on as before
    (no failed request), and once DynamoDB is back the sync applies what it missed."""
    dynamo, settings = private_dynamodb
    with Drill(settings, tmp_path, Phase.DUAL_WRITE) as drill:
        dynamo.stop()
        start = _mysql_writes(drill.layer, Phase.DUAL_WRITE)
        _wait("writes while DynamoDB is down",
              lambda: _mysql_writes(drill.layer, Phase.DUAL_WRITE) >= start + 10)  # fmt: skip
        dynamo.start()
        report = run_sync(drill.contract, drill.settings, once=True)
        assert report["transactions"] >= 10, report
    assert "dynamodb" not in drill.summary["routing"]["2"]["latency"]  # never asked


def test_dynamodb_down_in_phase_4_fails_writes_reads_mysql_and_recovers(
    private_dynamodb: tuple[PrivateDynamoDB, Settings], tmp_path: Path
) -> None:
    """Phase 4: DynamoDB is authoritative, so while it is down writes fail as unavailable
    (the failures this drill provokes: nothing is acknowledged that DynamoDB does not hold)
    and reads fall back to MySQL. Once it is back the breaker closes, writes go through
    again, nothing is left to replay and both stores agree."""
    dynamo, settings = private_dynamodb
    phase = Phase.DUAL_READ_DYNAMODB_PRIMARY
    with Drill(settings, tmp_path, phase, unavailable_ok=True) as drill:
        layer = drill.layer
        breaker = layer.breakers.by_store["dynamodb"]
        dynamo.stop()
        _wait("the DynamoDB breaker to open", lambda: breaker.current_state == "open")
        _wait("reads answered by MySQL", lambda: layer.stats.by_phase[phase].fallbacks >= 3)
        writes = layer.stats.by_phase[phase].writes
        dynamo.start()
        _wait("the breaker to close", lambda: breaker.current_state == "closed", timeout=90)
        _wait("writes again", lambda: layer.stats.by_phase[phase].writes >= writes + 5)
    assert drill.summary["failed"] > 0  # the outage was met


class _LostAnswers:
    """Wraps a layer's DynamoDB client: with ``lose_next``, the next TransactWriteItems is
    sent to the real server, which applies it, and its reply is dropped as a connection
    reset; from then on (``down``) every call fails so, as from a server that went away."""

    def __init__(self, http: DynamoHttp) -> None:
        self._post = http.post
        self.lose_next = False
        self.down = False
        self.lost = 0
        http.post = self.post  # type: ignore[method-assign]

    def post(self, target: str, body: str | bytes) -> Reply:
        if self.down:
            raise TransientError("DynamoDB did not answer: [Errno 104] Connection reset by peer")
        reply = self._post(target, body)
        if target == "TransactWriteItems" and self.lose_next:
            assert reply.status == 200, reply.body  # applied, answer and all
            self.lose_next, self.down = False, True
            self.lost += 1
            raise TransientError("DynamoDB did not answer: [Errno 104] Connection reset by peer")
        return reply


def test_a_phase_4_transaction_whose_answer_is_lost_converges_on_replay(
    private_dynamodb: tuple[PrivateDynamoDB, Settings], tmp_path: Path
) -> None:
    """DynamoDB applies a phase-4 TransactWriteItems (the item and its change record) and the
    answer is lost: the layer reports the store unavailable, and the write's outcome is
    unknown to the application. A lost answer cannot be produced on demand by stopping a
    real server, so it is simulated: the request reaches the real DynamoDB Local, which
    applies it, and its reply is then dropped as a connection reset (every call after it
    fails the same way, until DynamoDB "comes back"). The cart line that write added is then
    removed through the layer. Replay must end with both stores agreeing: the cart line
    stays deleted (the older record's put must not insert it again in MySQL), an order whose
    answer was lost too is in both, and no record is left."""
    dynamo, settings = private_dynamodb
    contract, settings = _migrated(settings, tmp_path, Phase.DUAL_READ_DYNAMODB_PRIMARY)
    layer = DualDatabase(contract, settings, shadow_rate=0.0, breakers=Breakers(fail_max=1000))
    lossy = _LostAnswers(layer._http)
    world = load_world(layer, 1)
    user = world.shoppers[0][0].id
    conn = connect(settings.mysql)
    with conn.cursor() as cur:
        cur.execute("SELECT product_id FROM shopping_carts WHERE user_id = %s", (user,))
        in_cart = {int(r[0]) for r in cur.fetchall()}
    product = next(p for p in world.own_products[0] if p.id not in in_cart)
    order_id = world.base_ids["orders"]
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    try:
        lossy.lose_next = True
        line = {"id": world.base_ids["shopping_carts"], "user_id": user,
                "product_id": product.id, "quantity": 2, "added_at": now}  # fmt: skip
        with pytest.raises(StoreUnavailable):
            layer.put("CART", line)
        assert lossy.lost == 1
        lossy.down = False
        layer.delete("CART", {"user_id": user, "product_id": product.id})
        lossy.lose_next = True
        order = [
            Change("orders", "put", {"id": order_id}, {"user_id": user, "status": "pending",
                   "total_amount": product.price, "shipping_address": '{"city": "Zürich"}',
                   "created_at": now}),
            Change("order_items", "put", {"id": world.base_ids["order_items"]},
                   {"order_id": order_id, "product_id": product.id, "quantity": 1,
                    "unit_price": product.price}),
        ]  # fmt: skip
        with pytest.raises(StoreUnavailable):
            layer.write(order)
        assert lossy.lost == 2
    finally:
        layer.close()

    ddb = dynamo.client()
    users = contract.tables[0]

    def item(sk: str) -> Any:
        key = key_av(users, {"PK": f"USER#{user}", "SK": sk})
        return ddb.get_item(TableName=settings.table_prefix + users.table, Key=key,
                            ConsistentRead=True).get("Item")  # fmt: skip

    def rows(sql: str, *params: Any) -> int:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return len(cur.fetchall())

    store = DynamoStore(DynamoHttp(settings), settings.table_prefix)
    # DynamoDB did apply the order; the cart line's record waits behind its delete
    assert item(f"CART#{product.id}") is None and item(f"ORDER#{order_id}") is not None
    assert len(store.outbox_pending(contract.name)) == 2
    result = replay(contract, settings)
    assert result["error"] is None and result["left"] == 0, result
    assert store.outbox_pending(contract.name) == []
    cart_rows = "SELECT 1 FROM shopping_carts WHERE user_id = %s AND product_id = %s"
    assert item(f"CART#{product.id}") is None and rows(cart_rows, user, product.id) == 0
    assert rows("SELECT 1 FROM orders WHERE id = %s", order_id) == 1
    conn.close()
    store.http.close()
    _assert_full_parity(contract, settings)


# --- MySQL stops -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def private_mysql(settings: Settings) -> Iterator[Settings]:
    with PrivateMariaDB() as server:
        name = "drill"
        server.create_database(name)
        from cutover.settings import MySQLSettings

        own = replace(settings, mysql=MySQLSettings.from_url(server.url(name)),
                      table_prefix=f"{settings.table_prefix}mdrill_")  # fmt: skip
        own_server: Any = server
        yield own, own_server  # type: ignore[misc]


def test_mysql_down_in_phase_4_is_served_by_dynamodb_and_replayed(
    private_mysql: Any, tmp_path: Path
) -> None:
    settings, server = private_mysql
    with Drill(settings, tmp_path, Phase.DUAL_READ_DYNAMODB_PRIMARY) as drill:
        server.stop()
        _wait("writes kept in DynamoDB's outbox", lambda: drill.layer.outbox_depth() >= 10)
        server.start()
        result = drill.replay()
        assert result["error"] is None and result["replayed"]["dynamodb_outbox"] >= 10
        drill.traffic_after(20)
