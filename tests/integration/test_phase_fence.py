"""Fenced phase changes against MariaDB and DynamoDB Local: closing MySQL's fence row waits
for the writers holding it, after a fenced move only writers of the new epoch get through
(in MySQL and in a DynamoDB transaction), a move whose catch-up fails leaves the phase as it
was and writes open, a writer waiting for a move goes on once it ends, and a move into
phase 4 brings DynamoDB up to MySQL's binlog before DynamoDB becomes authoritative."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from cutover import moves
from cutover.contract.load import load_contract
from cutover.db import connect, query
from cutover.errors import ServiceError, TerminalError
from cutover.phases.client import PhaseClient
from cutover.phases.fence import (
    FENCE_TABLE,
    EpochMoved,
    MoveAborted,
    close_mysql,
    dynamo_condition,
    ensure_fence,
    fenced_move,
    mysql_fence,
)
from cutover.phases.model import Phase
from cutover.phases.store import ConcurrentChange, PhaseState, PhaseStore
from cutover.prepare.control_table import ensure_control_table
from cutover.settings import PROJECT_ROOT, Settings

pytestmark = [pytest.mark.integration, pytest.mark.mysql, pytest.mark.dynamodb]

WAIT = 20.0  # the most any condition below is waited for


@pytest.fixture
def store(ddb: Any, settings: Settings) -> Iterator[PhaseStore]:
    prefix = f"{settings.table_prefix}fe{uuid.uuid4().hex[:4]}_"
    ensure_control_table(ddb, prefix)
    yield PhaseStore(ddb, prefix)
    ddb.delete_table(TableName=f"{prefix}cutover_control")


@pytest.fixture
def mysql(scratch_db: Settings) -> Iterator[Callable[[], Any]]:
    """Connections to a scratch database holding a table ``t`` for the writers' rows."""
    admin = connect(scratch_db.mysql)
    query(admin, "CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY, epoch INT NOT NULL)")
    admin.close()
    yield lambda: connect(scratch_db.mysql)


def _at(store: PhaseStore, name: str, phase: Phase) -> PhaseState:
    state = store.get(name)
    while state.phase != phase:
        step = 1 if state.phase < phase else -1
        state = store.move(state, Phase(state.phase + step), actor="test", kind="advance")
    return state


def _until(condition: Callable[[], bool], stop: threading.Event | None = None) -> bool:
    """Poll ``condition`` until it holds (True) or WAIT runs out (False)."""
    event = stop or threading.Event()
    for _ in range(int(WAIT / 0.05)):
        if condition():
            return True
        event.wait(0.05)
    return condition()


def _mysql_write(mysql: Callable[[], Any], name: str, epoch: int) -> str:
    """A writer's transaction carrying ``epoch``: 'ok' (its row committed) or 'moved'."""
    conn = mysql()
    try:
        conn.begin()
        with conn.cursor() as cur:
            try:
                mysql_fence(cur, name, epoch)
            except EpochMoved:
                conn.rollback()
                return "moved"
            cur.execute("INSERT INTO t (epoch) VALUES (%s)", (epoch,))
        conn.commit()
        return "ok"
    finally:
        conn.close()


def _dynamo_write(ddb: Any, store: PhaseStore, name: str, epoch: int) -> str:
    """A DynamoDB transaction carrying ``epoch``: 'ok' or 'cancelled'."""
    prefix = store.table.removesuffix("cutover_control")
    record = f"TEST#{epoch}#{uuid.uuid4().hex[:6]}"
    try:
        ddb.transact_write_items(TransactItems=[
            dynamo_condition(prefix, name, epoch),
            {"Put": {"TableName": store.table,
                     "Item": {"contract": {"S": name}, "record": {"S": record}}}},
        ])  # fmt: skip
    except ClientError as exc:
        assert exc.response["Error"]["Code"] == "TransactionCanceledException"
        return "cancelled"
    return "ok"


