"""The dual-database layer applications write and read through (the repository pattern of
DESIGN.md). It follows the contract's phase, read from the phase store through
``PhaseClient``; every write carries the phase's epoch (``cutover.phases.fence``), so a
write that meets a change of phase is carried out again in the new one:

* phases 1-3 write MySQL only, in one transaction that reads the fence row: DynamoDB
  follows from the binlog (``cutover.sync``), so writers that bypass the layer are covered
  too;
* phases 4-5 write DynamoDB only, each item read, changed and written back on the
  condition that it is still as read (optimistic concurrency) and that the epoch holds; in
  phase 4 the same TransactWriteItems carries a change record MySQL follows
  (``mysql_follower``: applied right after, replayed when that failed);
* phase 3 compares DynamoDB's answer (as the sync keeps it) with MySQL's, phase 4 MySQL's
  with DynamoDB's, off the request path; phases 3 and 4 read from the other store when the
  primary fails. Writes never fall back: only the authoritative store takes them.

Items are derived from MySQL rows by the contract's view SELECT and the backfill's item
builder, and compared in the validation's canonical form.
"""

from __future__ import annotations

import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, TypeVar

import MySQLdb
import pybreaker

from cutover.aws import dynamodb_client
from cutover.binlog.checkpoint import CheckpointStore
from cutover.binlog.position import current_position
from cutover.contract.attribute_fragments import attribute_fragments
from cutover.contract.model import Attribute, Contract, Table, template_fields
from cutover.db import connect, query
from cutover.errors import CutoverError, ServiceError, TerminalError, TransientError
from cutover.load.dynamo_http import DynamoHttp
from cutover.phases.client import PhaseClient
from cutover.phases.fence import EpochMoved, dynamo_condition, ensure_fence, mysql_fence
from cutover.phases.model import Phase
from cutover.phases.store import PhaseState
from cutover.routing import mysql_store
from cutover.routing.changes import Change, VersionClock, apply, select_rows
from cutover.routing.dynamo_store import DynamoStore, StaleWrite
from cutover.routing.entities import Entities, Entity, RoutingError
from cutover.routing.mysql_follower import (
    Ahead,
    MySQLFollower,
    Refused,
    derived_attributes,
    quarantined,
)
from cutover.routing.mysql_store import Deriver, Refresh
from cutover.routing.stats import RoutingStats
from cutover.settings import Settings
from cutover.transform.attribute_values import BadValue
from cutover.transform.items import (
    VERSION_ATTRIBUTE,
    Item,
    Rejection,
    attribute_value,
    item_version,
    version_number,
)
from cutover.validate.canonical import EntityClassifier, canonical_item, differences, key_text

log = logging.getLogger("cutover.routing")
T = TypeVar("T")
AV = dict[str, Any]
MYSQL, DYNAMODB = "mysql", "dynamodb"


# a deadlock or a lock wait timeout rolls the whole transaction back: run it again
_RETRY_CODES = (1213, 1205)
DEADLOCK_RETRIES = 3
# a write that meets a change of phase waits for the new phase this long at most
FENCE_WAIT_SECONDS = 60.0
# phases 4-5: a write whose items changed since it read them reads them again this often
OCC_ATTEMPTS = 8
MAX_TRANSACTION_ITEMS = 98  # DynamoDB's 100, less the epoch check and the change record


class StoreUnavailable(ServiceError, TransientError):
    """A store failed or its circuit breaker is open."""


class DerivedRefused(RoutingError):
    """Phase 5: the write would change attributes the contract derives with MySQL."""


class ConcurrentWrites(ServiceError, TransientError):
    """Phases 4-5: the items kept changing between read and write."""


class NotFound(RoutingError):
    """An update of a row whose item DynamoDB does not hold (never made, or deleted): from
    phase 4 an update never brings a deleted item back."""


# Errors that say the request or the data is wrong, not that the store is down: they fail
# the request but never open a breaker.
_NOT_A_STORE_FAILURE = (TerminalError, MySQLdb.IntegrityError, MySQLdb.DataError,
                        MySQLdb.ProgrammingError, EpochMoved, Refused, Ahead)  # fmt: skip


@dataclass
class WriteResult:
    phase: int
    items: list[dict[str, Any]] = field(default_factory=list)  # the items this write set
    outboxed: int = 0  # phase 4: MySQL's part kept in DynamoDB's outbox for replay
    keys: dict[str, Any] = field(default_factory=dict)  # source keys assigned (AUTO_INCREMENT)


@dataclass
class Breakers:
    fail_max: int = 5
    reset_timeout: float = 5.0
    by_store: dict[str, pybreaker.CircuitBreaker] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for store in (MYSQL, DYNAMODB):
            self.by_store[store] = pybreaker.CircuitBreaker(
                fail_max=self.fail_max, reset_timeout=self.reset_timeout,
                exclude=list(_NOT_A_STORE_FAILURE), name=store,
            )  # fmt: skip


