"""The phase store and gate against DynamoDB Local: a gate refuses without evidence or with
failing evidence, two concurrent advances never both win, rollback needs a reason, and every
move lands in the history with who approved it."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from cutover.contract.load import parse_contract
from cutover.contract.model import Contract
from cutover.errors import TerminalError
from cutover.phases.model import FLAGS, Phase
from cutover.phases.store import ConcurrentChange, PhaseStore
from cutover.phases.transitions import GateRefused, advance, check_gate, rollback
from cutover.prepare.control_table import ensure_control_table
from cutover.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.mysql, pytest.mark.dynamodb]


def _contract(name: str, max_quarantined: int = 0) -> Contract:
    return parse_contract({
        "cutover": {"name": name, "gate": {"max_quarantined_rows": max_quarantined}},
        "tables": [{"table": "Things", "type": "single-entity", "source_table": "t", "pk": "id",
                    "attributes": [{"name": "id", "type": "N", "source_table": "t",
                                    "source_column": "id"}]}],
    })  # fmt: skip


@pytest.fixture
def store(ddb: Any, settings: Settings) -> Iterator[PhaseStore]:
    prefix = f"{settings.table_prefix}ph{uuid.uuid4().hex[:4]}_"
    ensure_control_table(ddb, prefix)
    yield PhaseStore(ddb, prefix)
    ddb.delete_table(TableName=f"{prefix}cutover_control")


def _ready_for_dual_read(store: PhaseStore, name: str) -> None:
    store.record_evidence(name, "prepare", {"drifts": 0})
    store.record_evidence(name, "backfill", {"run_id": "r1", "complete": True, "quarantined": 0})
    store.record_evidence(name, "validate", {"run_id": "v1", "success": True, "sample": None})
    position = {"file": "binlog.000001", "offset": 4, "gtid": None}
    store.record_evidence(name, "sync", {"lag_seconds": 0.0, "position": position})


def test_a_new_contract_starts_at_mysql_only(store: PhaseStore) -> None:
    state = store.get("fresh")
    assert state.phase == Phase.MYSQL_ONLY and state.version == 0
    assert FLAGS[state.phase].to_dict() == {"databaseMode": "mysql-only",
                                            "enableDualWrites": False,
                                            "primaryReadSource": "mysql",
                                            "fallbackEnabled": True}  # fmt: skip


def test_the_gate_refuses_without_evidence_and_with_failing_evidence(store: PhaseStore) -> None:
    contract = _contract("gated")
    with pytest.raises(GateRefused, match="no prepare evidence"):
        advance(store, contract, Phase.DUAL_WRITE, approved_by="ann", actor="test")
    store.record_evidence("gated", "prepare", {"drifts": 0})
    advance(store, contract, Phase.DUAL_WRITE, approved_by="ann", actor="test")

    store.record_evidence("gated", "backfill", {"run_id": "r1", "complete": True,
                                                "quarantined": 3})  # fmt: skip
    store.record_evidence("gated", "validate", {"run_id": "v1", "success": False, "sample": None})
    _, decision = check_gate(store, contract, Phase.DUAL_READ_MYSQL_PRIMARY)
    assert not decision.allowed
    assert any("quarantined 3 rows" in r for r in decision.reasons)
    assert any("last validate run failed" in r for r in decision.reasons)
    with pytest.raises(GateRefused):
        advance(store, contract, Phase.DUAL_READ_MYSQL_PRIMARY, approved_by="ann", actor="t")
    assert store.get("gated").phase == Phase.DUAL_WRITE


def test_stale_evidence_and_skipping_a_phase_are_refused(store: PhaseStore) -> None:
    contract = _contract("stale")
    old = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=30)).isoformat()
    store.record_evidence("stale", "prepare", {"drifts": 0, "recorded_at": old})
    _, decision = check_gate(store, contract, Phase.DUAL_WRITE)
    assert not decision.allowed and "30.0 h old" in decision.reasons[0]
    _, skip = check_gate(store, contract, Phase.DUAL_READ_MYSQL_PRIMARY)
    assert not skip.allowed and "one step at a time" in skip.reasons[0]


def test_two_concurrent_advances_exactly_one_wins(store: PhaseStore) -> None:
    contract = _contract("race")
    _ready_for_dual_read(store, "race")
    barrier = threading.Barrier(2)
    outcomes: list[str] = []
    lock = threading.Lock()
    first = store.get("race")  # both operators read version 0, then both write

    def operator(name: str) -> None:
        barrier.wait()
        try:
            store.move(first, Phase.DUAL_WRITE, actor=name, kind="advance", approved_by=name)
            result = "won"
        except ConcurrentChange:
            result = "lost"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=operator, args=(n,)) for n in ("ann", "bob")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["lost", "won"]
    state = store.get("race")
    assert state.phase == Phase.DUAL_WRITE and state.version == 1
    assert len(store.history("race")) == 1

    with pytest.raises(ConcurrentChange):  # an approval given for a stale version
        advance(store, contract, Phase.DUAL_READ_MYSQL_PRIMARY, approved_by="bob",
                actor="t", expected_version=0)  # fmt: skip


def test_moves_and_rollbacks_are_recorded_with_who_and_why(store: PhaseStore) -> None:
    contract = _contract("audit")
    _ready_for_dual_read(store, "audit")
    advance(store, contract, Phase.DUAL_WRITE, approved_by="ann", actor="cli")
    state = advance(store, contract, Phase.DUAL_READ_MYSQL_PRIMARY, approved_by="bob",
                    actor="cli")  # fmt: skip
    assert state.approved_by == "bob" and state.evidence_run_id == "r1,v1"
    with pytest.raises(TerminalError, match="needs a reason"):
        rollback(store, contract, reason=" ", actor="cli")
    back = rollback(store, contract, reason="shadow reads disagree", actor="carol")
    assert back.phase == Phase.DUAL_WRITE
    history = store.history("audit")
    assert [(h["kind"], h["from"], h["to"]) for h in history] == [
        ("advance", 1, 2), ("advance", 2, 3), ("rollback", 3, 2)]  # fmt: skip
    assert history[1]["approved_by"] == "bob" and history[2]["reason"] == "shadow reads disagree"
    assert history[1]["evidence"]["validate"]["run_id"] == "v1"


def test_the_application_client_caches_flags_for_its_ttl(store: PhaseStore) -> None:
    from cutover.phases.client import PhaseClient

    client = PhaseClient(store, ttl_seconds=3600)
    assert client.flags("cached").databaseMode == "mysql-only"
    store.record_evidence("cached", "prepare", {"drifts": 0})
    advance(store, _contract("cached"), Phase.DUAL_WRITE, approved_by="ann", actor="t")
    assert client.flags("cached").databaseMode == "mysql-only"  # still cached
    fresh = PhaseClient(store, ttl_seconds=0)
    flags = fresh.flags("cached")
    assert (flags.databaseMode, flags.enableDualWrites) == ("dual-write", True)


def test_the_routing_figures_are_kept_over_time_and_the_panel_charts_them(
    store: PhaseStore, ddb: Any
) -> None:
    from cutover.panel.overview import routing_series

    name = f"c_{uuid.uuid4().hex[:6]}"
    for i, (rate, depth) in enumerate([(0.0, 3), (0.25, 0), (0.05, 7)]):
        at = f"2026-11-23T10:0{i}:00+00:00"
        shadow = {
            "recorded_at": at,
            "phase": 3,
            "comparisons": 20,
            "mismatches": int(rate * 20),
            "mismatch_rate": rate,
            "entities": {},
        }
        writes = {"recorded_at": at, "phase": 3, "writes": 10, "error_rate": 0.0,
                  "outbox_depth": depth, "latency": {}}  # fmt: skip
        store.record_evidence(name, "shadow_reads", shadow)
        store.record_evidence(name, "dual_writes", writes)
    store.record_evidence(name, "validate", {"success": True})  # not a series kind
    series = routing_series(store, name)
    assert [p["rate"] for p in series["shadow_reads"]] == [0.0, 0.25, 0.05]  # oldest first
    assert [p["depth"] for p in series["outbox"]] == [3, 0, 7]
    assert series["shadow_reads"][1]["mismatched"] == 5
    assert store.series(name, "validate") == []
    assert store.evidence(name)["shadow_reads"]["mismatch_rate"] == 0.05  # latest stays latest
    ttl = ddb.describe_time_to_live(TableName=store.table)["TimeToLiveDescription"]
    assert ttl["TimeToLiveStatus"] in ("ENABLED", "ENABLING")
    assert ttl["AttributeName"] == "expires_at"


def test_a_retried_gate_or_rollback_task_does_not_move_twice(store: PhaseStore) -> None:
    """The phase DAGs' record and rollback tasks retry transient errors: a try that failed
    after its move (reporting it, say) must not move the contract a second step."""
    from cutover.dags.tasks import already_moved_by

    contract = _contract("retried")
    _ready_for_dual_read(store, "retried")
    advance(store, contract, Phase.DUAL_WRITE, approved_by="ann", actor="airflow:run1")
    assert already_moved_by(store, "retried", "airflow:run1", Phase.DUAL_WRITE) is not None
    assert already_moved_by(store, "retried", "airflow:run2", Phase.DUAL_WRITE) is None
    assert already_moved_by(store, "retried", "airflow:run1", Phase.DUAL_READ_MYSQL_PRIMARY) is None
    rollback(store, contract, reason="the retry test", actor="airflow:run3")
    assert already_moved_by(store, "retried", "airflow:run3").phase == Phase.MYSQL_ONLY
    assert len(store.history("retried")) == 2
