"""Gate policy: which evidence a forward move needs, how fresh, and what thresholds it must
meet (from the contract's gate section). A gate that says no lists every reason."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from cutover.contract.model import GatePolicy
from cutover.phases.model import Phase

# evidence kinds each forward move rests on
REQUIRED: dict[Phase, tuple[str, ...]] = {
    Phase.DUAL_WRITE: ("prepare",),
    Phase.DUAL_READ_MYSQL_PRIMARY: ("backfill", "validate", "sync"),
    Phase.DUAL_READ_DYNAMODB_PRIMARY: ("reconcile", "shadow_reads", "sync"),
    Phase.DYNAMODB_ONLY: ("reconcile", "shadow_reads", "dual_writes"),
}


@dataclass(frozen=True)
class GateDecision:
    current: Phase
    target: Phase
    allowed: bool
    reasons: list[str] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        head = f"{self.current.slug} -> {self.target.slug}: "
        return head + ("evidence meets the gate" if self.allowed else "; ".join(self.reasons))


def _age_hours(recorded_at: str, now: dt.datetime) -> float:
    return (now - dt.datetime.fromisoformat(recorded_at)).total_seconds() / 3600


SYNC_CATCH_UP = "catch up with `cutover sync CONTRACT` or the `<contract>__sync` DAG"


def _sync_problems(ev: dict[str, Any], gate: GatePolicy, now: dt.datetime) -> list[str]:
    """The binlog sync's lag as of ``now``: its reported lag plus the report's age, since a
    sync that stopped reporting falls further behind every second."""
    out = []
    if ev.get("error"):
        out.append(f"the last sync run failed: {ev['error']}; fix that, then {SYNC_CATCH_UP}")
    if ev.get("lag_seconds") is None:
        return [*out, f"the sync evidence has no lag_seconds; {SYNC_CATCH_UP}"]
    lag = float(ev["lag_seconds"])
    age = max(_age_hours(ev["recorded_at"], now) * 3600, 0.0)
    limit = gate.max_sync_lag_seconds
    if lag + age > limit:
        out.append(
            f"sync lag is {lag + age:.1f} s ({lag:.1f} s when last reported, {age:.0f} s ago); "
            f"cutover.gate.max_sync_lag_seconds allows {limit:g} s: {SYNC_CATCH_UP}"
        )
    return out


def _check(kind: str, ev: dict[str, Any], gate: GatePolicy, now: dt.datetime) -> list[str]:
    if kind == "sync":
        return _sync_problems(ev, gate, now)
    if kind == "prepare":
        return [f"prepare found {ev.get('drifts')} table drift(s)"] if ev.get("drifts") else []
    if kind == "backfill":
        out = []
        if not ev.get("complete"):
            out.append(f"backfill run {ev.get('run_id')} is not complete")
        if ev.get("quarantined", 0) > gate.max_quarantined_rows:
            out.append(f"backfill quarantined {ev.get('quarantined')} rows; the gate allows "
                       f"{gate.max_quarantined_rows}")  # fmt: skip
        return out
    if kind in ("validate", "reconcile"):
        out = [] if ev.get("success") else [f"the last {kind} run failed"]
        if kind == "validate" and ev.get("sample"):
            out.append(f"the last validation was sampled ({ev['sample']}); a full run is needed")
        return out
    if kind == "shadow_reads":
        rate = float(ev.get("mismatch_rate", 1.0))
        limit = gate.max_shadow_mismatch_rate
        return (
            [] if rate <= limit else [f"shadow-read mismatch rate {rate:.4%} is over {limit:.4%}"]
        )
    if kind == "dual_writes":
        rate = float(ev.get("error_rate", 1.0))
        limit = gate.max_dual_write_error_rate
        out = [] if rate <= limit else [f"dual-write error rate {rate:.4%} is over {limit:.4%}"]
        if (refused := int(ev.get("follow_quarantined", 0))) > gate.max_quarantined_rows:
            out.append(f"MySQL refused {refused} of DynamoDB's changes in phase 4 (quarantined, "
                       f"see `cutover outbox quarantine`); the gate allows "
                       f"{gate.max_quarantined_rows}")  # fmt: skip
        return out
    return []


def extended_by(ev: dict[str, Any], changed: dict[str, Any] | None) -> bool:
    """Whether a passing changed-key parity (``changed``) checked every change made since the
    full validation ``ev``: then ``ev``'s verdict holds as of the changed-key parity's time."""
    return bool(
        changed
        and changed.get("success")
        and ev.get("run_id")
        and changed.get("validated_at") == ev.get("run_id")
    )


def evidence_problems(
    kind: str,
    ev: dict[str, Any] | None,
    gate: GatePolicy,
    now: dt.datetime | None = None,
    changed: dict[str, Any] | None = None,
) -> list[str]:
    """Why one evidence item does not meet the gate (missing, too old, or its figures);
    empty when it does. A validation is as fresh as the passing changed-key parity
    (``changed``) that extends it."""
    if ev is None:
        return [f"no {kind} evidence has been recorded"]
    now = now or dt.datetime.now(dt.UTC)
    out = []
    recorded = ev["recorded_at"]
    if kind == "validate" and changed is not None and extended_by(ev, changed):
        recorded = max(recorded, changed["recorded_at"])
    age = _age_hours(recorded, now)
    if age > gate.evidence_max_age_hours:
        out.append(f"{kind} evidence is {age:.1f} h old; the gate accepts "
                   f"{gate.evidence_max_age_hours:g} h")  # fmt: skip
    return out + _check(kind, ev, gate, now)


def evidence_age_hours(ev: dict[str, Any], now: dt.datetime | None = None) -> float:
    return _age_hours(ev["recorded_at"], now or dt.datetime.now(dt.UTC))


def decide(
    current: Phase,
    target: Phase,
    evidence: dict[str, dict[str, Any]],
    gate: GatePolicy,
    now: dt.datetime | None = None,
) -> GateDecision:
    now = now or dt.datetime.now(dt.UTC)
    if target != current + 1:
        return GateDecision(current, target, False, [
            f"forward moves go one step at a time: from {current.slug} the next phase is "
            + (Phase(current + 1).slug if current < Phase.DYNAMODB_ONLY else "none")])  # fmt: skip
    reasons: list[str] = []
    used: dict[str, Any] = {}
    for kind in REQUIRED[target]:
        ev = evidence.get(kind)
        if ev is not None:
            used[kind] = ev
        reasons.extend(evidence_problems(kind, ev, gate, now, evidence.get("changed_keys")))
    both = "backfill" in used and "validate" in used
    if both and used["validate"]["recorded_at"] < used["backfill"]["recorded_at"]:
        reasons.append("the validation is older than the backfill; validate again")
    return GateDecision(current, target, not reasons, reasons, used)