def _fence_row(mysql: Callable[[], Any], name: str) -> tuple[int, int]:
    conn = mysql()
    try:
        (row,) = query(conn, f"SELECT epoch, open FROM {FENCE_TABLE} WHERE contract = %s", (name,))
    finally:
        conn.close()
    return int(row[0]), int(row[1])


def test_closing_the_fence_waits_for_a_writer_that_holds_it(mysql: Callable[[], Any]) -> None:
    name = "held"
    admin = mysql()
    with admin.cursor() as cur:
        ensure_fence(cur, name, 1)
    writer, closer = mysql(), mysql()
    closer_id = closer.thread_id()
    events: list[str] = []
    closed = threading.Event()
    failed: list[BaseException] = []
    thread = threading.Thread(target=lambda: None)

    def close() -> None:
        try:
            close_mysql(closer, name, 2)
        except BaseException as exc:  # reported by the test, not lost in the thread
            failed.append(exc)
            raise
        events.append("fence closed")
        closed.set()

    try:
        writer.begin()
        with writer.cursor() as cur:
            mysql_fence(cur, name, 1)
            cur.execute("INSERT INTO t (epoch) VALUES (1)")
        thread = threading.Thread(target=close)
        thread.start()

        def closer_waits() -> bool:
            rows = query(admin, "SELECT COUNT(*) FROM information_schema.INNODB_TRX WHERE "
                         "trx_mysql_thread_id = %s AND trx_state = 'LOCK WAIT'",
                         (closer_id,))  # fmt: skip
            return closed.is_set() or rows[0][0] == 1

        assert _until(lambda: bool(failed) or closer_waits()), "the closer never waited"
        assert not failed, failed
        assert not closed.is_set(), "the fence closed while a writer of epoch 1 held it"
        events.append("writer committed")
        writer.commit()
        assert closed.wait(WAIT)
        thread.join(WAIT)
        assert events == ["writer committed", "fence closed"]
        assert query(admin, "SELECT epoch FROM t") == [(1,)]  # the writer's row is there
        assert _fence_row(mysql, name) == (2, 0)
        assert _mysql_write(mysql, name, 1) == "moved"
    finally:
        writer.close()  # its lock released, the closer's thread ends before its connection
        thread.join(WAIT)
        for conn in (closer, admin):
            conn.close()


def test_after_a_fenced_move_only_writers_of_the_new_epoch_get_through(
    store: PhaseStore, mysql: Callable[[], Any], ddb: Any
) -> None:
    name = "moved"
    old = _at(store, name, Phase.DUAL_WRITE)
    conn = mysql()
    with conn.cursor() as cur:
        ensure_fence(cur, name, old.version)
    conn.close()
    assert _mysql_write(mysql, name, old.version) == "ok"
    assert _dynamo_write(ddb, store, name, old.version) == "ok"
    during: dict[str, Any] = {}

    def catch_up(fenced: PhaseState) -> None:
        during["state"] = (fenced.phase, fenced.moving_to, fenced.version)
        during["mysql"] = [_mysql_write(mysql, name, e) for e in (old.version, fenced.version)]
        during["dynamodb"] = [_dynamo_write(ddb, store, name, e)
                              for e in (old.version, fenced.version)]  # fmt: skip
        during["row"] = _fence_row(mysql, name)

    final = fenced_move(store, name, Phase.DUAL_READ_MYSQL_PRIMARY, kind="advance", actor="t",
                        mysql_connect=mysql, catch_up=catch_up, approved_by="ann")  # fmt: skip

    fenced_epoch = old.version + 1
    assert during == {
        "state": (Phase.DUAL_WRITE, Phase.DUAL_READ_MYSQL_PRIMARY, fenced_epoch),
        "mysql": ["moved", "moved"],  # no MySQL write of any epoch while the move is on
        "dynamodb": ["cancelled", "cancelled"],
        "row": (fenced_epoch, 0),
    }
    assert (final.phase, final.version, final.moving_to) == (
        Phase.DUAL_READ_MYSQL_PRIMARY, old.version + 2, None)  # fmt: skip
    assert store.get(name) == replace(final, fenced_seconds=None)
    assert _fence_row(mysql, name) == (final.version, 1)
    assert _mysql_write(mysql, name, old.version) == "moved"
    assert _dynamo_write(ddb, store, name, old.version) == "cancelled"
    assert _mysql_write(mysql, name, final.version) == "ok"
    assert _dynamo_write(ddb, store, name, final.version) == "ok"
    conn = mysql()
    assert query(conn, "SELECT epoch FROM t ORDER BY id") == [(old.version,), (final.version,)]
    conn.close()

    history = store.history(name)
    assert [(h["kind"], h["from"], h["to"]) for h in history][-2:] == [
        ("fence", 2, 3), ("advance", 2, 3)]  # fmt: skip
    assert history[-1]["approved_by"] == "ann"
    assert final.fenced_seconds is not None and 0 <= final.fenced_seconds < WAIT
    assert history[-1]["fenced_seconds"] == final.fenced_seconds
    # epoch 0: a contract nobody moved yet has no PHASE item for the check to read
    assert _dynamo_write(ddb, store, "never-moved", 0) == "ok"
    assert _dynamo_write(ddb, store, name, 0) == "cancelled"


