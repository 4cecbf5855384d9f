"""Moving a contract between phases: forward through the gate, back without one.

The checks live here; the move itself is a callable with ``PhaseStore.move``'s signature:
by default the bare ``store.move`` (unfenced), and for the CLI and the gate DAG
``cutover.moves.phase_mover``, which fences the change and waits for the follower store."""

from __future__ import annotations

from typing import Any, Protocol

from cutover.contract.model import Contract
from cutover.errors import TerminalError
from cutover.phases.gate import GateDecision, decide
from cutover.phases.model import Phase
from cutover.phases.store import ConcurrentChange, PhaseState, PhaseStore


class GateRefused(TerminalError):
    def __init__(self, decision: GateDecision) -> None:
        self.decision = decision
        super().__init__("gate refused " + decision.summary())


class Mover(Protocol):
    def __call__(
        self,
        current: PhaseState,
        target: Phase,
        *,
        actor: str,
        kind: str,
        evidence: dict[str, Any] | None = None,
        approved_by: str | None = None,
        reason: str | None = None,
    ) -> PhaseState: ...


def check_gate(
    store: PhaseStore, contract: Contract, target: Phase
) -> tuple[PhaseState, GateDecision]:
    state = store.get(contract.name)
    decision = decide(state.phase, target, store.evidence(contract.name), contract.cutover.gate)
    return state, decision


def advance(
    store: PhaseStore,
    contract: Contract,
    target: Phase,
    *,
    approved_by: str,
    actor: str,
    expected_version: int | None = None,
    move: Mover | None = None,
) -> PhaseState:
    """Move one step forward when the evidence meets the gate; ``approved_by`` names the
    person who approved it. ``expected_version`` pins the state the approval was given for.
    ``move`` performs the move (default: ``store.move``)."""
    state, decision = check_gate(store, contract, target)
    if expected_version is not None and state.version != expected_version:
        raise ConcurrentChange(
            f"contract {contract.name!r} moved (version {state.version}, approved at "
            f"{expected_version}) while waiting for approval; nothing was changed"
        )
    if not decision.allowed:
        raise GateRefused(decision)
    evidence: dict[str, Any] = {
        k: {kk: v.get(kk) for kk in ("run_id", "recorded_at", "success", "quarantined")}
        for k, v in decision.evidence.items()
    }
    run_ids = [v.get("run_id") for v in decision.evidence.values() if v.get("run_id")]
    evidence["run_id"] = ",".join(str(r) for r in run_ids) or None
    return (move or store.move)(state, target, actor=actor, kind="advance", evidence=evidence,
                                approved_by=approved_by)  # fmt: skip


def rollback(
    store: PhaseStore,
    contract: Contract,
    *,
    reason: str,
    actor: str,
    move: Mover | None = None,
) -> PhaseState:
    """Move one step back, no gate; ``move`` performs it (default: ``store.move``)."""
    if not reason.strip():
        raise TerminalError("a rollback needs a reason")
    state = store.get(contract.name)
    if state.phase == Phase.MYSQL_ONLY:
        raise TerminalError(f"contract {contract.name!r} is at mysql_only; nothing to roll back")
    return (move or store.move)(state, Phase(state.phase - 1), actor=actor, kind="rollback",
                                reason=reason)  # fmt: skip
