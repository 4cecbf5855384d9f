"""Repair drift, following the phase: first replay what the routing layer's outboxes hold,
then compare, then repair the store that does not answer reads from the one that does
(``source_of_truth``): DynamoDB from MySQL in phases 1-3, MySQL from DynamoDB in phase 4. In
phase 5 MySQL is retired and reconcile no longer reads or writes it."""

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


def reconcile(
    contract: Contract,
    settings: Settings,
    *,
    repair: bool = False,
    sample: float | None = None,
    tables: list[str] | None = None,
) -> dict[str, Any]:
    """Replay the outboxes, validate; with ``repair``, fix every listed difference in the
    non-authoritative store and validate again (repeating while a pass still finds more than
    one batch of differences)."""
    from cutover.phases.model import Phase, source_of_truth
    from cutover.routing.replay import repair_mysql, replay
    from cutover.stages import phase_store

    phase = phase_store(settings).get(contract.name).phase
    truth = source_of_truth(phase)
    dual = Phase.DUAL_WRITE <= phase < Phase.DYNAMODB_ONLY
    replayed = replay(contract, settings) if dual else None
    if phase == Phase.DYNAMODB_ONLY:
        return {"contract": contract.name, "phase": phase.value, "source_of_truth": truth,
                "repair": repair, "replay": replayed, "repaired": {}, "before": None,
                "after": None, "success": True,
                "skipped": "phase 5: MySQL is retired; nothing to compare"}  # fmt: skip
    before = validate(contract, settings, sample=sample, max_keys=REPAIR_BATCH, tables=tables)
    repaired: Counter[str] = Counter()
    report = before
    passes = 0
    while repair and not report["success"] and passes < 5:
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
        "repaired": dict(repaired),
        "before": _trim(before),
        "after": _trim(report) if repair and passes else None,
        "success": report["success"],
    }