def row_of(entity: Entity, item: Mapping[str, AV]) -> dict[str, Any]:
    """An item in its entity's row shape: plain attributes under their source column, the
    others (derived, denormalized) under their attribute name."""
    plain = entity.plain
    out: dict[str, Any] = {}
    for name, av in item.items():
        if name == VERSION_ATTRIBUTE:
            continue
        out[plain.get(name, name)] = python_value(av)
    return out


def python_value(av: AV) -> Any:
    ((kind, value),) = av.items()
    if kind == "N":
        return Decimal(value)
    if kind == "NS":
        return sorted(Decimal(v) for v in value)
    if kind in ("SS", "BS"):
        return sorted(value)
    if kind == "L":
        return [python_value(v) for v in value]
    if kind == "M":
        return {k: python_value(v) for k, v in value.items()}
    if kind == "NULL":
        return None
    return value


class DualDatabase:
    """One per application process; thread-safe. ``shadow_rate`` is the share of reads
    compared against the other store in phases 3 and 4."""

    def __init__(
        self,
        contract: Contract,
        settings: Settings,
        *,
        phases: PhaseClient | None = None,
        shadow_rate: float = 1.0,
        breakers: Breakers | None = None,
        shadow_workers: int = 2,
        recheck_seconds: float = 0.3,
        sync_wait_seconds: float | None = None,
    ) -> None:
        self.contract = contract
        self.settings = settings
        self.entities = Entities(contract)
        self.deriver = Deriver(contract)
        self.phases = phases or PhaseClient.from_settings(settings, ttl_seconds=2.0)
        self.shadow_rate = shadow_rate
        self.breakers = breakers or Breakers()
        self.stats = RoutingStats()
        self.clock = VersionClock()
        self.recheck_seconds = recheck_seconds
        # phase 3: how long a differing shadow read waits for the sync to apply what MySQL
        # had when it was read (default: the gate's limit on sync lag)
        self.sync_wait_seconds = (contract.cutover.gate.max_sync_lag_seconds
                                  if sync_wait_seconds is None else sync_wait_seconds)  # fmt: skip
        self._checkpoints: CheckpointStore | None = None
        self._http = DynamoHttp(settings, timeout=5.0)
        self.dynamo = DynamoStore(self._http, settings.table_prefix)
        self._local = threading.local()
        self._conns: list[Any] = []
        self._lock = threading.Lock()
        self._shadow = ThreadPoolExecutor(shadow_workers, thread_name_prefix="cutover-shadow")
        self._shadow_count = 0
        self._applied_ready = False
        self._fence_ready = False
        self.follower = MySQLFollower(self)
        self._evidence: Any = None
        self.versioned_tables = {
            e.source_table: e.version_column for e in self.entities if e.version_column
        }

    # --- plumbing ------------------------------------------------------------------------

    def phase(self) -> Phase:
        return self.phases.phase(self.contract.name)

    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.settings.mysql, connect_timeout=3, read_timeout=10,
                           write_timeout=10)  # fmt: skip
            query(conn, "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
            self._local.conn = conn
            with self._lock:
                self._conns.append(conn)
        return conn

    def _drop_conn(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with suppress(Exception):  # already broken
                conn.close()

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        conn = self._conn()
        try:
            conn.begin()
            with conn.cursor() as cur:
                yield cur
            conn.commit()
        except BaseException:
            try:
                conn.rollback()
            except Exception:
                self._drop_conn()
            raise

    def _mysql(self, fn: Callable[[], T]) -> T:
        def guarded() -> T:
            for attempt in range(DEADLOCK_RETRIES + 1):
                try:
                    return fn()
                except MySQLdb.OperationalError as exc:
                    if exc.args and exc.args[0] in _RETRY_CODES and attempt < DEADLOCK_RETRIES:
                        time.sleep(0.01 * 2**attempt)  # InnoDB rolled the transaction back
                        continue
                    self._drop_conn()
                    raise StoreUnavailable(
                        f"MySQL at {self.settings.mysql.url}: {exc.args[-1]}"
                    ) from None
                except ServiceError as exc:  # a connection refused or timed out
                    self._drop_conn()
                    raise StoreUnavailable(str(exc)) from None
            raise AssertionError("unreachable")

        return self._guard(MYSQL, guarded)

    def _dynamodb(self, fn: Callable[[], T]) -> T:
        return self._guard(DYNAMODB, fn)

    def mysql_call(self, fn: Callable[[], T]) -> T:
        """``fn`` on this thread's MySQL connection, behind MySQL's circuit breaker."""
        return self._mysql(fn)

    def dynamodb_call(self, fn: Callable[[], T]) -> T:
        """``fn`` behind DynamoDB's circuit breaker."""
        return self._dynamodb(fn)

    def _guard(self, store: str, fn: Callable[[], T]) -> T:
        try:
            return self.breakers.by_store[store].call(fn)
        except pybreaker.CircuitBreakerError:
            raise StoreUnavailable(f"{store} circuit breaker is open") from None
        except TransientError as exc:
            if isinstance(exc, StoreUnavailable | EpochMoved | ConcurrentWrites):
                raise
            raise StoreUnavailable(f"{store}: {exc}") from None

    def _timed(self, phase: Phase, store: str, op: str, fn: Callable[[], T]) -> T:
        started = time.perf_counter()
        try:
            return fn()
        finally:
            self.stats.latency(phase, store, op, (time.perf_counter() - started) * 1000)

    def ensure_applied_table(self) -> None:
        if not self._applied_ready:
            with self.transaction() as cur:
                mysql_store.ensure_applied_table(cur)
            self._applied_ready = True

    # --- writes --------------------------------------------------------------------------

    def put(self, entity: str, row: Mapping[str, Any]) -> WriteResult:
        """Insert or replace the entity's source row (every column it should hold)."""
        e = self.entities.get(entity)
        key = {k: row[k] for k in e.source_key if row.get(k) is not None}
        values = {k: v for k, v in row.items() if k not in key}
        return self.write([Change(e.source_table, "put", key, values)])

    def update(self, entity: str, key: Mapping[str, Any], values: Mapping[str, Any]) -> WriteResult:
        e = self.entities.get(entity)
        return self.write([Change(e.source_table, "update", dict(key), dict(values))])

    def delete(self, entity: str, key: Mapping[str, Any]) -> WriteResult:
        e = self.entities.get(entity)
        return self.write([Change(e.source_table, "delete", dict(key))])

    def write(self, changes: list[Change]) -> WriteResult:
        """Apply ``changes`` (rows of any table the contract reads) as one unit, in the
        contract's current phase. A write that meets a change of phase (its epoch ended) is
        carried out again in the new phase: the caller sees a pause, not an error."""
        known = self.entities.source_tables()
        for c in changes:
            if c.table not in known:
                raise RoutingError(
                    f"table {c.table!r} is not read by contract {self.contract.name!r}; "
                    "the layer writes only its tables"
                )
            if c.op != "put" and not c.key:
                raise RoutingError(f"a {c.op} on {c.table} needs the row's key")
        state = self.phases.state(self.contract.name)
        deadline = time.monotonic() + FENCE_WAIT_SECONDS
        pause = 0.005
        while True:
            if state.moving_to is not None:
                state = self._wait_open()
            try:
                return self._write_in(state, changes)
            except StoreUnavailable:
                # the store of the phase this process last read is down: if the phase has
                # moved on since, the write belongs to the new phase's store
                fresh = self._fresh_state()
                if fresh is None or fresh.version == state.version:
                    raise
                state = fresh
            except EpochMoved:
                self.stats.fenced(state.phase)
                if time.monotonic() > deadline:
                    raise StoreUnavailable(
                        f"{self.contract.name}: the phase kept changing for "
                        f"{FENCE_WAIT_SECONDS:.0f} s during one write"
                    ) from None
                fresh = self._wait_open()
                if fresh.version == state.version:
                    # the phase store shows the phase open; its MySQL fence row opens a
                    # moment after (or a move is just starting): wait and try again
                    time.sleep(pause)
                    pause = min(pause * 2, 0.1)
                state = fresh

    def _wait_open(self) -> PhaseState:
        """The phase once no move is in progress; a phase store that does not answer, or a
        move that does not end, leaves the write unroutable for now (``StoreUnavailable``)."""
        try:
            return self.phases.wait_open(self.contract.name, FENCE_WAIT_SECONDS)
        except Exception as exc:
            raise StoreUnavailable(str(exc)) from None

    def _fresh_state(self) -> PhaseState | None:
        try:
            return self.phases.state(self.contract.name, fresh=True)
        except Exception:  # the phase store cannot answer either
            return None

    def _write_in(self, state: PhaseState, changes: list[Change]) -> WriteResult:
        phase, epoch = state.phase, state.version
        result = WriteResult(int(phase))
        if phase <= Phase.DUAL_READ_MYSQL_PRIMARY:
            # MySQL only; its binlog carries the change to DynamoDB, and the version column
            # is left to MySQL (the items' version is the binlog position)
            self._timed(
                phase,
                MYSQL,
                "write",
                lambda: self._mysql(lambda: self._mysql_apply(changes, result, epoch)),
            )
            return result
        changes = self._versioned(changes)
        dual = phase == Phase.DUAL_READ_DYNAMODB_PRIMARY
        record, versions = self._timed(
            phase, DYNAMODB, "write", lambda: self._dynamo_write(changes, result, epoch, dual)
        )  # fmt: skip
        if dual:
            self._second(phase, result, lambda: self.follower.apply(record, changes, versions))
        else:
            self.stats.write(phase, failed=False)
        return result

    def _versioned(self, changes: list[Change]) -> list[Change]:
        """The changes with the contract's version column (MySQL's data) set to now."""
        version = self.clock.next()
        out = []
        for c in changes:
            column = self.versioned_tables.get(c.table)
            if column and c.op != "delete":
                c = replace(c, values={**c.values, column: version})
            out.append(c)
        return out

    def _second(self, phase: Phase, result: WriteResult, fn: Callable[[], object]) -> None:
        """Phase 4's MySQL part: on failure DynamoDB's outbox keeps it and the request
        stands."""
        try:
            self._timed(phase, MYSQL, "write_second", fn)
            self.stats.write(phase, failed=False)
        except (StoreUnavailable, CutoverError) as exc:
            log.warning("MySQL failed, kept in DynamoDB's outbox: %s", exc)
            result.outboxed += 1
            self.stats.write(phase, failed=True)

    # phases 1-3: MySQL

    def _mysql_apply(self, changes: list[Change], result: WriteResult, epoch: int) -> None:
        self._ensure_fence(epoch)
        with self.transaction() as cur:
            mysql_fence(cur, self.contract.name, epoch)
            for change in changes:
                done = apply(cur, change, self.versioned_tables.get(change.table), guard=False)
                if change.op == "update" and not done and not select_rows(cur, change.table,
                                                                          change.key):  # fmt: skip
                    # as in phases 4-5: an update of a row that is not there (never made, or
                    # deleted) is not found, and the whole write is undone
                    raise NotFound(f"no {change.table} row {change.key} to update: it does "
                                   "not exist, or it was deleted")  # fmt: skip
                if change.op == "put" and not change.key:
                    key = self._assigned_key(cur, change)
                    result.keys.setdefault(change.table, []).append(key)

    def _ensure_fence(self, epoch: int) -> None:
        if not self._fence_ready:
            with self.transaction() as cur:
                ensure_fence(cur, self.contract.name, epoch)
            self._fence_ready = True

    def _assigned_key(self, cur: Any, change: Change) -> dict[str, Any]:
        entities = self.entities.of_table(change.table)
        columns = entities[0].source_key if entities else ["id"]
        if len(columns) != 1:
            raise RoutingError(f"a put on {change.table} must carry its key {columns}")
        return {columns[0]: int(cur.lastrowid)}

    def refreshes_of(
        self, cur: Any, change: Change, key: dict[str, Any], before: list[dict],
        after: list[dict],
    ) -> list[Refresh]:  # fmt: skip
        """The items ``change`` touches (read in the caller's transaction, with the row as it
        was ``before`` and is ``after``): the row's own items and the items of other rows
        that read it through a join or an aggregate."""
        out: list[Refresh] = []
        for entity in self.entities.of_table(change.table):
            source_key = {k: (after or before or [key])[0].get(k, key.get(k))
                          for k in entity.source_key}  # fmt: skip
            out.append(Refresh(entity.name, source_key))
        for dep in self.entities.dependents(change.table):
            where: dict[str, set[Any]] = {}
            for mine, theirs in dep.pairs:
                for row in (*before, *after):
                    if row.get(theirs) is not None:
                        where.setdefault(mine, set()).add(row[theirs])
            for mine, values in where.items():
                rows = select_rows(cur, dep.entity.source_table, {mine: sorted(values, key=str)})
                for row in rows:
                    skey = {k: row[k] for k in dep.entity.source_key}
                    out.append(Refresh(dep.entity.name, skey))
        return _unique(out)

    # phases 4-5: DynamoDB, authoritative

    def _dynamo_write(self, changes: list[Change], result: WriteResult, epoch: int,
                      dual: bool) -> tuple[str | None, dict[int, list[Any]]]:  # fmt: skip
        """Each item read from DynamoDB, the change applied to it, and all written in one
        TransactWriteItems conditioned on the versions read and on the phase's epoch (with
        phase 4's change record for MySQL); read again and retried when an item changed
        meanwhile. Returns the record and, per change, its item (table and key) and the
        version the item got: MySQL's follower orders the row's changes by it."""
        for attempt in range(OCC_ATTEMPTS):
            del result.items[:]
            ops: list[dict[str, Any]] = []
            versions: dict[int, list[Any]] = {}  # change -> [its item, version or None]
            for i, change in enumerate(changes):
                for n, entity in enumerate(self.entities.of_table(change.table)):
                    version = self._item_ops(entity, change, result, epoch, dual, ops)
                    if n == 0:  # the row, as the item it makes now
                        ident = {"table": entity.table.table, "key": result.items[-1]["key"]}
                        versions[i] = [json.dumps(ident, sort_keys=True), version]
            if len(ops) > MAX_TRANSACTION_ITEMS:
                raise RoutingError(f"one write changes {len(ops)} items; DynamoDB takes at "
                                   f"most {MAX_TRANSACTION_ITEMS} in a transaction")  # fmt: skip
            ops.append(dynamo_condition(self.settings.table_prefix, self.contract.name, epoch))
            record, outbox = None, None
            if dual:
                payload = {"changes": [c.to_json() for c in changes], "versions": versions}
                latest = max((v for _, v in versions.values() if v), default=0)
                outbox = self.dynamo.outbox_item(self.contract.name, latest, payload)
                record = outbox["record"]["S"]
            try:
                self._dynamodb(lambda p=ops, o=outbox: self.dynamo.transact(p, o))
            except StaleWrite as exc:
                if len(ops) - 1 in exc.failed:
                    raise EpochMoved(f"{self.contract.name}: the phase changed") from None
                time.sleep(random.uniform(0, 0.005 * 2**attempt))
                continue
            now = time.time()
            for entry in result.items:
                entry["at"] = now
            return record, versions
        raise ConcurrentWrites(f"{self.contract.name}: the items of this write changed under it "
                               f"{OCC_ATTEMPTS} times; try again")  # fmt: skip

    def _item_ops(self, entity: Entity, change: Change, result: WriteResult, epoch: int,
                  dual: bool, ops: list[dict[str, Any]]) -> int | None:  # fmt: skip
        """Append the operations that apply ``change`` to ``entity``'s item, conditioned on
        the item as read now; the version the item gets (None: a delete of no item)."""
        table = entity.table
        key = (entity.item_key(change.row()) if change.op == "put"
               else self._item_key_for(entity, change, dual))  # fmt: skip
        current = self._dynamodb(lambda: self.dynamo.get(table, key))
        read = None if current is None else version_number(
            (current.get(VERSION_ATTRIBUTE) or {}).get("N"))  # fmt: skip
        version = max((read or 0) + 1, item_version(epoch, _micros()))
        exists = current is not None
        if change.op == "delete":
            if not dual and (fed := self._fed(entity, change)):
                raise DerivedRefused(self._refusal(entity, change, fed))
            ops.append(self.dynamo.item_op("Delete", table, key, read, exists))
            result.items.append({"table": table.table, "op": "delete", "key": key})
            # deleting what is not there changes nothing, and must not in MySQL either: its
            # version would not be ordered against a concurrent put of the same key (both
            # read no item), and could delete the row that put makes
            return version if exists else None
        if change.op == "update" and current is None:
            raise NotFound(f"no {entity.name} item {key} to update: it does not exist, or it "
                           "was deleted")  # fmt: skip
        item = self._new_item(entity, change, current, key, dual)
        item[VERSION_ATTRIBUTE] = {"N": str(version)}
        new_key = {k: _text(item[k]) for k in (table.pk, table.sk) if k}
        if new_key != key and exists:  # the update moved the item's key
            ops.append(self.dynamo.item_op("Delete", table, key, read, exists))
            result.items.append({"table": table.table, "op": "delete", "key": key})
            ops.append(self.dynamo.item_op("Put", table, item, None, False))
        else:
            ops.append(self.dynamo.item_op("Put", table, item, read, exists))
        result.items.append({"table": table.table, "op": "put", "key": new_key, "item": item,
                             "update": change.op == "update"})  # fmt: skip
        return version

    def _item_key_for(self, entity: Entity, change: Change, dual: bool) -> dict[str, str]:
        row = change.row()
        try:
            return entity.item_key(row)
        except RoutingError:
            if not dual:
                raise
        rows = self._mysql(lambda: self._select(change.table, change.key))
        if not rows:
            raise NotFound(f"no {change.table} row {change.key} to change")
        return entity.item_key({**rows[0], **row})

    def _select(self, table: str, key: Mapping[str, Any]) -> list[dict[str, Any]]:
        with self.transaction() as cur:
            return select_rows(cur, table, key)

    def _new_item(self, entity: Entity, change: Change, current: dict[str, AV] | None,
                  key: dict[str, str], dual: bool) -> dict[str, AV]:  # fmt: skip
        """The item after ``change``: DynamoDB's current item with the row's plain columns
        laid over it (a put starts from nothing). Derived attributes (joins, aggregates,
        expressions) the change feeds are computed by the view SELECT in phase 4 (MySQL
        only evaluates them; columns the item does not keep come from MySQL's row); in
        phase 5 such a write is refused."""
        row = change.row()
        item = self._overlay(entity, {} if change.op == "put" or current is None else current,
                             row, key)  # fmt: skip
        fed = self._fed(entity, change)
        if not fed:
            return item
        if not dual:
            raise DerivedRefused(self._refusal(entity, change, fed))
        try:
            built = self._mysql(lambda: self._preview(entity, change, current))
        except StoreUnavailable:
            # MySQL follows: its follower derives them once MySQL has the change
            log.info("%s %s: derived attributes left to the follower (MySQL unavailable)",
                     entity.name, key)  # fmt: skip
            return item
        if built is None:
            return item
        if not isinstance(built, Item):
            raise RoutingError(f"{entity.name} row {change.key} cannot become an item: "
                               f"{built.reason}: {built.detail}")  # fmt: skip
        body = json.loads(built.body)
        for name in derived_attributes(entity):
            if name in body:
                item[name] = body[name]
            else:
                item.pop(name, None)
        return item

    @staticmethod
    def _refusal(entity: Entity, change: Change, fed: set[str]) -> str:
        return (
            f"{entity.name}: in phase 5 this {change.op} would change {', '.join(sorted(fed))}, "
            "which the contract derives with MySQL (a join, an aggregate or an expression); "
            "write those rows before phase 5, or move the derivation into the application"
        )

    def _fed(self, entity: Entity, change: Change) -> set[str]:
        """The derived attributes of ``entity``'s item (and, for phase 5's refusal, of items
        that read ``change``'s table) whose values the change may alter."""
        names = set(derived_attributes(entity))
        if change.op == "put":
            fed = set(names)
        elif change.op == "delete":
            fed = set()  # the item goes; the items that read its row remain
        else:
            fed = set()
            changed = set(change.values)
            for attr in entity.source.attributes:
                if attr.name not in names:
                    continue
                columns = ([attr.source_column] if isinstance(attr.source_column, str)
                           else list(attr.source_column or []))  # fmt: skip
                if changed & set(columns):
                    fed.add(attr.name)
        for dep in self.entities.dependents(change.table):
            if dep.entity.source_table == change.table:
                continue
            for attr in dep.entity.source.attributes:
                if attr.name in derived_attributes(dep.entity) and _reads(
                    attr, dep.entity, change.table, None if change.op != "update"
                    else set(change.values)):  # fmt: skip
                    fed.add(f"{dep.entity.name}.{attr.name}")
        return fed

    def _preview(self, entity: Entity, change: Change,
                 current: dict[str, AV] | None) -> Item | Rejection | None:  # fmt: skip
        """The item the view SELECT makes of the row as DynamoDB holds it with the change
        applied (None when MySQL lacks the row an update needs for the columns the item does
        not keep)."""
        with self.transaction() as cur:
            stored = select_rows(cur, change.table, change.key) if change.key else []
            if change.op == "update" and not stored:
                return None
            kept = {} if current is None else {
                col: python_value(current[attr]) for attr, col in entity.plain.items()
                if attr in current
            }  # fmt: skip
            row = {**(stored[0] if stored else {}), **kept, **change.row()}
            return self.deriver.preview(cur, entity, row)

    def _overlay(self, entity: Entity, current: dict[str, AV], row: Mapping[str, Any],
                 key: Mapping[str, str]) -> dict[str, AV]:  # fmt: skip
        item = dict(current)
        types = {a.name: a.type for a in entity.source.attributes}
        plain = entity.plain
        for attr in entity.source.attributes:
            column = plain.get(attr.name)
            if column is None or (column not in row and current):
                continue  # a put (no current item) gives every column: one it lacks is NULL
            try:
                av = attribute_value(attr, row.get(column))
            except BadValue as exc:
                raise RoutingError(
                    f"{entity.name}: column {entity.source_table}.{column} "
                    f"cannot be attribute {attr.name!r}: {exc.detail}"
                ) from None
            if av is None:
                item.pop(attr.name, None)
            else:
                item[attr.name] = av
        for name, text in key.items():
            item[name] = {"N": text} if types.get(name) == "N" else {"S": text}
        if entity.version_column and row.get(entity.version_column) is not None:
            item[VERSION_ATTRIBUTE] = {"N": str(version_number(row[entity.version_column]))}
        return item

    # --- reads ---------------------------------------------------------------------------

    def get(self, entity: str, key: Mapping[str, Any]) -> dict[str, Any] | None:
        """The entity's row (its shape: see ``row_of``) by the columns of its item key."""
        e = self.entities.get(entity)
        item_key = e.item_key(key)
        columns = e.key_columns()

        def from_mysql() -> list[dict[str, AV]]:
            return self._mysql_items(e, {c: [key[c]] for c in columns.values()})

        def from_dynamodb() -> list[dict[str, AV]]:
            item = self.dynamo.get(e.table, item_key)
            return [item] if item else []

        items = self._read(e.name, "get", from_mysql, from_dynamodb, {"key": item_key})
        return row_of(e, items[0]) if items else None

    def query(
        self, table: str, pk: str, *, index: str | None = None, sk_prefix: str | None = None
    ) -> list[dict[str, Any]]:
        """An access pattern: the items of ``table`` (or its GSI ``index``) whose partition key
        is ``pk``, optionally with a sort key starting with ``sk_prefix``; rows in each
        entity's shape with ``__entity``."""
        t = self.entities.table(table)
        pk_name, sk_name = t.pk, t.sk
        gsi = None
        if index:
            gsi = next((g for g in t.gsis if g.index_name == index), None)
            if gsi is None:
                raise RoutingError(f"table {table} has no index {index!r}")
            pk_name, sk_name = gsi.pk, gsi.sk

        def from_mysql() -> list[dict[str, AV]]:
            out = []
            for entity in (e for e in self.entities if e.table is t):
                out.extend(self._mysql_query(entity, pk_name, pk))
            if gsi is not None and gsi.projection != "ALL":
                # the index answers with its projection only: MySQL's answer takes its shape
                keep = {t.pk, t.sk, gsi.pk, gsi.sk, *(gsi.projected_attributes or [])}
                if gsi.projection == "KEYS_ONLY":
                    keep = {t.pk, t.sk, gsi.pk, gsi.sk}
                out = [{k: v for k, v in i.items() if k in keep} for i in out]
            if sk_prefix is not None and sk_name:
                out = [i for i in out if _text(i.get(sk_name, {"S": ""})).startswith(sk_prefix)]
            return out

        def from_dynamodb() -> list[dict[str, AV]]:
            return self.dynamo.query(t, pk_name, pk, index=index, sk_name=sk_name,
                                     sk_prefix=sk_prefix)  # fmt: skip

        op = f"query:{index or 'table'}"
        items = self._read(table, op, from_mysql, from_dynamodb, {"pk": pk, "index": index})
        classify = EntityClassifier(t)
        return [self._row_any(t, classify, item) for item in items]

    def _row_any(self, table: Table, classify: EntityClassifier, item: dict[str, AV]) -> dict:
        name = classify(_text(item.get(table.pk)), _text(item.get(table.sk)) if table.sk else None)
        entity = self.entities.by_name.get(name)
        row = row_of(entity, item) if entity else {k: python_value(v) for k, v in item.items()}
        return {**row, "__entity": name}

    def _mysql_items(self, entity: Entity, where: dict[str, list[Any]]) -> list[dict[str, AV]]:
        with self.transaction() as cur:
            return _bodies(self.deriver.derive(cur, entity, where))

    def _mysql_query(self, entity: Entity, key_name: str, value: str) -> list[dict[str, AV]]:
        where = self._invert(entity, key_name, value)
        if where is None:
            return []
        if where:
            items = self._mysql_items(entity, where)
        else:
            with self.transaction() as cur:
                items = _bodies(self.deriver.matching(cur, entity, key_name, value))
        return [i for i in items if _text(i.get(key_name)) == value]

    def _invert(self, entity: Entity, key_name: str, value: str) -> dict[str, list[Any]] | None:
        """Source-column conditions that select the rows whose ``key_name`` is ``value``
        ({} when the key cannot be inverted: scan; None when no row of it can match)."""
        plain = entity.plain
        fields = entity.key_fields().get(key_name)
        if fields is None:
            if key_name in plain:
                return {plain[key_name]: [value]}
            return {} if any(a.name == key_name for a in entity.source.attributes) else None
        template, attr = fields
        if template is None:
            return {plain[attr]: [value]} if attr in plain else {}
        names = template_fields(template)
        pattern = re.escape(template)
        for name in names:
            pattern = pattern.replace(re.escape("{" + name + "}"), f"(?P<{name}>.+?)", 1)
        match = re.fullmatch(pattern, value, re.DOTALL)
        if match is None:
            return None
        if any(n not in plain for n in names):
            return {}
        return {plain[n]: [match.group(n)] for n in names}

    def _read(
        self,
        entity: str,
        op: str,
        from_mysql: Callable[[], list],
        from_dynamodb: Callable[[], list],
        ident: dict[str, Any],
    ) -> list[dict[str, AV]]:
        phase = self.phase()
        primary, secondary = ((MYSQL, DYNAMODB) if phase <= Phase.DUAL_READ_MYSQL_PRIMARY
                              else (DYNAMODB, MYSQL))  # fmt: skip
        fns = {MYSQL: lambda: self._mysql(from_mysql),
               DYNAMODB: lambda: self._dynamodb(from_dynamodb)}  # fmt: skip
        fallback = phase in (Phase.DUAL_READ_MYSQL_PRIMARY, Phase.DUAL_READ_DYNAMODB_PRIMARY)
        try:
            answer = self._timed(phase, primary, op, fns[primary])
        except StoreUnavailable:
            if not fallback:
                raise
            self.stats.fallback(phase)
            return self._timed(phase, secondary, op, fns[secondary])
        if fallback and self._sampled():
            self._shadow.submit(self._compare, phase, entity, op, answer, fns, primary,
                                secondary, ident)  # fmt: skip
        return answer

    def _sampled(self) -> bool:
        with self._lock:
            self._shadow_count += 1
            n = self._shadow_count
        return int(n * self.shadow_rate) != int((n - 1) * self.shadow_rate)

    def _compare(self, phase: Phase, entity: str, op: str, answer: list, fns: dict,
                 primary: str, secondary: str, ident: dict[str, Any]) -> None:  # fmt: skip
        try:
            other = self._timed(phase, secondary, op, fns[secondary])
            if _same(answer, other):
                self.stats.compared(phase, entity, op, "match")
                return
            if phase == Phase.DUAL_READ_MYSQL_PRIMARY:
                self._wait_for_sync()
            else:
                time.sleep(self.recheck_seconds)  # a write in flight settles before judging
            answer = fns[primary]()
            other = fns[secondary]()
            if _same(answer, other):
                self.stats.compared(phase, entity, op, "transient")
                return
            self.stats.compared(
                phase,
                entity,
                op,
                "mismatch",
                {**ident, "attributes": _differing(answer, other, primary)},
            )
        except Exception as exc:  # the shadow never fails a request
            log.debug("shadow read failed: %s", exc)
            self.stats.compared(phase, entity, op, "error")

    def _wait_for_sync(self) -> bool:
        """Phase 3: DynamoDB follows MySQL's binlog, so a difference is judged again once the
        sync's checkpoint has passed where the binlog stood after the first read (up to
        ``sync_wait_seconds``): a change the sync has yet to apply is not a mismatch. A
        connection that may not read the binlog's position (no BINLOG MONITOR or REPLICATION
        CLIENT privilege) waits ``recheck_seconds`` instead. True when the sync got there."""
        try:
            target = self._mysql(lambda: current_position(self._conn()))
        except Exception as exc:
            log.debug("no binlog position for the shadow recheck: %s", exc)
            time.sleep(self.recheck_seconds)
            return False
        if self._checkpoints is None:
            self._checkpoints = CheckpointStore(dynamodb_client(self.settings),
                                                self.settings.table_prefix)  # fmt: skip
        deadline = time.monotonic() + self.sync_wait_seconds
        while True:
            with suppress(Exception):  # DynamoDB not answering: judged at the deadline
                at = self._checkpoints.load(self.contract.name)
                if at is not None and at.ordinal >= target.ordinal:
                    return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)

    # --- evidence and replay -------------------------------------------------------------

    def outbox_depth(self) -> int:
        """Entries of DynamoDB's phase-4 outbox MySQL does not have yet (0 when DynamoDB
        cannot answer)."""
        depth = 0
        with suppress(Exception):  # a store that cannot answer counts nothing
            depth = len(self.dynamo.outbox_pending(self.contract.name))
        self.stats.outbox(depth)
        return depth

    def flush(self) -> dict[str, Any]:
        """Record this process's figures for the current phase as gate evidence:
        ``shadow_reads`` in phases 3-4, ``dual_writes`` from phase 4 on (phases 1-3 write
        MySQL only; the sync's own evidence covers DynamoDB there)."""
        phase = self.phase()
        store = self._evidence_store()
        out: dict[str, Any] = {"shadow_reads": self.stats.shadow_evidence(phase)}
        if phase in (Phase.DUAL_READ_MYSQL_PRIMARY, Phase.DUAL_READ_DYNAMODB_PRIMARY):
            store.record_evidence(self.contract.name, "shadow_reads", out["shadow_reads"])
        if phase >= Phase.DUAL_READ_DYNAMODB_PRIMARY:
            out["dual_writes"] = self.stats.write_evidence(phase, self.outbox_depth())
            with suppress(Exception):  # DynamoDB not answering: the count is left out
                out["dual_writes"]["follow_quarantined"] = len(quarantined(self))
            store.record_evidence(self.contract.name, "dual_writes", out["dual_writes"])
        return out

    def _evidence_store(self) -> Any:
        """The phase store evidence is recorded in, made on the first flush."""
        if self._evidence is None:
            from cutover.aws import dynamodb_client
            from cutover.phases.store import PhaseStore

            self._evidence = PhaseStore(dynamodb_client(self.settings), self.settings.table_prefix)
        return self._evidence

    def close(self) -> None:
        self._shadow.shutdown(wait=True)
        with self._lock:
            for conn in self._conns:
                with suppress(Exception):
                    conn.close()
            self._conns.clear()
        self._http.close()


def _reads(attr: Attribute, entity: Entity, table: str, columns: set[str] | None) -> bool:
    """Whether the attribute's SQL reads ``table`` (any of its ``columns``; None: any
    column). Names are matched as words, so a column of the same name elsewhere counts too:
    a refusal errs on the safe side."""
    wanted = None if columns is None else {c.lower() for c in columns}
    for use in attribute_fragments(attr, entity.source):
        if table not in use.scope.tables.values():
            continue
        if wanted is None or wanted & set(re.findall(r"\w+", use.sql.lower())):
            return True
    return False


def _micros() -> int:
    return time.time_ns() // 1000


def _text(av: AV | None) -> str:
    """A key attribute as text, numbers canonical (the validation's ``key_text``)."""
    return key_text(av) or ""


def _bodies(built: list[Any]) -> list[dict[str, AV]]:
    """The items (AttributeValue maps) of a derivation; rows that cannot be items skipped."""
    return [json.loads(b.body) for b in built if isinstance(b, Item)]


def _unique(refreshes: list[Refresh]) -> list[Refresh]:
    return list({r.ident(): r for r in refreshes}.values())


def _ident(item: dict[str, AV]) -> str:
    """An item's key attributes as text (PK, SK and the like: the attributes ending in K)."""
    return " ".join(f"{k}={_text(v)}" for k, v in sorted(item.items()) if k in ("PK", "SK"))


def _canon_set(items: list[dict[str, AV]]) -> list[str]:
    return sorted(canonical_item(i) for i in items)


def _same(a: list[dict[str, AV]], b: list[dict[str, AV]]) -> bool:
    return _canon_set(a) == _canon_set(b)


def _differing(answer: list, other: list, primary: str) -> list[str]:
    if len(answer) != 1 or len(other) != 1:
        mine = {_ident(i): i for i in answer}
        theirs = {_ident(i): i for i in other}
        only = [f"only in {primary}: {k}" for k in sorted(set(mine) - set(theirs))[:3]]
        only += [f"only in the other store: {k} (version "
                 f"{(theirs[k].get(VERSION_ATTRIBUTE) or {}).get('N')})"
                 for k in sorted(set(theirs) - set(mine))[:3]]  # fmt: skip
        return [f"{len(answer)} item(s) from {primary}, {len(other)} from the other store",
                *only]  # fmt: skip
    diffs = differences(json.dumps(answer[0]), json.dumps(other[0]))
    # the version is where each store's copy was written (a binlog position, a row's
    # version), not data: ``_same`` leaves it out too
    return sorted({d["attribute"] for d in diffs} - {VERSION_ATTRIBUTE})