def test_a_move_whose_catch_up_fails_leaves_the_phase_and_reopens_writes(
    store: PhaseStore, mysql: Callable[[], Any]
) -> None:
    name = "stuck"
    old = _at(store, name, Phase.DUAL_READ_MYSQL_PRIMARY)

    def catch_up(fenced: PhaseState) -> None:
        raise TerminalError("the sync's checkpoint stayed at binlog.000042:1234")

    with pytest.raises(MoveAborted) as caught:
        fenced_move(store, name, Phase.DUAL_READ_DYNAMODB_PRIMARY, kind="advance", actor="t",
                    mysql_connect=mysql, catch_up=catch_up)  # fmt: skip
    message = str(caught.value)
    assert "the phase did not change" in message
    assert "did not catch up" in message and "binlog.000042:1234" in message

    state = store.get(name)
    assert (state.phase, state.moving_to, state.version) == (
        Phase.DUAL_READ_MYSQL_PRIMARY, None, old.version + 2)  # fmt: skip
    assert _fence_row(mysql, name) == (state.version, 1)
    assert _mysql_write(mysql, name, state.version) == "ok"
    assert _mysql_write(mysql, name, old.version) == "moved"  # re-read, then retried
    last = store.history(name)[-1]
    assert last["kind"] == "fence_aborted" and "binlog.000042:1234" in last["reason"]
    # the contract can be moved again
    final = fenced_move(store, name, Phase.DUAL_READ_DYNAMODB_PRIMARY, kind="advance",
                        actor="t", mysql_connect=mysql, catch_up=lambda fenced: None)  # fmt: skip
    assert final.phase == Phase.DUAL_READ_DYNAMODB_PRIMARY


def test_mysql_out_of_reach_aborts_a_move_it_is_authoritative_in_and_not_one_among_4_and_5(
    store: PhaseStore,
) -> None:
    def unreachable() -> Any:
        raise ServiceError("cannot connect to MySQL at mysql://nowhere: refused")

    name = "no-mysql"
    old = _at(store, name, Phase.DUAL_READ_MYSQL_PRIMARY)
    with pytest.raises(MoveAborted) as caught:
        fenced_move(store, name, Phase.DUAL_READ_DYNAMODB_PRIMARY, kind="advance", actor="t",
                    mysql_connect=unreachable, catch_up=lambda fenced: None)  # fmt: skip
    assert "the phase did not change" in str(caught.value)
    assert "MySQL cannot be reached" in str(caught.value)
    state = store.get(name)
    assert (state.phase, state.moving_to, state.version) == (
        Phase.DUAL_READ_MYSQL_PRIMARY, None, old.version + 2)  # fmt: skip

    _at(store, name, Phase.DUAL_READ_DYNAMODB_PRIMARY)
    final = fenced_move(store, name, Phase.DYNAMODB_ONLY, kind="advance", actor="t",
                        mysql_connect=unreachable, catch_up=lambda fenced: None)  # fmt: skip
    assert (final.phase, final.moving_to) == (Phase.DYNAMODB_ONLY, None)


