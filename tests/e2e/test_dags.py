"""The backfill and validate DAGs of the sample contract, run through Airflow (`dag.test()`)
against MariaDB and DynamoDB Local: the items arrive and the parity suites pass."""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from tests.helpers import user_of_order

from cutover.aws import dynamodb_client
from cutover.contract.load import load_contract
from cutover.db import connect, query
from cutover.sample.generator import load_sample, planted_defects
from cutover.settings import LOCAL_DIR, PROJECT_ROOT, Settings
from cutover.stages import phase_store

pytestmark = [pytest.mark.e2e, pytest.mark.mysql, pytest.mark.dynamodb, pytest.mark.airflow]


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


def _count(client: Any, table: str) -> int:
    total = 0
    for page in client.get_paginator("scan").paginate(TableName=table, Select="COUNT"):
        total += page["Count"]
    return total


def test_prepare_backfill_and_validate_dags_move_and_prove_the_sample(env: Settings) -> None:
    from cutover.dags.local_run import run_dag

    run_dag("ecommerce__prepare")
    backfill_run = run_dag("ecommerce__backfill", {"partitions": 2, "workers": 4})
    run_dag("ecommerce__validate")

    contract = load_contract(PROJECT_ROOT / "contracts" / "ecommerce.json")
    client = dynamodb_client(env)
    conn = connect(env.mysql)
    try:
        (orders,) = query(conn, "SELECT COUNT(*) FROM orders")[0]
        (products,) = query(conn, "SELECT COUNT(*) FROM products")[0]
    finally:
        conn.close()
    planted = planted_defects(1)
    bad_products = sum(1 for d in planted if d.dynamodb_table == "Products")
    assert _count(client, env.table_prefix + "Products") == products - bad_products
    order = client.get_item(TableName=env.table_prefix + "Users",
                            Key={"PK": {"S": f"USER#{user_of_order(env, 1)}"},
                                 "SK": {"S": "ORDER#1"}})["Item"]  # fmt: skip
    assert int(order["order_id"]["N"]) == 1 and order["items"]["L"]
    assert orders == 4000

    evidence = phase_store(env).evidence(contract.name)
    # The backfill evidence is this DAG run's (its run id is derived from the Airflow run id)
    # and counts exactly what is in the tables and the planted rows, within the gate.
    backfill = evidence["backfill"]
    assert backfill["run_id"] == "af-" + re.sub(r"[^A-Za-z0-9_.-]", "_", backfill_run.run_id)
    assert backfill["complete"] is True
    assert backfill["quarantined"] == len(planted) == 10
    assert backfill["gate_passed"] is True
    loaded = sum(_count(client, env.table_prefix + t.table) for t in contract.tables)
    assert backfill["items_loaded"] == loaded > 0
    # The validate evidence: a full (not sampled) run, every table of the contract with every
    # one of its entities, each at exact value parity.
    validate = evidence["validate"]
    assert validate["success"] is True and validate["sample"] is None
    assert validate["tables"] == {
        t.table: {s.entity_type: 1.0 for s in t.sources} for t in contract.tables
    }
    assert validate["tables"]["Users"] == {"USER": 1.0, "CART": 1.0, "ORDER": 1.0}


def _snapshot(folder: Path) -> list[tuple[str, bool, int, int]] | None:
    """Every entry under ``folder`` with its size and mtime; None when it does not exist."""
    if not folder.exists():
        return None
    entries = [("", True, 0, folder.stat().st_mtime_ns)]
    for path in sorted(folder.rglob("*")):
        st = path.lstat()
        entries.append((str(path.relative_to(folder)), path.is_dir(), st.st_size, st.st_mtime_ns))
    return entries


def test_dag_runs_use_the_sessions_airflow_home_never_the_users(
    env: Settings, airflow_home: Path
) -> None:
    """`scripts/local.env` exports AIRFLOW_HOME=<repo>/.local/airflow (the home of `make demo`
    and `make airflow`): the suite must run its DAGs in its own home and leave that one as
    it was, or absent."""
    from cutover.dags.local_run import run_dag

    user_home = (LOCAL_DIR / "airflow").resolve()
    session_home = airflow_home.resolve()
    assert session_home != user_home and user_home not in session_home.parents
    assert Path(os.environ["AIRFLOW_HOME"]).resolve() == session_home

    before = _snapshot(user_home)
    run = run_dag("ecommerce__prepare")
    assert _snapshot(user_home) == before, f"a DAG test changed the user's {user_home}"

    # Airflow itself is configured with the session's home, and the run is in its database.
    import airflow.configuration
    import airflow.settings

    assert Path(airflow.configuration.AIRFLOW_HOME).resolve() == session_home
    database = Path(airflow.settings.engine.url.database or "").resolve()
    assert session_home in database.parents, database
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        (found,) = db.execute(
            "SELECT COUNT(*) FROM dag_run WHERE dag_id = ? AND run_id = ?",
            ("ecommerce__prepare", run.run_id),
        ).fetchone()
    assert found == 1


def test_a_phase_gate_refuses_to_ask_without_evidence(env: Settings) -> None:
    """The gate DAG fails at its evidence check: the approval task never asks anyone."""
    from cutover.dags.local_run import run_dag
    from cutover.errors import CutoverError
    from cutover.phases.model import Phase

    run_dag("ecommerce__prepare")  # records prepare evidence only
    with pytest.raises(CutoverError, match="ended failed"):
        run_dag("ecommerce__phase_gate", {"target_phase": "dual_read_mysql_primary"})
    assert phase_store(env).get("ecommerce").phase == Phase.MYSQL_ONLY
