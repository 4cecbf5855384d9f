"""The migration stages as one call each: run the library function, write its report, and
record its evidence in the phase store. The `cutover` commands and the DAG tasks call these,
so what the CLI proves holds for the DAG."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from cutover.contract.model import Contract
from cutover.extract.staging import Staging
from cutover.phases.store import phase_store as phase_store  # re-exported for the callers
from cutover.phases.store import record
from cutover.settings import Settings

log = logging.getLogger("cutover")


def _now() -> str:
    import datetime as dt

    return dt.datetime.now(dt.UTC).isoformat()


REPORTS = "reports"  # the folder of the stage reports under the storage URL


def report_parts(contract: str, name: str) -> tuple[str, str, str]:
    """Where a stage's last report lies under the storage URL: reports/<contract>/<name>.json."""
    return REPORTS, contract, f"{name}.json"


def write_report(staging: Staging, name: str, contract: str, payload: dict[str, Any]) -> str:
    """Write the stage's report to the storage URL (``CUTOVER_STAGING``); its URI."""
    parts = report_parts(contract, name)
    staging.write_text(json.dumps(payload, indent=2, default=str) + "\n", *parts)
    return staging.uri(*parts)


def read_report(staging: Staging, contract: str, name: str) -> dict[str, Any] | None:
    """The stage's last report, or None when there is none yet."""
    report = staging.read_json_if_exists(*report_parts(contract, name))
    return report if isinstance(report, dict) else None


def run_prepare(contract: Contract, settings: Settings) -> dict[str, Any]:
    from cutover.prepare import prepare

    report = prepare(contract, settings).to_dict()
    report["report"] = write_report(Staging(settings.staging), "prepare", contract.name, report)
    record(settings, contract, "prepare", {"drifts": len(report["drifts"]),
                                           "changed": report["changed"]})  # fmt: skip
    return report


def backfill_evidence(manifest: dict[str, Any]) -> dict[str, Any]:
    return {
        "run_id": manifest["run_id"],
        "complete": all(p["load"] is not None for p in manifest.get("partitions", [])),
        "quarantined": manifest["quarantined"],
        "gate_passed": manifest["gate"]["passed"],
        "items_loaded": manifest["items_loaded"],
    }


def run_backfill(contract: Contract, settings: Settings, **kwargs: Any) -> dict[str, Any]:
    from cutover.backfill.driver import backfill

    manifest = backfill(contract, settings, **kwargs)
    manifest["report"] = write_report(Staging(settings.staging), "backfill", contract.name,
                                      manifest)  # fmt: skip
    record(settings, contract, "backfill", backfill_evidence(manifest))
    return manifest


def validation_evidence(report: dict[str, Any]) -> dict[str, Any]:
    return {
        "run_id": report["started_at"],
        "success": report["success"],
        "sample": report["sample"],
        "binlog_position": report.get("binlog_position"),
        "tables": {
            t["table"]: {e: round(v["value_parity"], 6) for e, v in t["parity"]["entities"].items()}
            for t in report["tables"]
        },
    }


def run_validate(contract: Contract, settings: Settings, report_path: str | None = None,
                 **kwargs: Any) -> dict[str, Any]:  # fmt: skip
    from cutover.validate.run import validate

    report = validate(contract, settings, **kwargs)
    return record_validation(contract, settings, report, report_path,
                             full=kwargs.get("tables") is None)  # fmt: skip


def record_validation(
    contract: Contract,
    settings: Settings,
    report: dict[str, Any],
    report_path: str | None = None,
    full: bool = True,
) -> dict[str, Any]:
    """Write a validation's report (to ``report_path``, else the storage URL's reports) and,
    for a validation of every table, record it as the gates' evidence."""
    if report_path:
        Path(report_path).parent.mkdir(parents=True, exist_ok=True)
        Path(report_path).write_text(json.dumps(report, indent=2, default=str) + "\n")
        report["report"] = report_path
    else:
        report["report"] = write_report(
            Staging(settings.staging), "validate", contract.name, report
        )
    if full:
        record(settings, contract, "validate", validation_evidence(report))
    return report


def run_changed_keys(contract: Contract, settings: Settings) -> dict[str, Any]:
    """Changed-key parity since the last full validation (or the last changed-key parity):
    its report, and its evidence with the age of the full validation it extends."""
    import datetime as dt

    from cutover.validate.changed_keys import changed_key_parity, since_last_check

    evidence = phase_store(settings).evidence(contract.name)
    result = changed_key_parity(contract, settings, since_last_check(evidence))
    result["report"] = write_report(Staging(settings.staging), "changed_keys", contract.name,
                                    result)  # fmt: skip
    validated = (evidence.get("validate") or {}).get("run_id")
    age = None
    if validated:
        age = (dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(validated)).total_seconds()
    record(settings, contract, "changed_keys", {
        "run_id": result["run_id"], "success": result["success"], "since": result["since"],
        "until": result["until"], "items_compared": result["items_compared"],
        "differences": result["missing"] + result["extra"] + result["mismatched"],
        "not_covered": result["not_covered"], "validated_at": validated,
        "validation_age_seconds": None if age is None else round(age)})  # fmt: skip
    return result


def run_reconcile(contract: Contract, settings: Settings, **kwargs: Any) -> dict[str, Any]:
    from cutover.validate.reconcile import reconcile

    result = reconcile(contract, settings, **kwargs)
    result["report"] = write_report(Staging(settings.staging), "reconcile", contract.name, result)
    final = result["after"] or result["before"] or {"started_at": _now()}
    if kwargs.get("tables") is None:
        record(settings, contract, "reconcile", {
            "run_id": final["started_at"], "success": result["success"],
            "repaired": result["repaired"], "phase": result.get("phase"),
            "replay": result.get("replay"), "repair_held": result.get("repair_held")})  # fmt: skip
    return result
