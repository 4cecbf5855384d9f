"""Applying a batch of refs: derive the items again with the contract's view SELECT (the
backfill's SQL and item builder, through ``routing.mysql_store.Deriver``) from MySQL as it
stands after the batch's transactions, then put and delete them in DynamoDB guarded by the
batch's binlog position.

Why one stamp for the whole batch is right: every item is derived after the batch's last
commit was read, so it shows MySQL at or after that position; any later change has a later
position and derives the item again. A put or delete is applied only where DynamoDB holds no
item of a later position (``attribute_not_exists(v) OR v <= :position``), so a replay, a
restarted sync or an older derivation never overwrites a newer item, and a delete, once the
row is gone, is never undone by the sync (the backfill's snapshot, which may re-create it,
is followed by the handoff pass from the snapshot's position: ``cutover.sync.runner``)."""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from cutover.contract.model import Contract, Table
from cutover.db import literal
from cutover.db import quote_ident as q
from cutover.routing.dynamo_store import DynamoStore
from cutover.routing.entities import Entity, RoutingError
from cutover.routing.mysql_store import Deriver
from cutover.sync.mapper import (
    DependencyIndex,
    DependentsOf,
    Derive,
    Everything,
    KeysBefore,
    Ref,
    Remove,
    RemoveBefore,
    decode,
)
from cutover.transform.items import Item, Rejection, with_version
from cutover.validate.canonical import EntityClassifier, canonical_item

log = logging.getLogger("cutover.sync")
WHERE_CHUNK = 500  # values in one IN (...) list


@dataclass
class BatchResult:
    written: int = 0
    deleted: int = 0
    kept_newer: int = 0
    rejected: int = 0
    fallbacks: int = 0
    unchanged: int = 0  # items the fallback derived as DynamoDB already holds them
    items: int = 0
    rejections: list[Rejection] = field(default_factory=list)

    def add(self, other: BatchResult, keep: int = 10_000) -> None:
        """Add ``other``'s counts; of its rejections, keep up to ``keep`` in all."""
        for name in ("written", "deleted", "kept_newer", "rejected", "fallbacks", "unchanged",
                     "items"):  # fmt: skip
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.rejections.extend(other.rejections[: max(keep - len(self.rejections), 0)])


def _key_of(table: Table, item: Item) -> str:
    key = {table.pk: item.pk}
    if table.sk:
        key[table.sk] = item.sk or ""
    return json.dumps(dict(sorted(key.items())), sort_keys=True)


