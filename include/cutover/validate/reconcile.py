"""Repair drift, following the phase: first bring the store that follows up to date from the
other's log (phases 1-3: the binlog sync; phase 4: DynamoDB's outbox replayed into MySQL),
then compare, then repair the store that does not answer reads from the one that does
(``source_of_truth``): DynamoDB from MySQL in phases 1-3, MySQL from DynamoDB in phase 4. In
phase 5 MySQL is retired and reconcile no longer reads or writes it.

A repair is held, and says why, while that log has not been applied in full: in phase 4 a
write MySQL took while DynamoDB was down is in the outbox's wake, and rewriting MySQL from
DynamoDB before the replay has caught up would lose it in both stores."""

from __future__ import annotations

import json
import logging
from collections import Counter
from typing import Any

from cutover.contract.model import Contract
from cutover.contract.table_spec import attribute_types
from cutover.errors import TerminalError
from cutover.load.dynamo_http import DynamoHttp
from cutover.load.guarded_put import guarded_put
from cutover.settings import Settings
from cutover.transform.items import VERSION_ATTRIBUTE
from cutover.validate.run import differing_keys, validate

log = logging.getLogger("cutover.reconcile")
REPAIR_BATCH = 100_000
SHOWN_KEYS = 50


def _trim(report: dict[str, Any]) -> dict[str, Any]:
    for table in report["tables"]:
        table["parity"]["differences"] = table["parity"]["differences"][:SHOWN_KEYS]
    return report


def _repair_one(
    http: DynamoHttp, contract: Contract, settings: Settings, table_name: str, diff: dict[str, Any]
) -> str:
    table = contract.table(table_name)
    physical = settings.table_prefix + table_name
    if diff["kind"] == "extra":
        types = attribute_types(table)
        key = {table.pk: {types.get(table.pk, "S"): diff["PK"]}}
        if table.sk:
            key[table.sk] = {types.get(table.sk, "S"): diff["SK"]}
        reply = http.post("DeleteItem", json.dumps({"TableName": physical, "Key": key}))
        if reply.status != 200:
            raise TerminalError(f"DeleteItem on {physical} failed: {reply.body[:200]!r}")
        return "deleted"
    body = diff["expected"]
    version = json.loads(body).get(VERSION_ATTRIBUTE, {}).get("N")
    if version is not None:
        return (
            "put" if guarded_put(http, physical, body, int(version)) == "written" else "kept_newer"
        )
    reply = http.post("PutItem", '{"TableName":' + json.dumps(physical) + ',"Item":' + body + "}")
    if reply.status != 200:
        raise TerminalError(f"PutItem on {physical} failed: {reply.body[:200]!r}")
    return "put"


def _sync(contract: Contract, settings: Settings) -> dict[str, Any]:
    """Phases 1-3: DynamoDB brought to the binlog's end before it is compared, so that drift
    is not a change the sync has yet to apply; the sync's report (``unavailable`` when the
    server has no binlog: then repairing from MySQL is the only way, and it is not held)."""
    from cutover.binlog.position import NoBinlog
    from cutover.sync.runner import run_sync

    try:
        return run_sync(contract, settings, once=True)
    except NoBinlog as exc:
        return {"unavailable": str(exc)}
    except Exception as exc:  # held, with the reason
        return {"error": f"{type(exc).__name__}: {exc}"}


def _held(replayed: dict[str, Any] | None, synced: dict[str, Any] | None) -> str | None:
    """Why a repair must wait, or None."""
    if replayed and replayed.get("error"):
        return (f"the replay of DynamoDB's outbox into MySQL stopped ({replayed['error']}); "
                "repairing now could overwrite what it still holds: fix that, then "
                "`cutover outbox replay CONTRACT` and reconcile again")  # fmt: skip
    if replayed and replayed.get("left"):
        return (f"{replayed['left']} entries of DynamoDB's outbox are still to apply to MySQL; "
                "replay them (`cutover outbox replay CONTRACT`) and reconcile again")  # fmt: skip
    if synced and synced.get("error"):
        return (f"the binlog sync could not bring DynamoDB up to MySQL ({synced['error']}); "
                "repairing now would race it: fix that (`cutover sync --check CONTRACT`) and "
                "reconcile again")  # fmt: skip
    return None


def reconcile(
    contract: Contract,
    settings: Settings,
    *,
    repair: bool = False,
    sample: float | None = None,
    tables: list[str] | None = None,
) -> dict[str, Any]:
    """Apply the follower's log (see the module's docstring), validate; with ``repair``, fix
    every listed difference in the non-authoritative store and validate again (repeating
    while a pass still finds more than one batch of differences), unless the log could not
    be applied in full (``repair_held`` says why)."""
    from cutover.phases.model import Phase, source_of_truth
    from cutover.phases.store import phase_store
    from cutover.routing.replay import repair_mysql, replay

    phase = phase_store(settings).get(contract.name).phase
    truth = source_of_truth(phase)
    dual = Phase.DUAL_WRITE <= phase < Phase.DYNAMODB_ONLY
    replayed = replay(contract, settings) if dual else None
    synced = _sync(contract, settings) if phase < Phase.DUAL_READ_DYNAMODB_PRIMARY else None
    held = _held(replayed, synced) if repair else None
    if held:
        log.warning("repair held: %s", held)
    if phase == Phase.DYNAMODB_ONLY:
        return {"contract": contract.name, "phase": phase.value, "source_of_truth": truth,
                "repair": repair, "replay": replayed, "repaired": {}, "before": None,
                "after": None, "success": True,
                "skipped": "phase 5: MySQL is retired; nothing to compare"}  # fmt: skip
    before = validate(contract, settings, sample=sample, max_keys=REPAIR_BATCH, tables=tables)
    repaired: Counter[str] = Counter()
    report = before
    passes = 0
    while repair and not held and not report["success"] and passes < 5:
        diffs = differing_keys(report)
        if not diffs:
            break  # the failure is not a key difference (e.g. an independent check)
        if truth == "dynamodb":
            done = repair_mysql(contract, settings, diffs)
            # derived attributes follow once the rows they read are repaired; a pass that
            # wrote no row cannot change anything more
            derived = done.pop("derived", 0)
            repaired.update(done)
            if not any(k.startswith("mysql_") for k in done):
                repaired["unrepairable"] += derived
                break
        else:
            http = DynamoHttp(settings)
            try:
                for table_name, diff in diffs:
                    repaired[_repair_one(http, contract, settings, table_name, diff)] += 1
            finally:
                http.close()
        passes += 1
        log.info("repair pass %d: %s", passes, dict(repaired))
        report = validate(contract, settings, sample=sample, max_keys=REPAIR_BATCH, tables=tables)
    return {
        "contract": contract.name,
        "phase": phase.value,
        "source_of_truth": truth,
        "repair": repair,
        "replay": replayed,
        "sync": synced,
        "repair_held": held,
        "repaired": dict(repaired),
        "before": _trim(before),
        "after": _trim(report) if repair and passes else None,
        "success": report["success"],
    }
