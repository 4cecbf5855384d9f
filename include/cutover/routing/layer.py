"""The dual-database layer applications write and read through (the repository pattern of
DESIGN.md). It follows the contract's phase, read from the phase store through
``PhaseClient``:

* phases 1-3 write MySQL only, in one transaction: DynamoDB follows from the binlog
  (``cutover.sync``), so writers that bypass the layer are covered too;
* phases 4-5 write DynamoDB first; in phase 4 MySQL's part is kept in an outbox item written
  in the same TransactWriteItems, applied right after, and replayed when that failed
  (`cutover outbox replay`, the reconcile DAG);
* phase 3 compares DynamoDB's answer (as the sync keeps it) with MySQL's, phase 4 MySQL's
  with DynamoDB's, off the request path; phases 3 and 4 fall back to the other store when
  the primary fails.

Items are derived from MySQL rows by the contract's view SELECT and the backfill's item
builder, and compared in the validation's canonical form.
"""

from __future__ import annotations

import json
import logging
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
from cutover.contract.model import Contract, Table, template_fields
from cutover.db import connect, query
from cutover.errors import CutoverError, ServiceError, TerminalError, TransientError
from cutover.load.dynamo_http import DynamoHttp
from cutover.phases.client import PhaseClient
from cutover.phases.model import Phase
from cutover.routing import mysql_store
from cutover.routing.changes import Change, VersionClock, apply, select_rows
from cutover.routing.dynamo_store import DynamoStore, StaleWrite
from cutover.routing.entities import Entities, Entity, RoutingError
from cutover.routing.mysql_store import Deriver, Refresh
from cutover.routing.stats import RoutingStats
from cutover.settings import Settings
from cutover.transform.attribute_values import convert
from cutover.transform.items import VERSION_ATTRIBUTE, Item, version_number
from cutover.validate.canonical import EntityClassifier, canonical_item, differences, key_text

log = logging.getLogger("cutover.routing")
T = TypeVar("T")
AV = dict[str, Any]
MYSQL, DYNAMODB = "mysql", "dynamodb"


# a deadlock or a lock wait timeout rolls the whole transaction back: run it again
_RETRY_CODES = (1213, 1205)
DEADLOCK_RETRIES = 3


class StoreUnavailable(ServiceError, TransientError):
    """A store failed or its circuit breaker is open."""


class NotFound(RoutingError):
    """An update of a row whose item DynamoDB does not hold (never made, or deleted): from
    phase 4 an update never brings a deleted item back."""


# Errors that say the request or the data is wrong, not that the store is down: they fail
# the request but never open a breaker.
_NOT_A_STORE_FAILURE = (TerminalError, MySQLdb.IntegrityError, MySQLdb.DataError,
                        MySQLdb.ProgrammingError)  # fmt: skip


@dataclass
class WriteResult:
    phase: int
    items: list[dict[str, Any]] = field(default_factory=list)  # the items this write set
    outboxed: int = 0  # phase 4: MySQL's part kept in DynamoDB's outbox for replay
    keys: dict[str, Any] = field(default_factory=dict)  # source keys assigned (AUTO_INCREMENT)