def test_a_writer_that_outlasts_the_move_s_patience_aborts_it(
    store: PhaseStore, mysql: Callable[[], Any]
) -> None:
    name = "long-writer"
    old = _at(store, name, Phase.DUAL_WRITE)
    writer = mysql()
    try:
        with writer.cursor() as cur:
            ensure_fence(cur, name, old.version)
        writer.begin()
        with writer.cursor() as cur:
            mysql_fence(cur, name, old.version)
        with pytest.raises(MoveAborted, match="held the fence for over 1 s"):
            fenced_move(store, name, Phase.DUAL_READ_MYSQL_PRIMARY, kind="advance", actor="t",
                        mysql_connect=mysql, catch_up=lambda fenced: None,
                        timeout_seconds=1)  # fmt: skip
        with writer.cursor() as cur:
            cur.execute("INSERT INTO t (epoch) VALUES (%s)", (old.version,))
        writer.commit()  # the long writer was not cut off
    finally:
        writer.close()
    state = store.get(name)
    assert (state.phase, state.moving_to) == (Phase.DUAL_WRITE, None)
    assert _mysql_write(mysql, name, state.version) == "ok"


def test_a_second_move_cannot_start_while_one_is_in_progress(store: PhaseStore) -> None:
    name = "twice"
    fenced = store.begin_move(_at(store, name, Phase.DUAL_WRITE), Phase.DUAL_READ_MYSQL_PRIMARY,
                              actor="ann", kind="advance")  # fmt: skip
    with pytest.raises(ConcurrentChange, match="already being moved"):
        fenced_move(store, name, Phase.MYSQL_ONLY, kind="rollback", actor="bob",
                    mysql_connect=None, catch_up=lambda fenced: None)  # fmt: skip
    assert store.get(name) == fenced


class _CountingStore(PhaseStore):
    """Sets ``fenced_seen`` once a read returned a state with a move in progress."""

    def __init__(self, inner: PhaseStore) -> None:
        super().__init__(inner.client)
        self.table = inner.table
        self.fenced_seen = threading.Event()

    def get(self, contract: str) -> PhaseState:
        state = super().get(contract)
        if state.moving_to is not None:
            self.fenced_seen.set()
        return state


def test_wait_open_returns_once_another_thread_finishes_the_move(store: PhaseStore) -> None:
    name = "waited"
    fenced = store.begin_move(_at(store, name, Phase.DUAL_WRITE), Phase.DUAL_READ_MYSQL_PRIMARY,
                              actor="t", kind="advance")  # fmt: skip
    counting = _CountingStore(store)
    client = PhaseClient(counting, ttl_seconds=3600)
    assert client.state(name).moving_to == Phase.DUAL_READ_MYSQL_PRIMARY  # now cached
    counting.fenced_seen.clear()
    opened: list[PhaseState] = []
    done = threading.Event()

    def writer() -> None:
        opened.append(client.wait_open(name, timeout_seconds=WAIT))
        done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    assert counting.fenced_seen.wait(WAIT)  # the waiter read the store, not its cache
    assert not done.is_set()
    final = store.finish_move(fenced, Phase.DUAL_READ_MYSQL_PRIMARY, actor="t", kind="advance")
    assert done.wait(WAIT)
    thread.join(WAIT)
    assert opened[0] == replace(final, fenced_seconds=None)
    assert client.phase(name) == Phase.DUAL_READ_MYSQL_PRIMARY  # the cache holds it too

    stuck = store.begin_move(final, Phase.DUAL_READ_DYNAMODB_PRIMARY, actor="t", kind="advance")
    with pytest.raises(TerminalError, match=r"'waited' has been moving from 3 .* to 4"):
        client.wait_open(name, timeout_seconds=0.2)
    assert store.get(name) == stuck


