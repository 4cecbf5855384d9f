"""The backfill and validate DAGs of the sample contract, run through Airflow (`dag.test()`)
against MariaDB and DynamoDB Local: the items arrive and the parity suites pass."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.helpers import user_of_order

from cutover.aws import dynamodb_client
from cutover.contract.load import load_contract
from cutover.db import connect, query
from cutover.sample.generator import load_sample, planted_defects
from cutover.settings import PROJECT_ROOT, Settings
from cutover.stages import phase_store

pytestmark = pytest.mark.e2e


@pytest.fixture
def env(
    scratch_db: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    m = scratch_db.mysql
    prefix = f"{scratch_db.table_prefix}dag_"
    monkeypatch.setenv("CUTOVER_MYSQL_URL", f"mysql://{m.user}@{m.host}:{m.port}/{m.database}")
    monkeypatch.setenv("CUTOVER_DYNAMODB_ENDPOINT", scratch_db.dynamodb_endpoint or "")
    monkeypatch.setenv("CUTOVER_STAGING", (tmp_path / "staging").as_uri())
    monkeypatch.setenv("CUTOVER_TABLE_PREFIX", prefix)
    settings = Settings.from_env()
    load_sample(settings, scale=1)
    yield settings
    client = dynamodb_client(settings)
    for name in client.list_tables()["TableNames"]:
        if name.startswith(prefix):
            client.delete_table(TableName=name)


def test_prepare_backfill_and_validate_dags_move_and_prove_the_sample(env: Settings) -> None:
    from cutover.dags.local_run import run_dag

    run_dag("ecommerce__prepare")
    run_dag("ecommerce__backfill", {"partitions": 2, "workers": 4})
    run_dag("ecommerce__validate")

    contract = load_contract(PROJECT_ROOT / "contracts" / "ecommerce.json")
    client = dynamodb_client(env)
    conn = connect(env.mysql)
    try:
        (orders,) = query(conn, "SELECT COUNT(*) FROM orders")[0]
        (products,) = query(conn, "SELECT COUNT(*) FROM products")[0]
    finally:
        conn.close()
    bad_products = sum(1 for d in planted_defects(1) if d.dynamodb_table == "Products")
    count = client.scan(TableName=env.table_prefix + "Products", Select="COUNT")
    total = count["Count"]
    while "LastEvaluatedKey" in count:
        count = client.scan(TableName=env.table_prefix + "Products", Select="COUNT",
                            ExclusiveStartKey=count["LastEvaluatedKey"])  # fmt: skip
        total += count["Count"]
    assert total == products - bad_products
    order = client.get_item(TableName=env.table_prefix + "Users",
                            Key={"PK": {"S": f"USER#{user_of_order(env, 1)}"},
                                 "SK": {"S": "ORDER#1"}})["Item"]  # fmt: skip
    assert int(order["order_id"]["N"]) == 1 and order["items"]["L"]
    assert orders == 4000

    evidence = phase_store(env).evidence(contract.name)
    assert evidence["backfill"]["complete"] is True
    assert evidence["backfill"]["quarantined"] == len(planted_defects(1))
    assert evidence["validate"]["success"] is True and evidence["validate"]["sample"] is None
    assert json.dumps(evidence["validate"]["tables"])


def test_a_phase_gate_refuses_to_ask_without_evidence(env: Settings) -> None:
    """The gate DAG fails at its evidence check: the approval task never asks anyone."""
    from cutover.dags.local_run import run_dag
    from cutover.errors import CutoverError
    from cutover.phases.model import Phase

    run_dag("ecommerce__prepare")  # records prepare evidence only
    with pytest.raises(CutoverError, match="ended failed"):
        run_dag("ecommerce__phase_gate", {"target_phase": "dual_read_mysql_primary"})
    assert phase_store(env).get("ecommerce").phase == Phase.MYSQL_ONLY