@dataclass
class _Sent:
    """The outbox record of a phase-4 transaction once it was sent (its outcome unknown
    until DynamoDB answers)."""

    record: str | None = None


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

    def _guard(self, store: str, fn: Callable[[], T]) -> T:
        try:
            return self.breakers.by_store[store].call(fn)
        except pybreaker.CircuitBreakerError:
            raise StoreUnavailable(f"{store} circuit breaker is open") from None
        except TransientError as exc:
            if isinstance(exc, StoreUnavailable):
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
        """Apply ``changes`` (rows of any table the contract reads) as one unit."""
        known = self.entities.source_tables()
        for c in changes:
            if c.table not in known:
                raise RoutingError(
                    f"table {c.table!r} is not read by contract {self.contract.name!r}; "
                    "the layer writes only its tables"
                )
            if c.op != "put" and not c.key:
                raise RoutingError(f"a {c.op} on {c.table} needs the row's key")
        phase = self.phase()
        result = WriteResult(int(phase))
        op = "write"
        if phase <= Phase.DUAL_READ_MYSQL_PRIMARY:
            # MySQL only; its binlog carries the change to DynamoDB, and the version column
            # is left to MySQL (the items' version is the binlog position)
            self._timed(
                phase, MYSQL, op, lambda: self._mysql(lambda: self._mysql_apply(changes, result))
            )
            return result
        changes = self._versioned(changes)
        if phase == Phase.DUAL_READ_DYNAMODB_PRIMARY:
            sent = _Sent()
            try:
                record = self._timed(
                    phase, DYNAMODB, op, lambda: self._dynamo_first(changes, result, True, sent)
                )
            except StoreUnavailable:
                # fallbackEnabled: with DynamoDB down, MySQL takes the write. A transaction
                # that was sent has an unknown outcome (DynamoDB may have applied it and the
                # answer been lost): MySQL notes its outbox entry as applied, so replay
                # removes that entry instead of applying it again, and the refreshes bring
                # the items to MySQL's rows either way.
                self.stats.fallback(phase)
                result.items.clear()
                self._fallback(phase, changes, result, applied=sent.record)
                return result
            self._second(phase, result, lambda: self.apply_to_mysql(changes, record, result))
        else:
            self._timed(phase, DYNAMODB, op, lambda: self._dynamo_first(changes, result, False))
            self.stats.write(phase, failed=False)
        return result

    def _fallback(self, phase: Phase, changes: list[Change], result: WriteResult,
                  applied: str | None) -> None:  # fmt: skip
        """Phase 4 with DynamoDB down: MySQL's transaction (noting DynamoDB's outbox entry
        ``applied`` of the same changes, if one was sent), then each item it touches
        refreshed in DynamoDB from MySQL's rows. Nothing keeps a refresh that fails: the
        write stands in MySQL and counts as a failed second write (``dual_writes``)."""
        refreshes = self._timed(
            phase, MYSQL, "write",
            lambda: self._mysql(lambda: self._mysql_fallback(changes, result, applied)),
        )  # fmt: skip
        try:
            self._timed(phase, DYNAMODB, "write_second",
                        lambda: self._refresh_each(refreshes, result))  # fmt: skip
            self.stats.write(phase, failed=False)
        except (StoreUnavailable, CutoverError) as exc:
            log.warning("a fallback write is in MySQL only; DynamoDB did not take its items: "
                        "%s", exc)  # fmt: skip
            self.stats.write(phase, failed=True)

    def _versioned(self, changes: list[Change]) -> list[Change]:
        version = self.clock.next()
        out = []
        for c in changes:
            column = self.versioned_tables.get(c.table)
            if column:
                c = replace(c, values={**c.values, column: version})
            out.append(c)
        return out

    def _second(self, phase: Phase, result: WriteResult, fn: Callable[[], None]) -> None:
        """Phase 4's MySQL part: on failure DynamoDB's outbox keeps it and the request
        stands."""
        try:
            self._timed(phase, MYSQL, "write_second", fn)
            self.stats.write(phase, failed=False)
        except (StoreUnavailable, CutoverError) as exc:
            log.warning("MySQL failed, kept in DynamoDB's outbox: %s", exc)
            result.outboxed += 1
            self.stats.write(phase, failed=True)

    # phases 1-3 (and phase 4's fallback): MySQL

    def _mysql_apply(self, changes: list[Change], result: WriteResult) -> None:
        with self.transaction() as cur:
            self._apply_all(cur, changes, result, dual=False, guard=False)

    def _mysql_fallback(self, changes: list[Change], result: WriteResult,
                        applied: str | None) -> list[Refresh]:  # fmt: skip
        if applied:
            self.ensure_applied_table()
        with self.transaction() as cur:
            refreshes = self._apply_all(cur, changes, result, dual=True, guard=False)
            if applied:
                mysql_store.note_applied(cur, self.contract.name, applied)
        return refreshes

    def _apply_all(
        self, cur: Any, changes: list[Change], result: WriteResult, *, dual: bool, guard: bool
    ) -> list[Refresh]:
        """Apply the row changes in the caller's transaction; with ``dual``, the items they
        touch (read before and after each change)."""
        refreshes: list[Refresh] = []
        for change in changes:
            before = select_rows(cur, change.table, change.key) if change.key and dual else []
            apply(cur, change, self.versioned_tables.get(change.table), guard=guard)
            key = dict(change.key)
            if change.op == "put" and not key:
                key = self._assigned_key(cur, change)
                result.keys.setdefault(change.table, []).append(key)
            if dual:
                after = select_rows(cur, change.table, key) if change.op != "delete" else []
                gone = change.op == "delete"  # even a row MySQL lacked: DynamoDB may hold it
                refreshes.extend(self._refreshes(cur, change, key, before, after, gone=gone))
        return _unique(refreshes)

    def _rederive(self, cur: Any, changes: list[Change]) -> list[Refresh]:
        """The refreshes of changes MySQL already has, from their rows as they are now; a row
        gone since has the item its change names deleted (unless DynamoDB holds a newer
        version of it)."""
        refreshes: list[Refresh] = []
        for change in changes:
            if change.key:
                now = select_rows(cur, change.table, change.key)
                refreshes.extend(self._refreshes(cur, change, dict(change.key), [], now,
                                                 gone=True))  # fmt: skip
        return _unique(refreshes)

    def _assigned_key(self, cur: Any, change: Change) -> dict[str, Any]:
        entities = self.entities.of_table(change.table)
        columns = entities[0].source_key if entities else ["id"]
        if len(columns) != 1:
            raise RoutingError(f"a put on {change.table} must carry its key {columns}")
        return {columns[0]: int(cur.lastrowid)}

    def _refreshes(
        self, cur: Any, change: Change, key: dict[str, Any], before: list[dict],
        after: list[dict], *, gone: bool = False,
    ) -> list[Refresh]:  # fmt: skip
        """The items ``change`` touches; with ``gone``, a row MySQL does not hold (before or
        after) still names the item its change's own columns key, to delete."""
        version = version_number(change.values.get(self.versioned_tables.get(change.table, "")))
        out: list[Refresh] = []
        for entity in self.entities.of_table(change.table):
            before_key = None
            named = before[0] if before else change.row() if gone and not after else None
            if named is not None:
                with suppress(RoutingError):  # a key the row alone cannot give
                    before_key = entity.item_key(named)
            source_key = {k: (after or before or [key])[0].get(k, key.get(k))
                          for k in entity.source_key}  # fmt: skip
            out.append(Refresh(entity.name, source_key, before_key, version))
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
                    out.append(Refresh(dep.entity.name, skey, None, None))
        return out

    def _refresh_each(self, refreshes: list[Refresh], result: WriteResult) -> None:
        """Bring each item up to date from MySQL, under its row's lock."""
        for refresh in refreshes:
            result.items.extend(self._mysql(lambda r=refresh: self.refresh(r)))

    def refresh(self, refresh: Refresh) -> list[dict[str, Any]]:
        entity = self.entities.get(refresh.entity)
        written: list[dict[str, Any]] = []
        with self.transaction() as cur:
            exists = mysql_store.lock_row(cur, entity, refresh.source_key)
            where = {k: [v] for k, v in refresh.source_key.items()}
            built = self.deriver.derive(cur, entity, where) if exists else []
            item = next((b for b in built if isinstance(b, Item)), None)
            new_key = None if item is None else self._key_of(entity.table, item)
            if item is not None and self._shares_key(cur, entity, refresh.source_key):
                # two rows make this item: the backfill quarantines both (duplicate_key), so
                # the layer writes neither and takes away what one of them wrote
                log.warning("%s %s shares its item key %s with another row (duplicate_key)",
                            entity.name, refresh.source_key, new_key)  # fmt: skip
                bad_key = new_key
                self._dynamodb(lambda: self.dynamo.delete(entity.table, bad_key, None))
                written.append({"at": time.time(), "table": entity.table.table,
                                "op": "delete", "key": bad_key})  # fmt: skip
            elif item is not None:
                stored = self._dynamodb(
                    lambda: self.dynamo.put(entity.table, item.body, item.version)
                )
                if stored:  # else DynamoDB holds a newer version, written (and logged) since
                    written.append({"at": time.time(), "table": entity.table.table, "op": "put",
                                    "key": new_key, "item": json.loads(item.body)})  # fmt: skip
            elif built:
                log.warning(
                    "%s %s cannot become an item: %s",
                    entity.name,
                    refresh.source_key,
                    built[0].detail,
                )  # type: ignore[union-attr]
            if refresh.before_key and refresh.before_key != new_key:
                bk = refresh.before_key
                self._dynamodb(lambda: self.dynamo.delete(entity.table, bk, refresh.version))
                written.append(
                    {"at": time.time(), "table": entity.table.table, "op": "delete", "key": bk}
                )
        return written

    def _shares_key(self, cur: Any, entity: Entity, source_key: Mapping[str, Any]) -> bool:
        """Whether another row of the entity has the same item-key columns."""
        try:
            columns = list(entity.key_columns().values())
        except RoutingError:
            return False
        if sorted(columns) == sorted(entity.source_key):
            return False  # the item key is the row's own key
        return mysql_store.shares_key(cur, entity, columns, source_key)

    @staticmethod
    def _key_of(table: Table, item: Item) -> dict[str, str]:
        key = {table.pk: item.pk}
        if table.sk:
            key[table.sk] = item.sk or ""
        return key

    # phases 4-5: DynamoDB first

    def _dynamo_first(self, changes: list[Change], result: WriteResult, dual: bool,
                      sent: _Sent | None = None) -> str | None:  # fmt: skip
        ops: list[dict[str, Any]] = []
        for change in changes:
            for entity in self.entities.of_table(change.table):
                ops.extend(self._item_ops(entity, change, result, dual))
        version = version_number(self.clock.next()) or 0
        record = None
        outbox = None
        if dual:
            payload = {"changes": [c.to_json() for c in changes]}
            outbox = self.dynamo.outbox_item(self.contract.name, version, payload)
            record = outbox["record"]["S"]
        first = len(result.items) - len(ops)

        def transact(chunk: list[dict[str, Any]], outbox: dict[str, AV] | None) -> None:
            if sent is not None and record:
                sent.record = record  # from here on, DynamoDB may have applied it
            self.dynamo.transact(chunk, outbox)

        if ops or outbox:
            try:
                for start in range(0, max(len(ops), 1), 99):
                    chunk = ops[start : start + 99]
                    self._dynamodb(lambda c=chunk, o=outbox if start == 0 else None:
                                   transact(c, o))  # fmt: skip
            except StaleWrite:
                self._raise_if_gone(result.items[first:])
                raise
        for entry in result.items[first:]:
            entry["at"] = time.time()
        return record

    def _raise_if_gone(self, entries: list[dict[str, Any]]) -> None:
        """``NotFound`` naming the first updated item DynamoDB does not hold."""
        for entry in entries:
            if entry.get("update"):
                table = self.contract.table(entry["table"])
                if self._dynamodb(lambda t=table, k=entry["key"]: self.dynamo.get(t, k)) is None:
                    raise NotFound(f"no {entry['table']} item {entry['key']} to update: it "
                                   "does not exist, or it was deleted")  # fmt: skip

    def _item_ops(
        self, entity: Entity, change: Change, result: WriteResult, dual: bool
    ) -> list[dict[str, Any]]:
        table = entity.table
        row = change.row()
        version = version_number(row.get(entity.version_column)) if entity.version_column else None
        if change.op == "delete":
            key = self._item_key_for(entity, change, dual)
            result.items.append({"table": table.table, "op": "delete", "key": key})
            return [self.dynamo.delete_op(table, key, version)]
        item_av = self._new_item(entity, change, dual)
        body = json.dumps(item_av, ensure_ascii=False, separators=(",", ":"))
        key = {k: _text(item_av[k]) for k in (table.pk, table.sk) if k}
        result.items.append({"table": table.table, "op": "put", "key": key, "item": item_av,
                             "update": change.op == "update"})  # fmt: skip
        # an update changes an item that exists: one deleted meanwhile stays deleted
        return [self.dynamo.put_op(table, body, version, must_exist=change.op == "update")]

    def _item_key_for(self, entity: Entity, change: Change, dual: bool) -> dict[str, str]:
        row = change.row()
        try:
            return entity.item_key(row)
        except RoutingError:
            if not dual:
                raise
        rows = self._mysql(lambda: self._select(change.table, change.key))
        if not rows:
            raise RoutingError(f"no {change.table} row {change.key} to change")
        return entity.item_key({**rows[0], **row})

    def _select(self, table: str, key: Mapping[str, Any]) -> list[dict[str, Any]]:
        with self.transaction() as cur:
            return select_rows(cur, table, key)

    def _new_item(self, entity: Entity, change: Change, dual: bool) -> dict[str, AV]:
        """The item after ``change``: in phase 4 the view SELECT over the new row (MySQL read
        only); when MySQL cannot answer, or in phase 5, the stored item with the row's plain
        columns, keys and version laid over it."""
        if dual:
            try:
                built = self._mysql(lambda: self._preview(entity, change))
                if isinstance(built, Item):
                    return json.loads(built.body)
                raise RoutingError(f"{entity.name} row {change.key} cannot become an item: "
                                   f"{built.reason}: {built.detail}")  # fmt: skip
            except StoreUnavailable:
                pass
        row = change.row()
        if change.op == "update" and not _has_all(row, entity.key_columns().values()):
            raise RoutingError(f"{entity.name}: without MySQL an update must carry the item's "
                               f"key columns {sorted(entity.key_columns().values())}")  # fmt: skip
        key = entity.item_key(row)
        current = self._dynamodb(lambda: self.dynamo.get(entity.table, key))
        if current is None and change.op == "update":
            raise NotFound(f"no {entity.name} item {key} to update: it does not exist, or it "
                           "was deleted")  # fmt: skip
        return self._overlay(entity, current or {}, row, key)

    def _preview(self, entity: Entity, change: Change) -> Any:
        with self.transaction() as cur:
            row = change.row()
            if change.op == "update":
                stored = select_rows(cur, change.table, change.key)
                if not stored:
                    raise NotFound(f"no {change.table} row {change.key} to update")
                row = {**stored[0], **row}
            return self.deriver.preview(cur, entity, row)

    def _overlay(self, entity: Entity, current: dict[str, AV], row: Mapping[str, Any],
                 key: Mapping[str, str]) -> dict[str, AV]:  # fmt: skip
        item = dict(current)
        types = {a.name: a.type for a in entity.source.attributes}
        for attr, column in entity.plain.items():
            if column in row:
                av = convert(types[attr], row[column]) if row[column] is not None else None
                if av is None:
                    item.pop(attr, None)
                else:
                    item[attr] = av
        for name, text in key.items():
            item[name] = {"N": text} if types.get(name) == "N" else {"S": text}
        if entity.version_column and row.get(entity.version_column) is not None:
            item[VERSION_ATTRIBUTE] = {"N": str(version_number(row[entity.version_column]))}
        return item

    def apply_to_mysql(self, changes: list[Change], record: str | None,
                            result: WriteResult) -> None:  # fmt: skip
        """Phase 4's second store: the row changes (guarded by version) with a note that MySQL
        has outbox entry ``record``, then the items they touch refreshed from MySQL, then the
        entry removed. An entry MySQL has already (its removal failed, or a fallback write
        took its changes when the transaction's answer was lost) is not applied again: the
        items its changes touch are derived from the rows as they are."""
        refreshes = self._mysql(lambda: self._apply_guarded(changes, record, result))
        self._refresh_each(refreshes, result)
        if record:
            self._dynamodb(lambda: self.dynamo.outbox_done(self.contract.name, record))

    def _apply_guarded(self, changes: list[Change], record: str | None,
                       result: WriteResult) -> list[Refresh]:  # fmt: skip
        if record:
            self.ensure_applied_table()
        with self.transaction() as cur:
            if record and not mysql_store.note_applied(cur, self.contract.name, record):
                return self._rederive(cur, changes)
            return self._apply_all(cur, changes, result, dual=True, guard=True)

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