class Applier:
    def __init__(
        self, contract: Contract, index: DependencyIndex, store: DynamoStore, workers: int = 16
    ) -> None:
        self.contract = contract
        self.index = index
        self.entities = index.entities
        self.deriver = Deriver(contract)
        self.store = store
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="cutover-sync")
        self._warned: set[tuple[str, ...]] = set()  # said once per run, counted every time

    def _warn_once(self, what: tuple[str, ...], msg: str, *args: Any) -> None:
        if what not in self._warned:
            self._warned.add(what)
            log.warning(msg, *args)

    def close(self) -> None:
        self.pool.shutdown(cancel_futures=True)

    # --- one batch ---------------------------------------------------------------------

    def apply(self, conn: Any, refs: Iterable[Ref], version: int,
              before_write: Callable[[], None] | None = None) -> BatchResult:  # fmt: skip
        """Derive and write what ``refs`` ask, every write guarded by ``version``;
        ``before_write`` may still call the batch off (it raises) once the items are
        derived."""
        puts, removals, result = self.derive(conn, refs)
        if before_write is not None:
            before_write()
        self._write(puts, removals, version, result)
        return result

    def derive(
        self, conn: Any, refs: Iterable[Ref]
    ) -> tuple[dict[tuple[str, str], Item], set[tuple[str, str]], BatchResult]:
        """What ``refs`` ask of DynamoDB, derived from MySQL now and not written: the items
        to put by (table, key), the (table, key) of items to remove, and the counts so far.
        The sync writes them; changed-key parity compares them with what DynamoDB holds."""
        by_kind: dict[type, list[Any]] = defaultdict(list)
        for ref in refs:
            by_kind[type(ref)].append(ref)
        result = BatchResult()
        self._dups: set[tuple[str, str]] = set()
        everything = {r.entity for r in by_kind[Everything]}
        puts: dict[tuple[str, str], Item] = {}  # (table, key) -> item
        removals: set[tuple[str, str]] = set()
        with conn.cursor() as cur:
            cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
            for name in sorted(everything):
                result.fallbacks += 1
                self._collect(self._derive_all(cur, name), name, puts, result)
            self._derive_rows(cur, by_kind, everything, puts, result)
            self._dups.update(self._shared_keys(cur, puts, everything))
            for ref in by_kind[Remove]:
                if ref.entity not in everything:
                    removals.add((self.entities.get(ref.entity).table.table, ref.key))
            for ref in by_kind[RemoveBefore]:
                if ref.entity not in everything:
                    removals.update(self._key_before(cur, ref))
            for ref in by_kind[KeysBefore]:
                if ref.entity not in everything:
                    removals.update(self._keys_before(cur, ref))
        for key in self._dups:
            # two rows make this item: the backfill quarantines both (duplicate_key), so the
            # sync writes neither and takes away what one of them wrote
            puts.pop(key, None)
            removals.add(key)
            result.rejected += 1
            self._warn_once(("dup", *key), "%s %s is made by more than one row (duplicate_key)",
                            *key)  # fmt: skip
        stored = {name: self._stored(self.entities.get(name)) for name in sorted(everything)}
        for name, items in stored.items():
            table = self.entities.get(name).table.table
            mine = {k for (t, k) in puts if t == table}
            removals.update((table, k) for k in items.keys() - mine)  # orphans
        removals -= set(puts)
        for name, items in stored.items():
            table = self.entities.get(name).table.table
            for key in [k for (t, k) in puts if t == table]:
                # the fallback derives every item again; most are as DynamoDB holds them
                if items.get(key) == puts[(table, key)].canonical:
                    del puts[(table, key)]
                    result.unchanged += 1
        return puts, removals, result

    def _collect(self, built: list[Item | Rejection], entity: str,
                 puts: dict[tuple[str, str], Item], result: BatchResult) -> None:  # fmt: skip
        table = self.entities.get(entity).table
        for b in built:
            if isinstance(b, Item):
                key = (table.table, _key_of(table, b))
                prev = puts.get(key)
                if prev is not None and prev.source_pk != b.source_pk:
                    self._dups.add(key)
                puts[key] = b
            else:
                result.rejected += 1
                result.rejections.append(b)
                self._warn_once(
                    ("rejected", b.entity_type, str(b.source_pk), b.reason),
                    "%s row %s of %s cannot become an item: %s (%s)",
                    b.entity_type, b.source_pk, b.source_table, b.reason, b.detail,
                )  # fmt: skip

    def _derive_all(self, cur: Any, name: str) -> list[Item | Rejection]:
        return self.deriver.derive(cur, self.entities.get(name), {})

    def _derive_rows(self, cur: Any, by_kind: dict[type, list[Any]], everything: set[str],
                     puts: dict[tuple[str, str], Item], result: BatchResult) -> None:  # fmt: skip
        # (entity, column) -> {value as JSON: value}
        wanted: dict[tuple[str, str], dict[str, Any]] = defaultdict(dict)
        composite: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for ref in by_kind[Derive]:
            if ref.entity in everything:
                continue
            key = decode(ref.source_key)
            if len(key) == 1:
                ((column, value),) = key.items()
                wanted[(ref.entity, column)][json.dumps(value, default=str)] = value
            else:
                composite[ref.entity].append(key)
        for ref in by_kind[DependentsOf]:
            if ref.entity not in everything:
                wanted[(ref.entity, ref.column)][ref.value] = decode(ref.value)
        for (name, column), values in wanted.items():
            entity = self.entities.get(name)
            for chunk in _chunks(list(values.values()), WHERE_CHUNK):
                self._collect(self.deriver.derive(cur, entity, {column: chunk}), name, puts,
                              result)  # fmt: skip
        for name, keys in composite.items():
            entity = self.entities.get(name)
            for key in keys:
                where = {c: [v] for c, v in key.items()}
                self._collect(self.deriver.derive(cur, entity, where), name, puts, result)

    def _shared_keys(self, cur: Any, puts: dict[tuple[str, str], Item],
                     everything: set[str]) -> set[tuple[str, str]]:  # fmt: skip
        """Keys of derived items that another row of the entity makes too, for entities whose
        item key is not the row's own key (one query per entity)."""
        by_entity: dict[str, list[tuple[tuple[str, str], Item]]] = defaultdict(list)
        for key, item in puts.items():
            if item.entity_type not in everything:
                by_entity[item.entity_type].append((key, item))
        out: set[tuple[str, str]] = set()
        for name, entries in by_entity.items():
            entity = self.entities.get(name)
            try:
                columns = sorted(set(entity.key_columns().values()))
            except RoutingError:
                continue  # a key made by a join: the backfill's duplicate check covers it
            if columns == sorted(entity.source_key):
                continue
            shared = self._sharing(cur, entity, columns, [json.loads(i.source_pk)
                                                          for _, i in entries])  # fmt: skip
            out.update(key for key, item in entries if _pk_text(item.source_pk) in shared)
        return out

    @staticmethod
    def _sharing(cur: Any, entity: Entity, columns: list[str],
                 pks: list[dict[str, Any]]) -> set[str]:  # fmt: skip
        t = q(entity.source_table)
        same = " AND ".join(f"a.{q(c)} = b.{q(c)}" for c in columns)
        other = " OR ".join(f"NOT (a.{q(c)} <=> b.{q(c)})" for c in entity.source_key)
        out: set[str] = set()
        for chunk in _chunks(pks, WHERE_CHUNK):
            rows = " OR ".join(
                "(" + " AND ".join(f"a.{q(c)} = %s" for c in entity.source_key) + ")" for _ in chunk
            )
            params = [pk.get(c) for pk in chunk for c in entity.source_key]
            select = ", ".join(f"a.{q(c)}" for c in entity.source_key)
            cur.execute(f"SELECT DISTINCT {select} FROM {t} AS a JOIN {t} AS b ON {same} "
                        f"AND ({other}) WHERE {rows}", params)  # fmt: skip
            for row in cur.fetchall():
                out.add(_pk_text(dict(zip(entity.source_key, row, strict=True))))
        return out

    def _key_before(self, cur: Any, ref: RemoveBefore) -> list[tuple[str, str]]:
        entity = self.entities.get(ref.entity)
        built = self.deriver.preview(cur, entity, decode(ref.before))
        if isinstance(built, Item):
            return [(entity.table.table, _key_of(entity.table, built))]
        return []

    def _keys_before(self, cur: Any, ref: KeysBefore) -> list[tuple[str, str]]:
        entity = self.entities.get(ref.entity)
        before = decode(ref.before)
        derived = "SELECT " + ", ".join(
            f"{literal(cur.connection, v).replace('%', '%%')} AS {q(c)}" for c, v in before.items()
        )
        where = f"{q(entity.source_table)}.{q(ref.column)} = %s"
        built = self.deriver.derive_with(cur, entity, {ref.table: derived}, where,
                                         [decode(ref.value)])  # fmt: skip
        return [(entity.table.table, _key_of(entity.table, b)) for b in built
                if isinstance(b, Item)]  # fmt: skip

    def _stored(self, entity: Entity) -> dict[str, str]:
        """The entity's items in DynamoDB, key text -> canonical item (the fallback's read: a
        consistent Scan of the table, items told apart by their key templates)."""
        table = entity.table
        classify = EntityClassifier(table)
        body: dict[str, Any] = {"TableName": self.store.physical(table), "ConsistentRead": True}
        out: dict[str, str] = {}
        while True:
            page = self.store.call("Scan", body).json()
            for item in page.get("Items", []):
                pk = next(iter(item[table.pk].values()))
                sk = next(iter(item[table.sk].values())) if table.sk else None
                if classify(pk, sk) != entity.name:
                    continue
                key = {table.pk: pk, **({table.sk: sk} if table.sk else {})}
                out[json.dumps(dict(sorted(key.items())), sort_keys=True)] = canonical_item(item)
            if not page.get("LastEvaluatedKey"):
                return out
            body["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    # --- DynamoDB ----------------------------------------------------------------------

    def _write(self, puts: dict[tuple[str, str], Item], removals: set[tuple[str, str]],
               version: int, result: BatchResult) -> None:  # fmt: skip
        tables = {t.table: t for t in self.contract.tables}

        def put(entry: tuple[tuple[str, str], Item]) -> str:
            (table, _), item = entry
            body = with_version(item, version).body
            return "written" if self.store.put(tables[table], body, version) else "kept_newer"

        def delete(entry: tuple[str, str]) -> str:
            table, key = entry
            done = self.store.delete(tables[table], json.loads(key), version)
            return "deleted" if done else "kept_newer"

        outcomes: Counter[str] = Counter()
        outcomes.update(self.pool.map(put, list(puts.items())))
        outcomes.update(self.pool.map(delete, sorted(removals)))
        result.written += outcomes["written"]
        result.deleted += outcomes["deleted"]
        result.kept_newer += outcomes["kept_newer"]
        result.items += len(puts) + len(removals)


def _pk_text(pk: str | dict[str, Any]) -> str:
    values = json.loads(pk) if isinstance(pk, str) else pk
    return json.dumps({k: str(v) for k, v in sorted(values.items())})


def _chunks(values: list[Any], size: int) -> Iterable[list[Any]]:
    for i in range(0, len(values), size):
        yield values[i : i + size]
