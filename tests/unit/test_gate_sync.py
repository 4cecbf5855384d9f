"""The gate's sync evidence: the binlog sync's lag plus the age of its last report must stay
under ``gate.max_sync_lag_seconds`` for the moves into phases 3 and 4, and a failed run is
a reason of its own."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from cutover.contract.model import GatePolicy
from cutover.phases.gate import REQUIRED, decide, evidence_problems
from cutover.phases.model import Phase

pytestmark = pytest.mark.unit

NOW = dt.datetime(2026, 11, 23, 12, tzinfo=dt.UTC)
GATE = GatePolicy(max_sync_lag_seconds=30)


def _sync(lag: float, age_seconds: float = 0.0, **extra: Any) -> dict[str, Any]:
    return {
        "recorded_at": (NOW - dt.timedelta(seconds=age_seconds)).isoformat(),
        "lag_seconds": lag, "events_behind": 3, "bytes_behind": 900,
        "applied_per_second": 120.0, "transactions": 40,
        "position": {"file": "binlog.000007", "offset": 4242, "gtid": None},
        **extra,
    }  # fmt: skip


def _fresh(**extra: Any) -> dict[str, Any]:
    return {"recorded_at": NOW.isoformat(), **extra}


def _evidence_for(target: Phase, sync: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Passing evidence of every kind ``target`` needs, with ``sync`` as the sync's."""
    passing = {
        "prepare": _fresh(drifts=0),
        "backfill": _fresh(run_id="r1", complete=True, quarantined=0),
        "validate": _fresh(run_id="v1", success=True, sample=None),
        "reconcile": _fresh(success=True),
        "shadow_reads": _fresh(mismatch_rate=0.0),
        "dual_writes": _fresh(error_rate=0.0),
    }
    out = {k: v for k, v in passing.items() if k in REQUIRED[target]}
    if sync is not None:
        out["sync"] = sync
    return out


def test_a_lag_under_the_limit_passes() -> None:
    assert evidence_problems("sync", _sync(lag=29.0), GATE, NOW) == []


def test_a_lag_over_the_limit_names_the_lag_the_limit_and_how_to_catch_up() -> None:
    (reason,) = evidence_problems("sync", _sync(lag=45.5), GATE, NOW)
    assert "sync lag is 45.5 s" in reason
    assert "cutover.gate.max_sync_lag_seconds allows 30 s" in reason
    assert "`cutover sync CONTRACT`" in reason and "`<contract>__sync` DAG" in reason


def test_a_stale_report_adds_its_age_to_the_lag() -> None:
    assert evidence_problems("sync", _sync(lag=5.0, age_seconds=20), GATE, NOW) == []
    (reason,) = evidence_problems("sync", _sync(lag=5.0, age_seconds=40), GATE, NOW)
    assert "sync lag is 45.0 s (5.0 s when last reported, 40 s ago)" in reason


def test_a_caught_up_report_older_than_the_limit_fails() -> None:
    (reason,) = evidence_problems("sync", _sync(lag=0.0, age_seconds=31), GATE, NOW)
    assert "sync lag is 31.0 s" in reason


def test_a_report_older_than_the_evidence_age_limit_gives_both_reasons() -> None:
    problems = evidence_problems("sync", _sync(lag=0.0, age_seconds=25 * 3600), GATE, NOW)
    assert problems[0] == "sync evidence is 25.0 h old; the gate accepts 24 h"
    assert problems[1].startswith("sync lag is 90000.0 s")


def test_an_error_in_the_evidence_is_a_reason() -> None:
    failed = _sync(lag=0.0, error="binlog file binlog.000003 was purged")
    (reason,) = evidence_problems("sync", failed, GATE, NOW)
    assert "the last sync run failed: binlog file binlog.000003 was purged" in reason


def test_a_report_without_its_lag_does_not_pass() -> None:
    report = _sync(lag=0.0)
    del report["lag_seconds"]
    (reason,) = evidence_problems("sync", report, GATE, NOW)
    assert "no lag_seconds" in reason


def test_missing_sync_evidence_refuses_the_move_into_phase_3() -> None:
    target = Phase.DUAL_READ_MYSQL_PRIMARY
    decision = decide(Phase.DUAL_WRITE, target, _evidence_for(target, None), GATE, NOW)
    assert not decision.allowed
    assert decision.reasons == ["no sync evidence has been recorded"]


@pytest.mark.parametrize("target", [Phase.DUAL_READ_MYSQL_PRIMARY,
                                    Phase.DUAL_READ_DYNAMODB_PRIMARY])  # fmt: skip
def test_the_moves_into_phases_3_and_4_need_a_sync_that_keeps_up(target: Phase) -> None:
    assert "sync" in REQUIRED[target]
    current = Phase(target - 1)
    ok = decide(current, target, _evidence_for(target, _sync(lag=2.0)), GATE, NOW)
    assert ok.allowed, ok.reasons
    assert ok.evidence["sync"]["lag_seconds"] == 2.0  # the move records what it rested on
    behind = decide(current, target, _evidence_for(target, _sync(lag=300.0)), GATE, NOW)
    assert not behind.allowed
    assert any(r.startswith("sync lag is 300.0 s") for r in behind.reasons)


def test_the_move_into_dual_write_does_not_need_the_sync() -> None:
    assert "sync" not in REQUIRED[Phase.DUAL_WRITE]
    decision = decide(Phase.MYSQL_ONLY, Phase.DUAL_WRITE,
                      _evidence_for(Phase.DUAL_WRITE, None), GATE, NOW)  # fmt: skip
    assert decision.allowed, decision.reasons


def test_the_limit_comes_from_the_contract_and_must_be_positive() -> None:
    assert GatePolicy().max_sync_lag_seconds == 30
    loose = GatePolicy(max_sync_lag_seconds=600)
    assert evidence_problems("sync", _sync(lag=300.0), loose, NOW) == []
    with pytest.raises(ValueError, match="greater than 0"):
        GatePolicy(max_sync_lag_seconds=0)
