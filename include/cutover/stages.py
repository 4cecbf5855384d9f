"""The migration stages as one call each: run the library function, write its report, and
record its evidence in the phase store. The `cutover` commands and the DAG tasks call these,
so what the CLI proves holds for the DAG."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from cutover.contract.model import Contract
from cutover.settings import LOCAL_DIR, Settings

log = logging.getLogger("cutover")


def _now() -> str:
    import datetime as dt

    return dt.datetime.now(dt.UTC).isoformat()


def reports_dir() -> Path:
    """Where stage reports go: ``CUTOVER_REPORTS_DIR``, else .local/reports."""
    return Path(os.environ.get("CUTOVER_REPORTS_DIR") or LOCAL_DIR / "reports")


def write_report(name: str, contract: str, payload: dict[str, Any]) -> Path:
    path = reports_dir() / contract / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def phase_store(settings: Settings) -> Any:
    from cutover.aws import dynamodb_client
    from cutover.phases.store import PhaseStore

    return PhaseStore(dynamodb_client(settings), settings.table_prefix)


def record(settings: Settings, contract: Contract, kind: str, payload: dict[str, Any]) -> None:
    phase_store(settings).record_evidence(contract.name, kind, payload)


def run_prepare(contract: Contract, settings: Settings) -> dict[str, Any]:
    from cutover.prepare import prepare

    report = prepare(contract, settings).to_dict()
    report["report"] = str(write_report("prepare", contract.name, report))
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
    manifest["report"] = str(write_report("backfill", contract.name, manifest))
    record(settings, contract, "backfill", backfill_evidence(manifest))
    return manifest


def validation_evidence(report: dict[str, Any]) -> dict[str, Any]:
    return {
        "run_id": report["started_at"],
        "success": report["success"],
        "sample": report["sample"],
        "tables": {
            t["table"]: {e: round(v["value_parity"], 6) for e, v in t["parity"]["entities"].items()}
            for t in report["tables"]
        },
    }


def run_validate(contract: Contract, settings: Settings, report_path: str | None = None,
                 **kwargs: Any) -> dict[str, Any]:  # fmt: skip
    from cutover.validate.run import validate

    report = validate(contract, settings, **kwargs)
    if report_path:
        Path(report_path).parent.mkdir(parents=True, exist_ok=True)
        Path(report_path).write_text(json.dumps(report, indent=2, default=str) + "\n")
        report["report"] = report_path
    else:
        report["report"] = str(write_report("validate", contract.name, report))
    if kwargs.get("tables") is None:
        record(settings, contract, "validate", validation_evidence(report))
    return report


def run_reconcile(contract: Contract, settings: Settings, **kwargs: Any) -> dict[str, Any]:
    from cutover.validate.reconcile import reconcile

    result = reconcile(contract, settings, **kwargs)
    result["report"] = str(write_report("reconcile", contract.name, result))
    final = result["after"] or result["before"] or {"started_at": _now()}
    if kwargs.get("tables") is None:
        record(settings, contract, "reconcile", {
            "run_id": final["started_at"], "success": result["success"],
            "repaired": result["repaired"], "phase": result.get("phase"),
            "replay": result.get("replay")})  # fmt: skip
    return result
