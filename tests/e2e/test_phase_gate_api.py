"""A phase gate driven through a real approval: a real `airflow standalone` runs the
phase_gate DAG, the approval task waits for input, this test answers through Airflow's REST
API (hitlDetails) as a person would in the UI, and the phase store then holds the new phase
with the approver. A rejection, on a second run, changes nothing."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from tests.airflow_standalone import Api, standalone, trigger_and_answer

from cutover.phases.model import Phase
from cutover.phases.store import PhaseStore
from cutover.prepare.control_table import ensure_control_table
from cutover.settings import PROJECT_ROOT, Settings

pytestmark = [pytest.mark.e2e, pytest.mark.dynamodb, pytest.mark.airflow]


@pytest.fixture(scope="module")
def airflow(
    settings: Settings, ddb: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Api, str, PhaseStore]]:
    home = tmp_path_factory.mktemp("airflow")
    contracts = home / "contracts"
    contracts.mkdir()
    name = f"gate_{uuid.uuid4().hex[:6]}"
    sample = json.loads((PROJECT_ROOT / "contracts" / "ecommerce.json").read_text())
    sample["cutover"]["name"] = name
    (contracts / f"{name}.json").write_text(json.dumps(sample))
    prefix = f"{settings.table_prefix}gate_"
    ensure_control_table(ddb, prefix)
    store = PhaseStore(ddb, prefix)
    env = {"CUTOVER_DYNAMODB_ENDPOINT": settings.dynamodb_endpoint or "",
           "CUTOVER_TABLE_PREFIX": prefix}  # fmt: skip
    try:
        with standalone(home, contracts, env) as api:
            yield api, name, store
    finally:
        ddb.delete_table(TableName=f"{prefix}cutover_control")
        if os.environ.get("CUTOVER_KEEP_AIRFLOW_HOME") is None:
            shutil.rmtree(home, ignore_errors=True)


def test_an_approved_gate_records_the_phase_and_the_approver(
    airflow: tuple[Api, str, PhaseStore],
) -> None:
    api, name, store = airflow
    store.record_evidence(name, "prepare", {"drifts": 0})
    assert (
        trigger_and_answer(api, f"{name}__phase_gate", "Reject", expect_in_body="prepare")
        == "success"
    )
    assert store.get(name).phase == Phase.MYSQL_ONLY  # a rejection changes nothing

    assert (
        trigger_and_answer(api, f"{name}__phase_gate", "Approve", expect_in_body="prepare")
        == "success"
    )
    state = store.get(name)
    assert state.phase == Phase.DUAL_WRITE
    assert state.approved_by == "admin"
    # the move is fenced: its history has the fence entry, then the advance
    assert [e["kind"] for e in store.history(name)] == ["fence", "advance"]
    (entry,) = [e for e in store.history(name) if e["kind"] == "advance"]
    assert entry["approved_by"] == "admin" and entry["actor"].startswith("airflow:")
