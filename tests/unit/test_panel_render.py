"""The panel's pieces that need no Airflow: what a contract page renders from untrusted
values (row values from MySQL, keys, suite names), the Data Docs scope of a contract, the
history's CLI-override flag and the gate's per-item verdicts."""

from __future__ import annotations

import datetime as dt

import pytest

from cutover.contract.model import GatePolicy
from cutover.panel import charts
from cutover.panel.app import _belongs, _templates
from cutover.panel.overview import backfill_summary, history, validation_summary
from cutover.phases.gate import evidence_problems

pytestmark = pytest.mark.unit

HOSTILE = '<img src=x onerror="alert(1)">'
MANIFEST = {
    "run_id": "af-manual__1", "planned_at": "2026-11-23T10:00:00+00:00",
    "finished_at": "2026-11-23T10:00:10+00:00", "rows_extracted": 1300, "items_loaded": 1234,
    "quarantined": 10, "quarantine_reasons": {"not_found": 6, "duplicate_key": 4},
    "gate": {"passed": True}, "load": {"items_per_s": 150.0},
    "partitions": [{"id": "Users-0", "load": {"items": 600, "seconds": 4.0}},
                   {"id": "Users-1", "load": {"items": 634, "seconds": 2.0}}],
}  # fmt: skip


def _report_with(value: str) -> dict:
    return {
        "started_at": "2026-11-23T10:00:00+00:00",
        "finished_at": "2026-11-23T10:01:00+00:00",
        "success": False,
        "sample": None,
        "tables": [{
            "table": "Users", "success": False, "exported_items": 2,
            "parity": {"entities": {"USER": {"expected": 2, "actual": 2, "missing": 0,
                                             "extra": 0, "mismatched": 1,
                                             "value_parity": 0.5}},
                       "differences": [{"kind": "mismatch", "entity": "USER", "PK": "USER#1",
                                        "SK": "PROFILE", "attributes": ["username"],
                                        "expected": {"username": value},
                                        "actual": {"username": "bob"}}]},
            "suites": [{"suite": "shop.Users.parity", "success": False,
                        "failed_expectations": [{"expectation": "expect_x",
                                                 "kwargs": {"column": value},
                                                 "unexpected": [value]}]}],
        }],
    }  # fmt: skip


def test_untrusted_values_are_escaped_on_the_contract_page() -> None:
    page = _templates().get_template("contract.html").render(
        base="/migrations",
        c={
            "name": "shop", "error": None, "phase": {"number": 1, "name": "mysql_only"},
            "version": 0, "updated_at": None, "state": {}, "track": [],
            "next_gate": {"target": None, "allowed": False, "evidence": []},
            "backfill": backfill_summary(MANIFEST),
            "validation": validation_summary(_report_with(HOSTILE)),
            "reconciliation": None, "routing": {}, "history": [],
        },
        charts={"throughput": charts.bars([(HOSTILE, 3.0)], "items/s", HOSTILE)},
        runs={}, paused={}, approvals=[], data_docs=None,
    )  # fmt: skip
    assert HOSTILE not in page
    assert "&lt;img src=x onerror=" in page  # shown, as text
    assert "username" in page and "USER#1" in page  # the differing key and attribute
    assert 'id="backfill-items">1,234<' in page and 'id="backfill-rows">1,300<' in page
    assert "not_found: 6" in page and "duplicate_key: 4" in page


def test_the_backfill_summary_gives_duration_and_each_partitions_throughput() -> None:
    shown = backfill_summary(MANIFEST)
    assert shown is not None
    assert (shown["duration_s"], shown["items_per_s"]) == (10.0, 150.0)
    assert [p["items_per_s"] for p in shown["partitions"]] == [150.0, 317.0]


def test_the_validation_summary_keeps_both_sides_of_a_difference() -> None:
    shown = validation_summary(_report_with("alice"))
    assert shown is not None
    (diff,) = shown["differences"]
    assert (diff["mysql"], diff["dynamodb"]) == ({"username": "alice"}, {"username": "bob"})
    assert shown["tables"][0]["suites"][0]["failed_expectations"][0]["expectation"] == "expect_x"


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("index.html", True),
        ("static/styles/data_docs_default_styles.css", True),
        ("validations/shop.Users.parity/2026/x.html", True),
        ("expectations/shop.Users.parity.html", True),
        ("validations/shopx.Users.parity/2026/x.html", False),  # another contract's suites
        ("validations/other.Users.parity/2026/x.html", False),
        ("expectations/other.Users.parity.html", False),
        ("../gx.yml", False),
    ],
)
def test_a_contract_reads_only_its_own_data_docs_pages(path: str, allowed: bool) -> None:
    assert _belongs("shop", path) is allowed


class _Store:
    def history(self, name: str) -> list[dict]:
        return [
            {"at": "1", "kind": "advance", "from": 1, "to": 2, "actor": "airflow:manual__1",
             "approved_by": "ann", "reason": None, "evidence": {"prepare": {}}},
            {"at": "2", "kind": "advance", "from": 2, "to": 3, "actor": "root@ops-box",
             "approved_by": "bob", "reason": "weekend window", "evidence": None},
            {"at": "3", "kind": "rollback", "from": 3, "to": 2, "actor": "root@ops-box",
             "approved_by": None, "reason": "latency", "evidence": None},
        ]  # fmt: skip


def test_history_is_newest_first_and_flags_cli_overrides() -> None:
    rows = history(_Store(), "shop")
    assert [r["at"] for r in rows] == ["3", "2", "1"]
    assert [r["cli_override"] for r in rows] == [False, True, False]
    assert rows[1]["to"] == {"number": 3, "name": "dual_read_mysql_primary"}


def test_each_evidence_item_gets_its_own_verdict() -> None:
    gate = GatePolicy(max_quarantined_rows=10, evidence_max_age_hours=24)
    now = dt.datetime(2026, 11, 23, 12, tzinfo=dt.UTC)
    fresh = (now - dt.timedelta(hours=1)).isoformat()
    stale = (now - dt.timedelta(hours=30)).isoformat()
    assert evidence_problems("backfill", {"recorded_at": fresh, "complete": True,
                                          "quarantined": 10}, gate, now) == []  # fmt: skip
    assert evidence_problems("backfill", {"recorded_at": fresh, "complete": True,
                                          "quarantined": 11}, gate, now) == [
        "backfill quarantined 11 rows; the gate allows 10"]  # fmt: skip
    (old,) = evidence_problems("validate", {"recorded_at": stale, "success": True}, gate, now)
    assert old.startswith("validate evidence is 30.0 h old")
    assert evidence_problems("reconcile", None, gate, now) == [
        "no reconcile evidence has been recorded"
    ]
