"""Changed-key parity: between two full validations, the items whose source rows changed are
derived again from MySQL and compared with what DynamoDB holds, by point reads.

The changes are read from MySQL's binlog, from where the last full validation (or the last
changed-key parity) stood to now, and mapped to items as the sync maps them (the same
dependency index, the same derivation, ``Applier.derive``); nothing is written. What it
reads of DynamoDB is proportional to the changes, not to the table: one BatchGetItem key per
changed item. A change the index can only answer with "every item of the entity" (a
fallback) is not covered here; its entity is named, and the next full validation covers it.
Its result is gate evidence (``changed_keys``), with the age of the full validation it
extends."""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

from cutover.binlog.position import Position, current_position, is_mariadb
from cutover.contract.model import Contract
from cutover.db import connect
from cutover.errors import ConfigError
from cutover.load.dynamo_http import DynamoHttp
from cutover.routing.dynamo_store import DynamoStore, key_av
from cutover.settings import Settings
from cutover.sync.applier import Applier
from cutover.sync.mapper import DependencyIndex, Everything, cascades_of
from cutover.sync.reader import BinlogReader, Commit, Idle, Restarted, RowChange
from cutover.validate.canonical import canonical_item, differences
from cutover.validate.ddb_export import recheck_keys

log = logging.getLogger("cutover.validate")

KEPT_DIFFERENCES = 50


def _changed_refs(settings: Settings, index: DependencyIndex, start: Position, end: Position,
                  mariadb: bool) -> tuple[set[Any], int]:  # fmt: skip
    """The refs of every row change committed after ``start`` up to ``end``; and the rows."""
    reader = BinlogReader(settings.mysql, start, schema=settings.mysql.database,
                          tables=index.tables(), mariadb=mariadb)  # fmt: skip
    refs: set[Any] = set()
    pending: set[Any] = set()
    rows = 0
    try:
        if start.ordinal >= end.ordinal:
            return refs, 0
        for event in reader.events():
            if isinstance(event, RowChange):
                rows += 1
                pending.update(index.refs(event.table, event.before, event.after))
            elif isinstance(event, Restarted):
                pending = set()
            elif isinstance(event, Commit):
                refs |= pending
                pending = set()
                if event.position.ordinal >= end.ordinal:
                    break
            elif isinstance(event, Idle) and event.position.ordinal >= end.ordinal:
                break
    finally:
        reader.close()
    return refs, rows


def changed_key_parity(contract: Contract, settings: Settings, since: Position,
                       client: Any = None) -> dict[str, Any]:  # fmt: skip
    """Compare the items of the rows changed after ``since`` (a binlog position) with
    DynamoDB; ``client`` is the boto3 DynamoDB client it reads with (default: the settings')."""
    from cutover.aws import dynamodb_client

    client = client or dynamodb_client(settings)
    started = dt.datetime.now(dt.UTC)
    conn = connect(settings.mysql, read_timeout=120)
    http = DynamoHttp(settings)
    index = DependencyIndex(contract)
    applier = Applier(contract, index, DynamoStore(http, settings.table_prefix), workers=1)
    try:
        index.set_cascades(cascades_of(conn))
        end = current_position(conn)
        refs, rows = _changed_refs(settings, index, since, end, is_mariadb(conn))
        fallbacks = sorted({r.entity for r in refs if isinstance(r, Everything)})
        refs = {r for r in refs if not isinstance(r, Everything)}
        puts, removals, _ = applier.derive(conn, refs)
    finally:
        applier.close()
        http.close()
        conn.close()
    tables = {t.table: t for t in contract.tables}
    expected: dict[tuple[str, str], str | None] = {
        key: item.canonical for key, item in puts.items()
    }
    expected.update(dict.fromkeys(removals - set(puts)))
    by_table: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for table_name, key in expected:
        av = key_av(tables[table_name], json.loads(key))
        by_table.setdefault(table_name, []).append((key, av))
    found: list[dict[str, Any]] = []
    mismatched = missing = extra = reads = 0
    for table_name, keys in sorted(by_table.items()):
        now = recheck_keys(client, settings.table_prefix + table_name, [av for _, av in keys])
        reads += len(keys)
        for key, av in keys:
            item = now.get(canonical_item(av))
            actual = canonical_item(item) if item else None
            want = expected[(table_name, key)]
            if actual == want:
                continue
            kind = "missing" if actual is None else "extra" if want is None else "mismatch"
            mismatched += kind == "mismatch"
            missing += kind == "missing"
            extra += kind == "extra"
            if len(found) < KEPT_DIFFERENCES:
                found.append({"table": table_name, "kind": kind, "key": json.loads(key),
                              "attributes": differences(want, actual) if kind == "mismatch"
                              else []})  # fmt: skip
    result = {
        "run_id": started.isoformat(),
        "since": since.to_dict(),
        "until": end.to_dict(),
        "rows_changed": rows,
        "items_compared": len(expected),
        "reads": reads,
        "missing": missing,
        "extra": extra,
        "mismatched": mismatched,
        "differences": found,
        "not_covered": fallbacks,
        "success": not (missing or extra or mismatched),
        "finished_at": dt.datetime.now(dt.UTC).isoformat(),
    }
    log.info("changed-key parity of %s: %d rows changed, %d items compared, %d differ%s",
             contract.name, rows, len(expected), missing + extra + mismatched,
             f"; not covered (fallback): {', '.join(fallbacks)}" if fallbacks else "")  # fmt: skip
    return result


def since_last_check(evidence: dict[str, Any]) -> Position:
    """Where changed-key parity starts: the later of the last full validation's binlog
    position and the last changed-key parity's end. ConfigError when neither recorded one
    (run a full validation first)."""
    starts = [
        Position.from_dict(p)
        for p in (
            (evidence.get("validate") or {}).get("binlog_position"),
            (evidence.get("changed_keys") or {}).get("until"),
        )
        if p
    ]
    if not starts:
        raise ConfigError(
            "changed-key parity needs a full validation that recorded its binlog position: "
            "run `cutover validate` first"
        )
    return max(starts, key=lambda p: p.ordinal)


FULL_EVERY_DAYS = 7.0


def full_validation_due(evidence: dict[str, Any], now: dt.datetime,
                        every_days: float = FULL_EVERY_DAYS) -> str | None:  # fmt: skip
    """Why the nightly run must compare everything (a full reconcile) rather than the
    changed keys; None when changed-key parity will do: the last full comparison (validate
    or reconcile) passed less than ``every_days`` ago, recorded where the binlog stood, and
    no changed-key parity has failed since."""
    fulls = [
        (dt.datetime.fromisoformat(e["run_id"]), e)
        for kind in ("validate", "reconcile")
        if (e := evidence.get(kind)) and e.get("run_id")
    ]
    if not fulls:
        return "no full validation yet"
    when, last = max(fulls, key=lambda pair: pair[0])
    if not last.get("success"):
        return f"the last full comparison ({when.isoformat()}) failed"
    age_days = (now - when).total_seconds() / 86400
    if age_days >= every_days:
        return f"the last full comparison is {age_days:.1f} days old (every {every_days:g})"
    changed = evidence.get("changed_keys") or {}
    if changed and not changed.get("success"):
        return "the last changed-key parity found differences"
    try:
        since_last_check(evidence)
    except ConfigError as exc:
        return str(exc)
    return None
