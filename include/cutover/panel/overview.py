"""What the Migrations panel shows of one contract, gathered from the phase store (phase,
history, evidence, the routing layer's series) and the stages' last reports. Plain dicts:
the JSON API returns them as they are and the page renders them. Nothing here imports
Airflow; its runs and approvals come from ``cutover.panel.airflow_state``."""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cutover.contract.model import Contract
from cutover.errors import CutoverError
from cutover.phases.gate import REQUIRED, decide, evidence_age_hours, evidence_problems
from cutover.phases.model import FLAGS, Phase
from cutover.settings import Settings

if TYPE_CHECKING:
    from cutover.extract.staging import Staging

log = logging.getLogger("cutover.panel")

DAG_SUFFIXES = ("prepare", "backfill", "validate", "reconcile", "sync", "phase_gate", "rollback")
MAX_DIFFERENCES = 20


@dataclass(frozen=True)
class ContractEntry:
    """A contract file as the panel knows it: its name and DAG ids even when the file is
    broken (``error`` then says why), so access checks still apply."""

    name: str
    path: Path
    contract: Contract | None
    error: str | None = None

    def dag_id(self, suffix: str) -> str:
        return f"{self.name}__{suffix}"

    @property
    def dag_ids(self) -> list[str]:
        return [self.dag_id(s) for s in DAG_SUFFIXES]


def contract_entries(directory: Path) -> list[ContractEntry]:
    """Every contract file of ``directory``, loaded; a broken file stays an entry with its
    error (named as the DAG factory names it: ``cutover.name`` or the file's stem)."""
    from cutover.contract.load import load_contract

    out = []
    for path in sorted(directory.glob("*.json")):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            name = str((doc.get("cutover") or {}).get("name") or path.stem)
        except (OSError, ValueError, AttributeError):
            name = path.stem
        try:
            out.append(ContractEntry(name, path, load_contract(str(path))))
        except CutoverError as exc:
            out.append(ContractEntry(name, path, None, error=str(exc)))
    return out


def _phase(n: int) -> dict[str, Any]:
    return {"number": n, "name": Phase(n).slug}


def track(current: Phase) -> list[dict[str, Any]]:
    """The five phases with where the contract stands."""
    return [
        {**_phase(p.value), "flags": FLAGS[p].to_dict(),
         "state": "current" if p == current else ("done" if p < current else "ahead")}
        for p in Phase
    ]  # fmt: skip


def _figures(ev: dict[str, Any]) -> dict[str, Any]:
    """An evidence item's scalar figures (its lists and maps are shown elsewhere)."""
    return {k: v for k, v in ev.items()
            if k not in ("kind", "recorded_at") and not isinstance(v, dict | list)}  # fmt: skip


def next_gate(contract: Contract, current: Phase, evidence: dict[str, Any]) -> dict[str, Any]:
    """The gate policy of the next forward move: the verdict, and each evidence item with
    its age and whether it passes."""
    if current == Phase.DYNAMODB_ONLY:
        return {"target": None, "allowed": False, "reasons": ["the migration is complete"],
                "evidence": []}  # fmt: skip
    target = Phase(current + 1)
    gate = contract.cutover.gate
    now = dt.datetime.now(dt.UTC)
    decision = decide(current, target, evidence, gate, now)
    items = []
    for kind in REQUIRED[target]:
        ev = evidence.get(kind)
        problems = evidence_problems(kind, ev, gate, now, evidence.get("changed_keys"))
        items.append({
            "kind": kind,
            "recorded_at": ev.get("recorded_at") if ev else None,
            "age_hours": round(evidence_age_hours(ev, now), 2) if ev else None,
            "passes": not problems,
            "problems": problems,
            "figures": _figures(ev) if ev else {},
        })  # fmt: skip
    return {
        "target": _phase(target.value),
        "allowed": decision.allowed,
        "reasons": decision.reasons,
        "evidence": items,
        "policy": gate.model_dump(),
    }


