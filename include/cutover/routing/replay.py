"""Replaying what MySQL missed in phase 4, and repairing MySQL from DynamoDB.

* ``replay``: DynamoDB's outbox (phase 4: the change records MySQL follows), oldest first,
  through the same ``MySQLFollower`` the layer uses right after each write. Each entry is
  idempotent: a row change is applied only where it is newer than what MySQL applied to
  the row (per column; ``mysql_follower.follow_plan``), and an entry MySQL already has
  (noted in ``cutover_outbox_applied``) is not applied again. A change MySQL refuses is
  quarantined and the replay goes on; an entry that fails because MySQL is down stays,
  with the ones after it. (In phases 1-3 there is
  nothing to replay: DynamoDB follows MySQL's binlog, ``cutover.sync``.)
* ``repair_mysql``: in phase 4 DynamoDB is the source of truth; rows whose plain columns
  differ from the item are rewritten from it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections import Counter
from contextlib import suppress
from typing import Any

from cutover.contract.model import Contract
from cutover.db import connect
from cutover.routing import mysql_store
from cutover.routing.changes import Change, apply
from cutover.routing.entities import Entities
from cutover.routing.layer import DualDatabase, python_value
from cutover.routing.mysql_follower import Ahead, quarantined
from cutover.settings import Settings
from cutover.transform.items import VERSION_ATTRIBUTE
from cutover.validate.canonical import EntityClassifier

EPOCH = dt.datetime(1970, 1, 1)
# notes of applied DynamoDB outbox entries are kept a week: replay removes an entry long
# before that
APPLIED_RETENTION_DAYS = 7

log = logging.getLogger("cutover.routing")


def _layer(contract: Contract, settings: Settings) -> DualDatabase:
    return DualDatabase(contract, settings, shadow_rate=0.0)


def replay(contract: Contract, settings: Settings) -> dict[str, Any]:
    """Drain DynamoDB's outbox into MySQL; returns counts and what is left."""
    layer = _layer(contract, settings)
    counts: Counter[str] = Counter()
    error = None
    try:
        while True:
            entries = layer.dynamo.outbox_pending(contract.name)
            if not entries:
                break
            waiting: list[str] = []
            for record, payload in entries:
                changes = [Change.from_json(c) for c in payload["changes"]]
                versions = {int(i): v for i, v in payload.get("versions", {}).items()}
                try:
                    outcome = layer.follower.apply(record, changes, versions, strict=True)
                except Ahead as exc:  # an older change of its row comes later in the outbox
                    waiting.append(f"{record}: {exc}")
                    continue
                counts["dynamodb_outbox"] += 1
                counts[outcome] += 1
            if waiting and len(waiting) == len(entries):  # nothing moved: it would never
                raise Ahead(f"{len(waiting)} records wait for changes not in the outbox: "
                            + "; ".join(waiting[:3]))  # fmt: skip
        if derived := layer.follower.derive_queued():
            counts["derived"] += derived
        with layer.transaction() as cur:
            if mysql_store.applied_table_exists(cur) and (
                pruned := mysql_store.prune_applied(cur, contract.name, APPLIED_RETENTION_DAYS)
            ):
                counts["pruned"] += pruned
    except Exception as exc:  # reported; the entries stay for the next run
        error = str(exc)
        log.warning("outbox replay stopped: %s", exc)
    finally:
        left = layer.outbox_depth()
        refused = None
        with suppress(Exception):  # DynamoDB not answering: unknown
            refused = len(quarantined(layer))
        layer.close()
    return {"replayed": dict(counts), "left": left, "error": error, "quarantined": refused}


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
