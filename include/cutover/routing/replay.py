"""Replaying what the second store missed, and repairing MySQL from DynamoDB.

* ``replay``: the MySQL outbox (phases 2-3: items to bring up to date in DynamoDB) and the
  DynamoDB outbox (phase 4: row changes to apply to MySQL), oldest first. Each entry is
  idempotent: an item is re-derived from its row under the row's lock and put only where
  DynamoDB does not hold a newer version; a row change is applied only where MySQL does not
  hold a newer one, and a DynamoDB entry MySQL already has (noted in
  ``cutover_outbox_applied`` by the transaction that applied it: a removal that failed, or a
  fallback write after a transaction whose answer was lost) is not applied again, its items
  only derived anew. An entry that fails stays, and so do the ones after it.
* ``converge_since``: every change the application made since a backfill started, applied
  again over the backfill's snapshot, so that the snapshot neither brings back an item the
  application deleted nor leaves an older copy over a newer one.
* ``repair_mysql``: in phase 4 DynamoDB is the source of truth; rows whose plain columns
  differ from the item are rewritten from it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections import Counter
from typing import Any

from cutover.contract.model import Contract
from cutover.db import connect
from cutover.routing import mysql_store
from cutover.routing.changes import Change, apply
from cutover.routing.entities import Entities
from cutover.routing.layer import DualDatabase, WriteResult, python_value
from cutover.settings import Settings
from cutover.transform.items import VERSION_ATTRIBUTE
from cutover.validate.canonical import EntityClassifier

EPOCH = dt.datetime(1970, 1, 1)
# applied outbox rows are the change log a backfill under dual writes replays; a week covers
# any backfill run
OUTBOX_RETENTION_DAYS = 7

log = logging.getLogger("cutover.routing")


def _layer(contract: Contract, settings: Settings) -> DualDatabase:
    return DualDatabase(contract, settings, shadow_rate=0.0)


def replay(contract: Contract, settings: Settings) -> dict[str, Any]:
    """Drain both outboxes; returns counts and what is left."""
    layer = _layer(contract, settings)
    counts: Counter[str] = Counter()
    error = None
    try:
        layer.ensure_outbox()
        while True:
            with layer.transaction() as cur:
                batch = mysql_store.pending(cur, contract.name)
            if not batch:
                break
            for ident, refresh in batch:
                layer.refresh(refresh)
                with layer.transaction() as cur:
                    mysql_store.mark_applied(cur, [ident])
                counts["mysql_outbox"] += 1
        with layer.transaction() as cur:
            if pruned := mysql_store.prune(cur, contract.name, OUTBOX_RETENTION_DAYS):
                counts["pruned"] += pruned
        while True:
            entries = layer.dynamo.outbox_pending(contract.name)
            if not entries:
                break
            for record, payload in entries:
                changes = [Change.from_json(c) for c in payload["changes"]]
                layer.apply_to_mysql(changes, record, WriteResult(0))
                counts["dynamodb_outbox"] += 1
    except Exception as exc:  # reported; the entries stay for the next run
        error = str(exc)
        log.warning("outbox replay stopped: %s", exc)
    finally:
        left = layer.outbox_depth()
        layer.close()
    return {"replayed": dict(counts), "left": left, "error": error}


def converge_since(contract: Contract, settings: Settings, since: str) -> dict[str, int]:
    """Re-derive every item the application changed since ``since`` (UTC, ISO)."""
    conn = connect(settings.mysql)
    try:
        with conn.cursor() as cur:
            if not mysql_store.outbox_exists(cur):
                return {"changes": 0}
            # a minute of margin for the clocks of MySQL and of the run's host
            start = dt.datetime.fromisoformat(since).astimezone(dt.UTC).replace(tzinfo=None)
            start -= dt.timedelta(minutes=1)
            refreshes = mysql_store.changed_since(cur, contract.name, start.isoformat(" "))
    finally:
        conn.close()
    if not refreshes:
        return {"changes": 0}
    layer = _layer(contract, settings)
    try:
        seen: set[tuple[str, str]] = set()
        for refresh in reversed(refreshes):  # the newest entry of a key carries its before_key
            if refresh.ident() in seen and refresh.before_key is None:
                continue
            seen.add(refresh.ident())
            layer.refresh(refresh)
    finally:
        layer.close()
    return {"changes": len(refreshes), "items": len(seen)}


def repair_mysql(
    contract: Contract, settings: Settings, diffs: list[tuple[str, dict[str, Any]]]
) -> Counter[str]:
    """Phase 4: make MySQL rows agree with DynamoDB's items in their plain columns (an item
    MySQL lacks is inserted from them, a row DynamoDB lacks is deleted). Differences in
    derived attributes cannot be written back and are counted as ``unrepairable``."""
    entities = Entities(contract)
    counts: Counter[str] = Counter()
    conn = connect(settings.mysql)
    try:
        for table_name, diff in diffs:
            table = entities.table(table_name)
            entity = entities.by_name.get(EntityClassifier(table)(diff["PK"], diff.get("SK")))
            if entity is None:
                counts["unrepairable"] += 1
                continue
            item = json.loads(diff["actual"] or diff["expected"])
            plain = {col: python_value(item[a]) for a, col in entity.plain.items() if a in item}
            try:
                key = {c: plain[c] for c in entity.key_columns().values()}
            except KeyError:
                counts["unrepairable"] += 1
                continue
            values = {c: v for c, v in plain.items() if c not in key}
            if diff["kind"] == "missing":
                change = Change(entity.source_table, "delete", key)
            elif diff["kind"] == "extra":
                change = Change(entity.source_table, "put", key, values)
            else:
                differing = {a["attribute"] for a in diff["attributes"]} - {VERSION_ATTRIBUTE}
                if not differing & set(entity.plain):
                    counts["derived"] += 1  # read from other rows: repaired with them
                    continue
                change = Change(entity.source_table, "update", key, values)
            version = item.get(VERSION_ATTRIBUTE)
            if entity.version_column and version and change.op != "delete":
                micros = int(version["N"])
                change.values[entity.version_column] = EPOCH + dt.timedelta(microseconds=micros)
            try:
                with conn.cursor() as cur:
                    apply(cur, change, None, guard=False)
                counts[f"mysql_{change.op}"] += 1
            except Exception as exc:
                log.warning("cannot repair %s %s in MySQL: %s", entity.name, key, exc)
                counts["unrepairable"] += 1
    finally:
        conn.close()
    return counts
