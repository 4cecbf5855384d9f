"""The panel's pieces that need no Airflow: what a contract page renders from untrusted
values (row values from MySQL, keys, suite names), the Data Docs scope of a contract, the
history's CLI-override flag and the gate's per-item verdicts."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from cutover.contract.model import GatePolicy
from cutover.panel import charts
from cutover.panel.app import _belongs, _charts, _templates
from cutover.panel.overview import (
    ContractEntry,
    backfill_summary,
    detail,
    history,
    sync_summary,
    validation_summary,
)
from cutover.phases.gate import evidence_problems
from cutover.phases.model import Phase

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


class _SyncStore:
    """The sync's series as the phase store keeps it: scalar figures only, oldest first."""

    def series(self, name: str, kind: str) -> list[dict]:
        if (name, kind) != ("shop", "sync"):
            return []
        return [{"recorded_at": f"2026-11-23T11:5{i}:00+00:00", "lag_seconds": lag,
                 "events_behind": 10 * i, "bytes_behind": 1000 * i}
                for i, lag in enumerate([4.0, 61.0, 12.5])]  # fmt: skip


def _page(sync: dict) -> str:
    c = {
        "name": "shop", "error": None, "phase": {"number": 2, "name": "dual_write"},
        "version": 1, "updated_at": None, "state": {}, "track": [],
        "next_gate": {"target": None, "allowed": False, "evidence": []},
        "backfill": None, "validation": None, "reconciliation": None, "routing": {},
        "history": [], "sync": sync,
    }  # fmt: skip
    return _templates().get_template("contract.html").render(
        base="/migrations", c=c, charts=_charts(c), runs={}, paused={}, approvals=[],
        data_docs=None)  # fmt: skip


def test_the_contract_page_shows_the_sync_lag_and_its_chart_escaped() -> None:
    now = dt.datetime(2026, 11, 23, 12, tzinfo=dt.UTC)
    last = {
        "kind": "sync", "recorded_at": "2026-11-23T11:59:30+00:00", "lag_seconds": 12.5,
        "events_behind": 1234, "bytes_behind": 56789, "applied_per_second": 310.2,
        "transactions": 40, "position": {"file": HOSTILE, "offset": 4242, "gtid": None},
        "error": HOSTILE,
    }  # fmt: skip
    sync = sync_summary(_SyncStore(), "shop", {"sync": last}, limit_seconds=30, now=now)
    assert sync["age_seconds"] == 30.0 and sync["last"] is last
    assert [p["lag_seconds"] for p in sync["series"]] == [4.0, 61.0, 12.5]
    page = _page(sync)
    assert HOSTILE not in page
    assert 'id="sync-lag">12.5 s<' in page
    assert 'id="sync-behind">1,234 events, 56,789 bytes<' in page
    assert 'id="sync-rate">310.2<' in page
    assert "&lt;img src=x onerror=" in page  # the error and the binlog file name, as text
    assert "11:59:30+00:00 (30.0 s ago)" in page
    chart = page[page.index('aria-label="binlog sync lag"') :]
    assert chart.count('class="dot"') == 3  # one point per report of the series
    assert "<title>61 s</title>" in chart and 'class="limit"' in chart  # the 30 s limit


def test_without_a_sync_report_the_page_says_which_dag_records_one() -> None:
    class _Empty:
        def series(self, name: str, kind: str) -> list[dict]:
            return []

    sync = sync_summary(_Empty(), "shop", {})
    assert sync == {"last": None, "age_seconds": None, "series": [], "limit_seconds": None}
    page = _page(sync)
    assert "shop__sync" in page and 'id="sync-lag"' not in page
    assert "binlog sync lag" not in page


def test_the_contract_api_has_the_sync_with_its_last_report_series_and_limit() -> None:
    from cutover.contract.load import load_contract
    from cutover.phases.store import PhaseState
    from cutover.settings import PROJECT_ROOT

    path = PROJECT_ROOT / "contracts" / "ecommerce.json"
    last = {
        "kind": "sync",
        "recorded_at": dt.datetime.now(dt.UTC).isoformat(),
        "lag_seconds": 2.0,
        "position": {"file": "binlog.000001", "offset": 4, "gtid": None},
    }

    class _Store(_SyncStore):
        def get(self, name: str) -> PhaseState:
            return PhaseState(name, Phase.DUAL_WRITE, 1, "ann", "2026-11-23T10:00:00+00:00", None)

        def evidence(self, name: str) -> dict:
            return {"sync": last}

        def history(self, name: str) -> list:
            return []

    class _NoReports:
        def read_json_if_exists(self, *parts: str) -> None:
            return None

    contract = load_contract(str(path))
    entry = ContractEntry("shop", Path(path), contract)
    shown = detail(entry, _Store(), _NoReports())  # type: ignore[arg-type]
    assert "shop__sync" in entry.dag_ids  # reading the panel needs access to it too
    sync = shown["sync"]
    assert sync["last"] == last and len(sync["series"]) == 3
    assert sync["limit_seconds"] == contract.cutover.gate.max_sync_lag_seconds
    (item,) = [e for e in shown["next_gate"]["evidence"] if e["kind"] == "sync"]
    assert item["passes"] and item["figures"]["lag_seconds"] == 2.0