def _text(av: AV | None) -> str:
    """A key attribute as text, numbers canonical (the validation's ``key_text``)."""
    return key_text(av) or ""


def _has_all(row: Mapping[str, Any], columns: Any) -> bool:
    return all(row.get(c) is not None for c in columns)


def _bodies(built: list[Any]) -> list[dict[str, AV]]:
    """The items (AttributeValue maps) of a derivation; rows that cannot be items skipped."""
    return [json.loads(b.body) for b in built if isinstance(b, Item)]


def _unique(refreshes: list[Refresh]) -> list[Refresh]:
    seen: dict[tuple[str, ...], Refresh] = {}
    for r in refreshes:
        ident: tuple[str, ...] = r.ident()
        if None in r.source_key.values():  # a row MySQL lacks: one refresh per item it names
            ident = (*ident, json.dumps(r.before_key, sort_keys=True))
        prior = seen.get(ident)
        if prior is None or (prior.before_key is None and r.before_key):
            seen[ident] = r
    return list(seen.values())


def _canon_set(items: list[dict[str, AV]]) -> list[str]:
    return sorted(canonical_item(i) for i in items)


def _same(a: list[dict[str, AV]], b: list[dict[str, AV]]) -> bool:
    return _canon_set(a) == _canon_set(b)


def _differing(answer: list, other: list, primary: str) -> list[str]:
    if len(answer) != 1 or len(other) != 1:
        return [f"{len(answer)} item(s) from {primary}, {len(other)} from the other store"]
    diffs = differences(json.dumps(answer[0]), json.dumps(other[0]))
    # the version is where each store's copy was written (a binlog position, a row's
    # version), not data: ``_same`` leaves it out too
    return sorted({d["attribute"] for d in diffs} - {VERSION_ATTRIBUTE})
