"""The DAG folder parses without errors, every contract yields its seven DAGs, and parsing does
no work: no heavy imports, no network, no database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cutover.settings import PROJECT_ROOT

pytestmark = [pytest.mark.dags, pytest.mark.airflow]

SUFFIXES = {"prepare", "backfill", "validate", "reconcile", "sync", "phase_gate", "rollback"}
# boto3 is not listed: declaring any Asset makes Airflow load every provider's asset-URI
# handlers (the amazon provider's import boto3), as its DAG processor has done anyway.
# The sync's modules and its binlog client are imported by its task only.
HEAVY = ("pandas", "pyarrow", "great_expectations", "duckdb", "MySQLdb", "connectorx", "sqlglot",
         "pymysqlreplication", "cutover.sync", "cutover.sync.runner")  # fmt: skip


def _three_contracts(tmp_path: Path) -> Path:
    folder = tmp_path / "contracts"
    folder.mkdir()
    sample = json.loads((PROJECT_ROOT / "contracts" / "ecommerce.json").read_text())
    for name in ("shop_eu", "shop_us", "shop_apac"):
        sample["cutover"]["name"] = name
        (folder / f"{name}.json").write_text(json.dumps(sample))
    return folder


def test_dagbag_has_no_import_errors_and_every_contract_yields_its_dags(tmp_path: Path) -> None:
    from airflow.dag_processing.dagbag import DagBag

    os.environ["CUTOVER_CONTRACTS_DIR"] = str(_three_contracts(tmp_path))
    try:
        bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags"))
    finally:
        del os.environ["CUTOVER_CONTRACTS_DIR"]
    assert bag.import_errors == {}
    for name in ("shop_eu", "shop_us", "shop_apac"):
        assert {d.removeprefix(f"{name}__") for d in bag.dag_ids if d.startswith(name)} == SUFFIXES
    backfill = bag.dags["shop_eu__backfill"]
    assert backfill is not None
    assert {"plan", "extract", "transform", "check_duplicates", "load",
            "handoff_and_finish"} <= set(backfill.task_ids)  # fmt: skip
    assert all(dag.doc_md and "cutover" in dag.tags for dag in bag.dags.values())
    validate = bag.dags["shop_eu__validate"]
    assert "cutover://shop_eu/backfill" in repr(validate.timetable.asset_condition)
    load = backfill.get_task("load")
    assert load.retries == 3  # transient errors retry; terminal ones fail fast in the task
    # every task that talks to a service retries a transient error (an API server not up
    # yet, a store that did not answer); the human approval alone is asked once
    for dag in bag.dags.values():
        for t in dag.tasks:
            assert t.retries == (0 if t.task_id == "approve" else 3), (dag.dag_id, t.task_id)


def test_a_broken_contract_file_does_not_take_the_others_down(tmp_path: Path) -> None:
    from airflow.dag_processing.dagbag import DagBag

    folder = _three_contracts(tmp_path)
    (folder / "broken.json").write_text('{"tables": [ ')  # cut off mid-file
    (folder / "not_an_object.json").write_text("[1, 2]")
    os.environ["CUTOVER_CONTRACTS_DIR"] = str(folder)
    try:
        bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags"))
    finally:
        del os.environ["CUTOVER_CONTRACTS_DIR"]
    assert bag.import_errors == {}
    assert {d.split("__")[0] for d in bag.dag_ids} == {"shop_eu", "shop_us", "shop_apac"}


def test_the_sample_contract_yields_its_dags() -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags"))
    assert bag.import_errors == {}
    assert {f"ecommerce__{s}" for s in SUFFIXES} <= set(bag.dag_ids)
    reconcile = bag.dags["ecommerce__reconcile"]
    assert reconcile.timetable.expression == "0 2 * * *"


def test_the_sync_dag_runs_every_minute_one_bounded_run_at_a_time() -> None:
    from airflow.dag_processing.dagbag import DagBag

    from cutover.dags import tasks

    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags"))
    sync = bag.dags["ecommerce__sync"]
    assert sync.timetable.expression == "* * * * *"
    assert sync.max_active_runs == 1 and not sync.catchup
    assert {"cutover", "ecommerce"} <= set(sync.tags)
    (only,) = sync.tasks
    assert only.task_id == "sync"
    assert only.retries == 3  # transient errors retry; terminal ones fail fast in the task
    assert tasks.SYNC_TASK_SECONDS == 50
    # the run stops itself well before the timeout that frees the slot of a hung one
    assert only.execution_timeout.total_seconds() > tasks.SYNC_TASK_SECONDS


PARSE_PROBE = """
import socket, sys
def refuse(*args, **kwargs):
    raise AssertionError("a DAG file opened a network connection at parse time")
socket.socket.connect = refuse
socket.create_connection = refuse
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
assert not bag.import_errors, bag.import_errors
heavy = [m for m in {heavy!r} if m in sys.modules]
print(len(bag.dag_ids), ",".join(heavy))
"""


def test_parsing_imports_nothing_heavy_and_opens_no_connection(tmp_path: Path) -> None:
    """What keeps parse time low: a fresh interpreter parses three contracts' DAGs with
    sockets disabled, and none of the heavy libraries gets imported."""
    env = {**os.environ, "CUTOVER_CONTRACTS_DIR": str(_three_contracts(tmp_path))}
    probe = PARSE_PROBE.replace("{heavy!r}", repr(HEAVY))
    result = subprocess.run([sys.executable, "-c", probe, str(PROJECT_ROOT / "dags")],
                            env=env, capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    count, _, heavy = result.stdout.strip().splitlines()[-1].partition(" ")
    assert int(count) == 21  # 3 contracts x 7 DAGs
    assert heavy.strip() == "", f"imported at parse time: {heavy}"
