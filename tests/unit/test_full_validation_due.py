"""When the nightly run compares everything instead of the changed keys: no full comparison
yet, the last one failed or is a week old, a changed-key parity failed since, or no binlog
position to start from; otherwise the changed keys will do."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from cutover.validate.changed_keys import full_validation_due

pytestmark = pytest.mark.unit

NOW = dt.datetime(2026, 12, 4, 3, 0, tzinfo=dt.UTC)
POSITION = {"file": "binlog.000001", "offset": 4096, "gtid": None}


def _validated(days_ago: float, success: bool = True, position: Any = POSITION) -> dict[str, Any]:
    when = (NOW - dt.timedelta(days=days_ago)).isoformat()
    return {"run_id": when, "success": success, "binlog_position": position}


def test_changed_keys_will_do_after_a_recent_passing_validation() -> None:
    assert full_validation_due({"validate": _validated(2)}, NOW) is None


@pytest.mark.parametrize(
    ("evidence", "reason"),
    [
        ({}, "no full validation yet"),
        ({"validate": _validated(2, success=False)}, "failed"),
        ({"validate": _validated(7.5)}, "7.5 days old"),
        ({"validate": _validated(1), "changed_keys": {"success": False}}, "found differences"),
        ({"validate": _validated(1, position=None)}, "binlog position"),
    ],
)
def test_a_full_comparison_is_due(evidence: dict[str, Any], reason: str) -> None:
    due = full_validation_due(evidence, NOW)
    assert due is not None and reason in due


def test_the_latest_full_comparison_counts_a_reconcile_too() -> None:
    old = _validated(10)
    reconciled = {"run_id": (NOW - dt.timedelta(days=1)).isoformat(), "success": True}
    assert full_validation_due({"validate": old, "reconcile": reconciled}, NOW) is None
    assert full_validation_due({"validate": old, "reconcile": reconciled}, NOW, 0.5)


def test_a_passing_changed_key_parity_keeps_an_old_validation_fresh_for_the_gate() -> None:
    from cutover.contract.model import GatePolicy
    from cutover.phases.gate import evidence_problems

    gate = GatePolicy(evidence_max_age_hours=24)
    validated = {**_validated(3), "recorded_at": (NOW - dt.timedelta(days=3)).isoformat()}
    assert evidence_problems("validate", validated, gate, NOW)  # 72 h old: refused alone
    changed = {"success": True, "validated_at": validated["run_id"],
               "recorded_at": (NOW - dt.timedelta(hours=1)).isoformat()}  # fmt: skip
    assert evidence_problems("validate", validated, gate, NOW, changed) == []
    failed = {**changed, "success": False}
    assert evidence_problems("validate", validated, gate, NOW, failed)
    other = {**changed, "validated_at": "2026-01-01T00:00:00+00:00"}  # extends another one
    assert evidence_problems("validate", validated, gate, NOW, other)