def test_the_catch_up_each_move_needs(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(moves, "binlog_caught_up", lambda *a, **k: calls.append("binlog"))
    monkeypatch.setattr(moves, "outbox_drained", lambda *a, **k: calls.append("outbox"))
    seen = {}
    for old, new in ((1, 2), (2, 3), (3, 2), (3, 4), (4, 5), (4, 3), (5, 4)):
        calls.clear()
        moves.catch_up(None, None, Phase(old), Phase(new), timeout_seconds=1)  # type: ignore[arg-type]
        seen[(old, new)] = list(calls)
    assert seen == {(1, 2): [], (2, 3): [], (3, 2): [], (3, 4): ["binlog"],
                    (4, 5): ["outbox"], (4, 3): ["outbox"], (5, 4): []}  # fmt: skip


@pytest.fixture
def sample(scratch_db: Settings, ddb: Any, tmp_path: Path) -> Iterator[tuple[Any, Settings]]:
    """The sample, prepared under a contract name and table prefix of its own."""
    from cutover.sample.generator import load_sample
    from cutover.stages import run_prepare

    doc = json.loads((PROJECT_ROOT / "contracts" / "ecommerce.json").read_text())
    doc["cutover"]["name"] = f"fence_{uuid.uuid4().hex[:6]}"
    path = tmp_path / f"{doc['cutover']['name']}.json"
    path.write_text(json.dumps(doc))
    contract = load_contract(path)
    settings = replace(scratch_db, table_prefix=f"{scratch_db.table_prefix}{contract.name}_")
    load_sample(settings, scale=1)
    run_prepare(contract, settings)
    yield contract, settings
    for table in [*(t.table for t in contract.tables), "cutover_control"]:
        ddb.delete_table(TableName=settings.table_prefix + table)


def test_the_move_into_phase_4_brings_dynamodb_up_to_the_binlog_first(
    sample: tuple[Any, Settings], ddb: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cutover.routing.dynamo_store import key_av
    from cutover.sync.runner import run_sync

    contract, settings = sample
    store = PhaseStore(ddb, settings.table_prefix)
    _at(store, contract.name, Phase.DUAL_READ_MYSQL_PRIMARY)
    with pytest.raises(MoveAborted, match="no binlog sync has run"):
        moves.move_phase(contract, settings, Phase.DUAL_READ_DYNAMODB_PRIMARY,
                         kind="advance", actor="t")  # fmt: skip
    assert store.get(contract.name).phase == Phase.DUAL_READ_MYSQL_PRIMARY

    run_sync(contract, settings, once=True)  # the sync starts at the binlog's end
    conn = connect(settings.mysql)
    try:
        query(conn, "UPDATE users SET bio = %s WHERE id = 3", ("written in phase 3",))
    finally:
        conn.close()
    key = key_av(contract.tables[0], {"PK": "USER#3", "SK": "PROFILE"})

    def item() -> Any:
        return ddb.get_item(TableName=settings.table_prefix + "Users", Key=key,
                            ConsistentRead=True).get("Item")  # fmt: skip

    assert item() is None  # no sync has applied the update
    monkeypatch.setattr(moves, "STALL_SECONDS", 0.3)  # no sync runs here: run one sooner
    final = moves.move_phase(contract, settings, Phase.DUAL_READ_DYNAMODB_PRIMARY,
                             kind="advance", actor="t", approved_by="ann")  # fmt: skip
    assert (final.phase, final.moving_to) == (Phase.DUAL_READ_DYNAMODB_PRIMARY, None)
    stored = item()
    assert stored is not None and stored["bio"] == {"S": "written in phase 3"}
    assert _fence_row(lambda: connect(settings.mysql), contract.name) == (final.version, 1)
