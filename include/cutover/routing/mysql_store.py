"""The MySQL side of the routing layer: items derived from source rows by the contract's own
view SELECT (the backfill's SQL and item builder, so both paths make the same item), and the
refresh of one item under a row lock so that the last put of an item is its newest
derivation. A table notes which entries of DynamoDB's phase-4 outbox MySQL already has, so
that replaying one is idempotent whether or not it was applied before. (In phases 1-3 the
layer writes MySQL only: DynamoDB follows from the binlog, ``cutover.sync``.)"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cutover.contract.model import Contract
from cutover.contract.views import source_select_sql, view_columns, view_name
from cutover.db import quote_ident as q
from cutover.routing.changes import where_in
from cutover.routing.entities import Entity
from cutover.transform.items import Item, ItemBuilder, Rejection

APPLIED_TABLE = "cutover_outbox_applied"
_FROM = "\x00cutover-from\x00"  # where the entity's FROM goes in a cached SELECT

# One row per entry of DynamoDB's outbox (an ``OUTBOX#`` record of the control table) whose row
# changes MySQL has, inserted in the transaction that applied them.
APPLIED_DDL = f"""CREATE TABLE IF NOT EXISTS {q(APPLIED_TABLE)} (
  contract    VARCHAR(128) NOT NULL,
  record      VARCHAR(128) NOT NULL,
  applied_at  DATETIME(6) NOT NULL,
  PRIMARY KEY (contract, record),
  KEY ix_outbox_applied_at (contract, applied_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci"""


@dataclass(frozen=True)
class Refresh:
    """One item whose MySQL-derived attributes to bring up to date: the entity and its
    row's source key."""

    entity: str
    source_key: dict[str, Any]

    def ident(self) -> tuple[str, str]:
        return self.entity, json.dumps(self.source_key, sort_keys=True, default=str)


class Deriver:
    """Builds items from MySQL rows with the contract's view expressions."""

    def __init__(self, contract: Contract) -> None:
        self.contract = contract
        self._builders = {t.table: ItemBuilder(contract, t) for t in contract.tables}
        self._sql: dict[str, str] = {}
        self._text: dict[str, set[str]] = {}

    def _template(self, entity: Entity) -> str:
        """The entity's view SELECT with its FROM left open, ready for bound parameters
        (the view's own %, as in DATE_FORMAT, doubled); rendered once per entity."""
        if entity.name not in self._sql:
            sql = source_select_sql(self.contract, entity.table, entity.source, _FROM)
            self._sql[entity.name] = sql.replace("%", "%%")
        return self._sql[entity.name]

    def _select(self, entity: Entity) -> str:
        return self._template(entity).replace(_FROM, q(entity.source_table))

    def _text_columns(self, entity: Entity, cursor: Any) -> set[str]:
        """Columns the view itself types as text. One entity's SELECT may type a column as
        DATETIME where the view's UNION makes it text; the backfill reads the view, so the
        layer renders such values as MySQL does (``2023-03-07 00:27:42``)."""
        name = entity.table.table
        if name not in self._text:
            cursor.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = DATABASE() AND table_name = %s",
                (view_name(self.contract, entity.table),),
            )
            self._text[name] = {
                str(c) for c, t in cursor.fetchall() if str(t) in ("char", "varchar", "text",
                                                                   "mediumtext", "longtext")
            }  # fmt: skip
        return self._text[name]

    def _build(self, entity: Entity, cursor: Any) -> list[Item | Rejection]:
        names = view_columns(entity.table)
        builder = self._builders[entity.table.table]
        rows = [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
        if rows:
            text = self._text_columns(entity, cursor)
            for row in rows:
                for column, value in row.items():
                    if isinstance(value, dt.date) and column in text:
                        row[column] = str(value)
        return [builder.build(row) for row in rows]

    def derive(
        self, cursor: Any, entity: Entity, where: Mapping[str, list[Any]]
    ) -> list[Item | Rejection]:
        """Items of the entity's rows whose columns take one of the given values."""
        condition, params = where_in(where, entity.source_table)
        where_sql = f"\nWHERE {condition}" if condition else ""  # {}: every row
        cursor.execute(self._select(entity) + where_sql, params)
        return self._build(entity, cursor)

    def matching(self, cursor: Any, entity: Entity, column: str, value: Any) -> list:
        """Items whose view column ``column`` (a key made by an expression, e.g. an index key
        from a transformation) equals ``value``: MySQL filters before it computes the other
        columns of each row."""
        cursor.execute(
            f"SELECT * FROM ({self._select(entity)}) AS v WHERE v.{q(column)} = %s", (value,)
        )
        return self._build(entity, cursor)

    def derive_with(
        self, cursor: Any, entity: Entity, tables: Mapping[str, str], where: str, params: list
    ) -> list[Item | Rejection]:
        """Items of the entity's SELECT where each table of ``tables`` read by a join or an
        aggregate is replaced by the given derived table (``(SELECT 1 AS `id`, ...)``, values as
        escaped literals with ``%`` doubled), restricted by ``where`` (``%s`` placeholders for
        ``params``) on the entity's row: the
        items as they were while those tables held other rows (the sync's keys before a
        change)."""
        sql = self._template(entity)
        for table, derived in tables.items():
            pattern = rf"\b(FROM|JOIN) {re.escape(q(table))}(?: AS (`(?:[^`]|``)+`))?"
            sql = re.sub(
                pattern,
                lambda m, d=derived, t=table: f"{m.group(1)} ({d}) AS {m.group(2) or q(t)}",
                sql,
            )
        sql = sql.replace(_FROM, q(entity.source_table))
        cursor.execute(f"{sql}\nWHERE {where}", params)
        return self._build(entity, cursor)

    def preview(self, cursor: Any, entity: Entity, row: Mapping[str, Any]) -> Item | Rejection:
        """The item ``row`` would make once stored: the same SELECT over a one-row derived
        table under the source table's name (joined tables are read as they are)."""
        columns = ", ".join(f"%s AS {q(c)}" for c in row)
        from_sql = f"(SELECT {columns}) AS {q(entity.source_table)}"
        cursor.execute(self._template(entity).replace(_FROM, from_sql), list(row.values()))
        built = self._build(entity, cursor)
        return built[0]


def ensure_applied_table(cursor: Any) -> None:
    cursor.execute(APPLIED_DDL)


def note_applied(cursor: Any, contract: str, record: str) -> bool:
    """Note, in the caller's transaction, that MySQL has the row changes of DynamoDB's outbox
    entry ``record``; False when that was noted before (the changes are not to be applied
    again)."""
    cursor.execute(
        f"INSERT IGNORE INTO {q(APPLIED_TABLE)} (contract, record, applied_at) "
        "VALUES (%s, %s, UTC_TIMESTAMP(6))",
        (contract, record),
    )
    return int(cursor.rowcount) == 1


def applied_table_exists(cursor: Any) -> bool:
    cursor.execute(
        "SELECT COUNT(*) FROM information_schema.tables "
        "WHERE table_schema = DATABASE() AND table_name = %s",
        (APPLIED_TABLE,),
    )
    return bool(cursor.fetchone()[0])


def prune_applied(cursor: Any, contract: str, older_than_days: int) -> int:
    """Forget the notes of DynamoDB outbox entries applied more than ``older_than_days`` ago
    (their entries are long removed); the number forgotten."""
    cursor.execute(
        f"DELETE FROM {q(APPLIED_TABLE)} WHERE contract = %s "
        "AND applied_at < UTC_TIMESTAMP(6) - INTERVAL %s DAY",
        (contract, older_than_days),
    )
    return int(cursor.rowcount)


def lock_row(cursor: Any, entity: Entity, key: Mapping[str, Any]) -> bool:
    """Lock the source row (FOR UPDATE) until the transaction ends; False when it is gone."""
    where, params = where_in(key)
    cursor.execute(f"SELECT 1 FROM {q(entity.source_table)} WHERE {where} FOR UPDATE", params)
    return cursor.fetchone() is not None