def read_report(staging: Staging, name: str, kind: str) -> dict[str, Any] | None:
    """The contract's last report of a stage from the storage URL; None before the first."""
    from cutover.stages import report_parts

    parts = report_parts(name, kind)
    try:
        return staging.read_json_if_exists(*parts)
    except (OSError, ValueError) as exc:
        log.warning("cannot read %s: %s", staging.uri(*parts), exc)
        return {"unreadable": f"{parts[-1]}: {exc}"}


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return (dt.datetime.fromisoformat(end) - dt.datetime.fromisoformat(start)).total_seconds()


def backfill_summary(manifest: dict[str, Any] | None) -> dict[str, Any] | None:
    """The last backfill: rows, items, items/s, duration, quarantined rows by reason, and
    each partition's load throughput (the chart's bars)."""
    if manifest is None or "unreadable" in manifest:
        return manifest
    load = manifest.get("load") or {}
    seconds = _seconds(manifest.get("planned_at"), manifest.get("finished_at"))
    items = int(manifest.get("items_loaded") or 0)
    partitions = []
    for part in manifest.get("partitions") or []:
        loaded = part.get("load") or {}
        secs = loaded.get("seconds")
        written = loaded.get("items") or 0
        partitions.append({
            "id": part.get("id"),
            "items": written,
            "seconds": secs,
            "items_per_s": round(written / secs, 1) if secs else None,
            "finished_at": loaded.get("finished_at"),
        })  # fmt: skip
    return {
        "run_id": manifest.get("run_id"),
        "finished_at": manifest.get("finished_at"),
        "rows": manifest.get("rows_extracted"),
        "items": items,
        "items_per_entity": manifest.get("items_per_entity") or {},
        "duration_s": round(seconds, 1) if seconds is not None else None,
        "items_per_s": load.get("items_per_s") or (round(items / seconds, 1) if seconds else None),
        "quarantined": manifest.get("quarantined", 0),
        "quarantine_reasons": manifest.get("quarantine_reasons") or {},
        "gate_passed": (manifest.get("gate") or {}).get("passed"),
        "partitions": partitions,
    }


def _difference(table: str, diff: dict[str, Any]) -> dict[str, Any]:
    return {
        "table": table,
        "kind": diff.get("kind"),
        "entity": diff.get("entity"),
        "pk": diff.get("PK"),
        "sk": diff.get("SK"),
        "attributes": diff.get("attributes") or [],
        "mysql": diff.get("expected"),
        "dynamodb": diff.get("actual"),
    }


def validation_summary(report: dict[str, Any] | None) -> dict[str, Any] | None:
    """Pass/fail per table and suite, the failed expectations and the differing keys with
    both sides' values."""
    if report is None or "unreadable" in report:
        return report
    tables, differences = [], []
    for t in report.get("tables") or []:
        parity = t.get("parity") or {}
        tables.append({
            "table": t.get("table"),
            "success": t.get("success"),
            "exported_items": t.get("exported_items"),
            "entities": {e: {"expected": v.get("expected"), "actual": v.get("actual"),
                             "missing": v.get("missing"), "extra": v.get("extra"),
                             "mismatched": v.get("mismatched"),
                             "value_parity": v.get("value_parity")}
                         for e, v in (parity.get("entities") or {}).items()},
            "suites": [{"suite": s.get("suite"), "success": s.get("success"),
                        "failed_expectations": s.get("failed_expectations") or []}
                       for s in t.get("suites") or []],
        })  # fmt: skip
        differences += [_difference(t.get("table"), d) for d in parity.get("differences") or []]
    return {
        "started_at": report.get("started_at"),
        "finished_at": report.get("finished_at"),
        "success": report.get("success"),
        "sample": report.get("sample"),
        "tables": tables,
        "differences": differences[:MAX_DIFFERENCES],
        "differences_total": len(differences),
    }


def reconciliation_summary(result: dict[str, Any] | None) -> dict[str, Any] | None:
    if result is None or "unreadable" in result:
        return result
    final = result.get("after") or result.get("before")
    return {
        "success": result.get("success"),
        "phase": result.get("phase"),
        "source_of_truth": result.get("source_of_truth"),
        "repaired": result.get("repaired") or {},
        "replay": result.get("replay"),
        "skipped": result.get("skipped"),
        "validation": validation_summary(final) if final else None,
    }


