"""MySQL following DynamoDB in phase 4, from the change records the layer writes in the same
TransactWriteItems as the items (DynamoDB's outbox).

Each record carries the row changes the application asked for and, per row, the version
DynamoDB gave its item. A change is applied only where it is newer than what MySQL applied
to that row: ``cutover_follow`` keeps, per row, the version of its last put or delete and the
version of each column set by an update since, so a late or replayed record never
overwrites a newer value, never re-creates a deleted row, and still sets the columns no
newer change set (two updates of different columns of one row, applied out of order while
MySQL was away, both stand).
A change MySQL refuses (unique key, foreign key, a value too long) is quarantined with its
reason in the control table and counted as gate evidence: it never blocks the records after
it and never fails the request DynamoDB acknowledged.

Attributes DynamoDB cannot compute from the item alone (joins, aggregates, expressions over
columns the item does not keep) are derived again from MySQL once it has the change, under
the row's lock, and set on the item with a version check: only those attributes, never the
item's plain attributes, which DynamoDB owns in phase 4. The items to derive are queued in
MySQL (``cutover_derive``) in the transaction that applies the change, and derived after it
commits: MySQL has an acknowledged change even when DynamoDB stops answering right after
(a read that falls back to MySQL then finds it); the queue waits for DynamoDB, and the
record stays in the outbox until its items are derived.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import MySQLdb

from cutover.db import quote_ident as q
from cutover.errors import CutoverError
from cutover.routing import mysql_store
from cutover.routing.changes import Change, apply, select_rows
from cutover.routing.entities import Entity, is_plain
from cutover.routing.mysql_store import Refresh
from cutover.transform.items import VERSION_ATTRIBUTE, Item, version_number

if TYPE_CHECKING:
    from cutover.routing.layer import DualDatabase

log = logging.getLogger("cutover.routing")

FOLLOW_TABLE = "cutover_follow"
FOLLOW_DDL = f"""CREATE TABLE IF NOT EXISTS {q(FOLLOW_TABLE)} (
  contract    VARCHAR(128) NOT NULL,
  tbl         VARCHAR(128) NOT NULL,
  row_key     VARCHAR(512) NOT NULL,
  version     DECIMAL(38, 0) NOT NULL,
  deleted     TINYINT NOT NULL,
  updated_at  DATETIME(6) NOT NULL,
  base        DECIMAL(38, 0) NULL,
  col_versions TEXT NULL,
  PRIMARY KEY (contract, tbl, row_key)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"""
# a table made by an earlier release: the per-column versions are added (rows it has count
# their last version as every column's)
FOLLOW_UPGRADE = (
    f"ALTER TABLE {q(FOLLOW_TABLE)} ADD COLUMN IF NOT EXISTS base DECIMAL(38, 0) NULL, "
    "ADD COLUMN IF NOT EXISTS col_versions TEXT NULL"
)
DERIVE_TABLE = "cutover_derive"
DERIVE_DDL = f"""CREATE TABLE IF NOT EXISTS {q(DERIVE_TABLE)} (
  contract    VARCHAR(128) NOT NULL,
  entity      VARCHAR(128) NOT NULL,
  source_key  VARCHAR(512) NOT NULL,
  queued_at   DATETIME(6) NOT NULL,
  PRIMARY KEY (contract, entity, source_key)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"""
QUARANTINE_PREFIX = "FOLLOWQ#"
DERIVED_ATTEMPTS = 5
# what MySQL refuses for the data's sake, not because it is down
REFUSALS = (MySQLdb.IntegrityError, MySQLdb.DataError)


class Ahead(CutoverError):
    """A change that MySQL cannot apply until an older one of the same row has been: an
    update newer than the row's delete means DynamoDB made the item again in between (it
    updates only an item that exists), and that put is still on its way. The record stays
    in DynamoDB's outbox, and a later replay applies it."""


class Refused(Exception):
    def __init__(self, change: Change, error: BaseException) -> None:
        super().__init__(f"MySQL refused {change.op} of {change.table} {change.key}: "
                         f"{error.args[-1] if error.args else error}")  # fmt: skip
        self.change = change


def derived_attributes(entity: Entity) -> list[str]:
    """The entity's attributes that are not one column of its row unchanged."""
    keys = {entity.table.pk, entity.table.sk}
    return [a.name for a in entity.source.attributes if not is_plain(a) and a.name not in keys]


def follow_plan(cur: Any, contract: str, change: Change, ident: str,
                version: int) -> Change | None:  # fmt: skip
    """In the caller's transaction: the part of ``change`` (to the row whose item is
    ``ident``, at ``version``) MySQL is to apply, None when a newer change covers all of it;
    ``cutover_follow`` then records it (its row stays locked until the transaction ends).
    A put or delete newer than everything applied to the row is applied whole; otherwise
    only the columns no newer put, delete or update set are, and nothing of a row a newer
    delete removed. Rows are named by their item because the application may address one
    row by different keys (its id, or the columns of its item key)."""
    where = "contract = %s AND tbl = %s AND row_key = %s"
    params = (contract, change.table, ident)
    # The row made to exist and locked in one statement: two first changes of a row wait
    # for each other here (a SELECT ... FOR UPDATE of a missing row locks nothing).
    cur.execute(
        f"INSERT INTO {q(FOLLOW_TABLE)} (contract, tbl, row_key, version, deleted, base, "
        "col_versions, updated_at) VALUES (%s, %s, %s, 0, 0, 0, '{}', UTC_TIMESTAMP(6)) "
        "ON DUPLICATE KEY UPDATE version = version",
        params,
    )
    cur.execute(f"SELECT version, deleted, base, col_versions FROM {q(FOLLOW_TABLE)} "
                f"WHERE {where} FOR UPDATE", params)  # fmt: skip
    found = cur.fetchone()
    last, deleted = int(found[0]), bool(found[1])
    # a row an earlier release recorded has no base: its last version stands for all
    base = last if found[2] is None else int(found[2])
    cols = {k: int(v) for k, v in json.loads(found[3] or "{}").items()}
    plan: Change | None
    if change.op in ("put", "delete") and version > last:
        plan, base, cols, deleted = change, version, {}, change.op == "delete"
    elif deleted and change.op == "update" and version > last:
        raise Ahead(
            f"update of {change.table} row {change.key} at version {version} is newer than "
            f"the row's delete at {last}: it waits for the put that made the item again"
        )
    elif deleted or change.op == "delete":
        plan = None  # the row is gone since, or a newer change followed the delete's row
    else:
        fresh = {c: v for c, v in change.values.items() if cols.get(c, base) < version}
        cols.update(dict.fromkeys(fresh, version))
        plan = replace(change, op="update", values=fresh) if fresh else None
    record = (max(last, version), int(deleted), base, json.dumps(cols, sort_keys=True))
    cur.execute(
        f"UPDATE {q(FOLLOW_TABLE)} SET version = %s, deleted = %s, base = %s, "
        f"col_versions = %s, updated_at = UTC_TIMESTAMP(6) WHERE {where}",
        (*record, *params),
    )
    return plan


class MySQLFollower:
    """Applies DynamoDB's change records to MySQL for one layer (its connections, its
    stores)."""

    def __init__(self, layer: DualDatabase) -> None:
        self.layer = layer
        self.contract = layer.contract.name
        self._ready = False

    def _ensure(self) -> None:
        if not self._ready:
            self.layer.ensure_applied_table()
            with self.layer.transaction() as cur:
                cur.execute(FOLLOW_DDL)
            with self.layer.transaction() as cur:
                cur.execute(FOLLOW_UPGRADE)
            with self.layer.transaction() as cur:
                cur.execute(DERIVE_DDL)
            self._ready = True

    def apply(self, record: str | None, changes: list[Change],
              versions: Mapping[int, Sequence[Any]], strict: bool = False) -> str:  # fmt: skip
        """Apply one record (``versions``: change index -> [its item, the item's version]),
        derive the items it touched, then remove it from DynamoDB's outbox. Returns
        ``applied``, ``quarantined`` or ``had`` (MySQL had it already). Raises only when
        MySQL does not have the change; what is left for DynamoDB (deriving, removing the
        record) waits for the next replay when DynamoDB does not answer, unless ``strict``
        (the replay's own call), which raises then."""
        layer = self.layer
        layer.mysql_call(self._ensure)
        queued: list[tuple[str, str]] | None = None
        try:
            outcome, queued = layer.mysql_call(lambda: self._apply(record, changes, versions))
        except Refused as exc:
            log.warning("quarantined: %s", exc)
            self._quarantine(record, changes, str(exc))
            outcome, queued = "quarantined", []
        try:
            # a record MySQL had may be one whose deriving waited for DynamoDB
            self.derive_queued(queued)
            if record:
                layer.dynamodb_call(lambda: layer.dynamo.outbox_done(self.contract, record))
        except Exception as exc:  # MySQL has the change; the replay finishes the rest
            if strict:
                raise
            log.warning("record %s: MySQL has it, DynamoDB's part waits for the replay: %s",
                        record, exc)  # fmt: skip
        return outcome

    def _apply(
        self, record: str | None, changes: list[Change], versions: Mapping[int, Sequence[Any]]
    ) -> tuple[str, list[tuple[str, str]] | None]:
        """Apply the record in one MySQL transaction, queueing the items to derive; returns
        the outcome and the queued items (None: every item the queue holds)."""
        layer = self.layer
        with layer.transaction() as cur:
            if record and not mysql_store.note_applied(cur, self.contract, record):
                return "had", None
            refreshes: list[Refresh] = []
            for i, change in enumerate(changes):
                ident, version = versions.get(i) or (None, None)
                if ident is not None and version is None:
                    continue  # a delete of an item DynamoDB did not hold: nothing changed
                if ident is not None:
                    planned = follow_plan(cur, self.contract, change, ident, int(version))
                    if planned is None:
                        log.debug("skipped %s of %s %s: MySQL has newer changes of the row",
                                  change.op, change.table, change.key)  # fmt: skip
                        continue
                    change = planned
                before = select_rows(cur, change.table, change.key) if change.key else []
                try:
                    apply(cur, change, None, guard=False)
                except REFUSALS as exc:
                    raise Refused(change, exc) from None
                key = dict(change.key)
                after = select_rows(cur, change.table, key) if change.op != "delete" else []
                refreshes.extend(layer.refreshes_of(cur, change, key, before, after))
            queued = []
            for refresh in refreshes:
                if derived_attributes(layer.entities.get(refresh.entity)):
                    ident = refresh.ident()
                    cur.execute(
                        f"INSERT IGNORE INTO {q(DERIVE_TABLE)} "
                        "(contract, entity, source_key, queued_at) "
                        "VALUES (%s, %s, %s, UTC_TIMESTAMP(6))",
                        (self.contract, *ident),
                    )
                    queued.append(ident)
        return "applied", queued

    def derive_queued(self, idents: list[tuple[str, str]] | None = None) -> int:
        """Derive the queued items ``idents`` (all the contract's queued items when None);
        returns how many were derived. Raises when MySQL or DynamoDB does not answer: what
        is not derived stays queued."""
        layer = self.layer
        if idents is None:

            def pending() -> list[tuple[str, str]]:
                with layer.transaction() as cur:
                    cur.execute(
                        f"SELECT entity, source_key FROM {q(DERIVE_TABLE)} "
                        "WHERE contract = %s ORDER BY queued_at",
                        (self.contract,),
                    )
                    return [(str(e), str(k)) for e, k in cur.fetchall()]

            layer.mysql_call(self._ensure)
            idents = layer.mysql_call(pending)
        done = 0
        for entity, source_key in dict.fromkeys(idents):
            refresh = Refresh(entity, json.loads(source_key))
            layer.mysql_call(lambda r=refresh: self._derive_one(r))
            done += 1
        return done

    def _derive_one(self, refresh: Refresh) -> None:
        """Derive one queued item and take it off the queue, in one MySQL transaction: the
        source row locked first (as the transactions that change it), then its queue row."""
        layer = self.layer
        entity = layer.entities.get(refresh.entity)
        with layer.transaction() as cur:
            exists = mysql_store.lock_row(cur, entity, refresh.source_key)
            cur.execute(
                f"SELECT 1 FROM {q(DERIVE_TABLE)} WHERE contract = %s AND entity = %s "
                "AND source_key = %s FOR UPDATE",
                (self.contract, *refresh.ident()),
            )
            if cur.fetchone() is None:
                return  # another follower derived it after the change
            if exists:
                self._derive(cur, refresh)
            cur.execute(
                f"DELETE FROM {q(DERIVE_TABLE)} WHERE contract = %s AND entity = %s "
                "AND source_key = %s",
                (self.contract, *refresh.ident()),
            )

    def _derive(self, cur: Any, refresh: Refresh) -> None:
        """Set the item's derived attributes to what MySQL derives now, with the source row
        locked by the caller (two followers of one row take turns, the later one sees both
        changes)."""
        layer = self.layer
        entity = layer.entities.get(refresh.entity)
        names = derived_attributes(entity)
        if not names:
            return
        where = {k: [v] for k, v in refresh.source_key.items()}
        item = next((b for b in layer.deriver.derive(cur, entity, where) if isinstance(b, Item)),
                    None)  # fmt: skip
        if item is None:
            return
        body = json.loads(item.body)
        table = entity.table
        key = {table.pk: item.pk, **({table.sk: item.sk or ""} if table.sk else {})}
        want = {n: body.get(n) for n in names}
        for _ in range(DERIVED_ATTEMPTS):
            current = layer.dynamodb_call(lambda: layer.dynamo.get(table, key))
            if current is None or all(current.get(n) == v for n, v in want.items()):
                return
            read = version_number((current.get(VERSION_ATTRIBUTE) or {}).get("N"))
            version = (read or 0) + 1
            if layer.dynamodb_call(
                lambda c=current, r=read, v=version: layer.dynamo.update_attributes(
                    table, key, {n: w for n, w in want.items() if c.get(n) != w}, r, v)
            ):  # fmt: skip
                return
        log.warning("%s %s: its derived attributes kept changing; the reconcile repairs them",
                    entity.name, key)  # fmt: skip

    # --- quarantine ----------------------------------------------------------------------

    def _quarantine(self, record: str | None, changes: list[Change], reason: str) -> None:
        layer = self.layer
        name = QUARANTINE_PREFIX + (record or f"LAYER#{uuid.uuid4().hex}")
        item = {"contract": {"S": self.contract}, "record": {"S": name},
                "reason": {"S": reason},
                "payload": {"S": json.dumps({"changes": [c.to_json() for c in changes]},
                                            default=str)},
                "at": {"N": str(int(time.time()))}}  # fmt: skip
        layer.dynamodb_call(lambda: layer.dynamo.call(
            "PutItem", {"TableName": layer.dynamo.control, "Item": item}))  # fmt: skip


def quarantined(layer: DualDatabase) -> list[dict[str, Any]]:
    """The change records MySQL refused in phase 4, with their reasons."""
    dynamo = layer.dynamo
    body: dict[str, Any] = {
        "TableName": dynamo.control,
        "KeyConditionExpression": "#c = :c AND begins_with(#r, :q)",
        "ExpressionAttributeNames": {"#c": "contract", "#r": "record"},
        "ExpressionAttributeValues": {":c": {"S": layer.contract.name},
                                      ":q": {"S": QUARANTINE_PREFIX}},
        "ConsistentRead": True,
    }  # fmt: skip
    out: list[dict[str, Any]] = []
    while True:
        page = dynamo.call("Query", body).json()
        for i in page.get("Items", []):
            out.append({"record": i["record"]["S"].removeprefix(QUARANTINE_PREFIX),
                        "reason": i["reason"]["S"],
                        "changes": json.loads(i["payload"]["S"])["changes"]})  # fmt: skip
        if not page.get("LastEvaluatedKey"):
            return out
        body["ExclusiveStartKey"] = page["LastEvaluatedKey"]