def routing_series(store: Any, name: str) -> dict[str, list[dict[str, Any]]]:
    """Shadow-read mismatch rate and dual-write outbox depth over time."""
    shadow = [
        {"at": p["recorded_at"], "phase": p.get("phase"), "rate": p.get("mismatch_rate"),
         "compared": p.get("comparisons"), "mismatched": p.get("mismatches")}
        for p in store.series(name, "shadow_reads")
    ]  # fmt: skip
    outbox = [
        {"at": p["recorded_at"], "phase": p.get("phase"), "depth": p.get("outbox_depth"),
         "error_rate": p.get("error_rate"), "writes": p.get("writes")}
        for p in store.series(name, "dual_writes")
    ]  # fmt: skip
    return {"shadow_reads": shadow, "outbox": outbox}


def sync_summary(
    store: Any,
    name: str,
    evidence: dict[str, Any],
    limit_seconds: float | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """The binlog sync: its last report as recorded (lag, events and bytes behind, applied
    per second, position, error), how old that report is, its lag over time, and the gate's
    limit (``max_sync_lag_seconds``)."""
    last = evidence.get("sync")
    age = evidence_age_hours(last, now) * 3600 if last else None
    series = [
        {"at": p["recorded_at"], "lag_seconds": p.get("lag_seconds"),
         "events_behind": p.get("events_behind"), "bytes_behind": p.get("bytes_behind"),
         "applied_per_second": p.get("applied_per_second"), "error": p.get("error")}
        for p in store.series(name, "sync")
    ]  # fmt: skip
    return {
        "last": last,
        "age_seconds": round(max(age, 0.0), 1) if age is not None else None,
        "series": series,
        "limit_seconds": limit_seconds,
    }


def history(store: Any, name: str) -> list[dict[str, Any]]:
    """Transitions, newest first: who, when, why, the evidence, and whether it was a CLI
    override (``--approved-by``)."""
    out = []
    for entry in reversed(store.history(name)):
        actor = str(entry.get("actor") or "")
        out.append({
            "at": entry.get("at"),
            "kind": entry.get("kind"),
            "from": _phase(entry["from"]) if entry.get("from") else None,
            "to": _phase(entry["to"]) if entry.get("to") else None,
            "actor": actor,
            "approved_by": entry.get("approved_by"),
            "reason": entry.get("reason"),
            "cli_override": not actor.startswith("airflow:") and bool(entry.get("approved_by")),
            "evidence": entry.get("evidence"),
        })  # fmt: skip
    return out


def summary(entry: ContractEntry, store: Any) -> dict[str, Any]:
    """A contract's line in the list: name, phase number and name, flags, next gate."""
    out: dict[str, Any] = {"name": entry.name, "file": entry.path.name, "error": entry.error}
    if entry.contract is None:
        return out
    state = store.get(entry.name)
    gate = next_gate(entry.contract, state.phase, store.evidence(entry.name))
    return {
        **out,
        "phase": _phase(state.phase.value),
        "flags": FLAGS[state.phase].to_dict(),
        "version": state.version,
        "updated_at": state.updated_at or None,
        "next_gate": {"target": gate["target"], "allowed": gate["allowed"],
                      "reasons": gate["reasons"]},
    }  # fmt: skip


def detail(entry: ContractEntry, store: Any, reports: Staging) -> dict[str, Any]:
    """Everything the contract's page shows, but Airflow's runs and approvals."""
    out = summary(entry, store)
    if entry.contract is None:
        return out
    state = store.get(entry.name)
    evidence = store.evidence(entry.name)
    return {
        **out,
        "state": state.to_dict(),
        "track": track(state.phase),
        "next_gate": next_gate(entry.contract, state.phase, evidence),
        "tables": [t.table for t in entry.contract.tables],
        "backfill": backfill_summary(read_report(reports, entry.name, "backfill")),
        "validation": validation_summary(read_report(reports, entry.name, "validate")),
        "reconciliation": reconciliation_summary(read_report(reports, entry.name, "reconcile")),
        "routing": routing_series(store, entry.name),
        "sync": sync_summary(
            store, entry.name, evidence, entry.contract.cutover.gate.max_sync_lag_seconds
        ),
        "history": history(store, entry.name),
    }


def store_for(settings: Settings) -> Any:
    from cutover.phases.store import phase_store

    return phase_store(settings)
