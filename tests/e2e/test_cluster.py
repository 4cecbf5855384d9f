"""`make cluster` end to end, and the failure drills of a backfill on it.

scripts/cluster.sh (the script of `make cluster`) starts Airflow on the CeleryExecutor with
PostgreSQL and Redis and two workers, in this module's own Airflow home, PostgreSQL database,
Redis db number and port. The DAGs' MySQL is a private MariaDB on a port of its own, their
DynamoDB a private DynamoDB Local with its tables on disk (so they survive a restart), and
their staging, reports and GX Data Docs a bucket of moto's S3 server on loopback: every
drill stops only what this module started, never the machine's shared services.

Each test empties the DynamoDB tables, runs the sample contract's backfill DAG through the
REST API (a fault injected in the middle of it or not), and ends with the validation's full
parity: every key MySQL produces is in DynamoDB with its value, no key is missing and none is
extra, and the run quarantined what the undisturbed run quarantined, no more, no fewer.
The first test splits each view in two partitions, to show both workers taking them; the
drills take one per view (18 tasks, not 33): the fault needs one task hit, not many.
scripts/cluster-down.sh --purge stops everything cluster.sh started and drops its database.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from tests.airflow_standalone import Api, free_port
from tests.drill_services import PrivateDynamoDB, PrivateMariaDB
from tests.dynamo_tables import drop_tables, table_names
from tests.helpers import RATED_CONTRACT, create_rated
from tests.s3_server import S3Storage

from cutover.contract.load import load_contract
from cutover.extract.staging import Staging
from cutover.sample.generator import load_sample
from cutover.settings import PROJECT_ROOT, Settings
from cutover.stages import phase_store, read_report, run_prepare, run_validate

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.mysql,
    pytest.mark.dynamodb,
    pytest.mark.airflow,
    pytest.mark.cluster,
    pytest.mark.s3,
]

PASSWORD = "cluster-test"
REDIS_DB = os.environ.get("CUTOVER_TEST_CLUSTER_REDIS_DB", "9")  # `make cluster` uses 5
CONTRACT = PROJECT_ROOT / "contracts" / "ecommerce.json"
PREFIX = "cluster_"
HOST = socket.gethostname()
# the sample quarantines these rows on every run (tests/integration/test_sample.py)
SAMPLE_QUARANTINED = 10
# The `rated` contract: 4 partitions of 1,000 rows, 20 s each at 50 items/s. The target stays
# well below what the on-disk DynamoDB Local takes from four loads (about 315 items/s seen in
# CI), so the figure measures the limiter, not the server.
# Its table is on a DynamoDB Local of its own, in memory: the module's on-disk one (SQLite)
# took only 130 items/s from four loads while other tests shared the 2 cores, which measured
# the server, not the limiter. The contract names its own Airflow connection for it.
RATED_ROWS = 4_000
RATED_TARGET = 200
RATED_CONN = "cutover_rated_dynamodb"


@dataclass
class Cluster:
    api: Api
    settings: Settings
    env: dict[str, str]
    run_dir: Path
    mysql: PrivateMariaDB
    dynamodb: PrivateDynamoDB
    storage: S3Storage
    rated_dynamodb: PrivateDynamoDB

    def session(self, component: str) -> int:
        """The session id (pid of its leader) of one component cluster.sh started."""
        return int((self.run_dir / f"{component}.pid").read_text())

    def kill(self, component: str) -> None:
        """SIGKILL to every process of the component's session: the host it ran on died."""
        sid = self.session(component)
        ps = subprocess.run(["ps", "-e", "-o", "pid=,sid="], capture_output=True, text=True)
        for line in ps.stdout.splitlines():
            pid, session = (int(x) for x in line.split())
            if session == sid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def restart_missing(self) -> None:
        """cluster.sh again: it starts what is not running and leaves the rest alone."""
        up = _script("cluster.sh", self.env)
        assert up.returncode == 0, f"cluster.sh failed:\n{up.stdout[-3000:]}\n{up.stderr[-3000:]}"


def _script(name: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(PROJECT_ROOT / "scripts" / name), *args], env=env,
                          capture_output=True, text=True, timeout=900)  # fmt: skip


def _database_exists(env: dict[str, str]) -> bool:
    result = subprocess.run(
        ["bash", "-c", 'source scripts/cluster.env && cutover_pg_admin -c '
         '"SELECT 1 FROM pg_database WHERE datname = \'$CUTOVER_CLUSTER_DB\'"'],
        env=env, capture_output=True, text=True, cwd=PROJECT_ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout.strip() == "1"


def _sessions_alive(sessions: set[int]) -> list[str]:
    ps = subprocess.run(["ps", "-e", "-o", "pid=,sid="], capture_output=True, text=True).stdout
    return [line for line in ps.splitlines() if int(line.split()[1]) in sessions]


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, s3_storage_url: S3Storage
) -> Iterator[Cluster]:
    home = tmp_path_factory.mktemp("cluster")
    with (
        PrivateMariaDB() as mysql,
        PrivateDynamoDB() as dynamodb,
        PrivateDynamoDB(in_memory=True) as rated_dynamodb,
    ):
        env_settings = {
            **os.environ,
            **s3_storage_url.env,
            "CUTOVER_MYSQL_URL": mysql.url("shop"),
            "CUTOVER_DYNAMODB_ENDPOINT": dynamodb.endpoint,
            "CUTOVER_TABLE_PREFIX": PREFIX,
        }
        settings = Settings.from_env(env_settings)
        assert settings.staging.startswith("s3://")
        load_sample(settings, scale=1)
        create_rated(settings, RATED_ROWS)
        contracts = home / "contracts"
        contracts.mkdir()
        shutil.copy(CONTRACT, contracts / CONTRACT.name)
        rated = {**RATED_CONTRACT, "cutover": {"name": "rated", "dynamodb_conn_id": RATED_CONN}}
        (contracts / "rated.json").write_text(json.dumps(rated))
        port = free_port()
        env = {
            **env_settings,
            "CUTOVER_CLUSTER_HOME": str(home / "airflow"),
            "CUTOVER_CLUSTER_PORT": str(port),
            "CUTOVER_CLUSTER_DB": f"cutover_test_{uuid.uuid4().hex[:10]}",
            "CUTOVER_CLUSTER_REDIS_DB": REDIS_DB,
            "CUTOVER_AIRFLOW_PASSWORD": PASSWORD,
            "CUTOVER_CONTRACTS_DIR": str(contracts),
            # only the DAGs this module unpauses run (no nightly reconcile, no validate after)
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            # a killed worker's task is failed (then retried) after 20 s without heartbeat,
            # not the default 5 minutes; retries wait 5 s, then 10, then 20
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
            "CUTOVER_TASK_RETRY_DELAY": "5",
            # the sample's Users table in 18 buckets: compare tasks enough for both workers
            "CUTOVER_VALIDATE_BUCKET_ITEMS": "500",
            f"AIRFLOW_CONN_{RATED_CONN.upper()}": json.dumps({"conn_type": "aws", "extra": {
                "endpoint_url": rated_dynamodb.endpoint, "region_name": settings.region}}),
        }  # fmt: skip
        run_dir = home / "airflow" / "run"
        sessions: set[int] = set()
        try:
            up = _script("cluster.sh", env)
            assert up.returncode == 0, (
                f"cluster.sh failed:\n{up.stdout[-3000:]}\n{up.stderr[-3000:]}"
            )
            assert f"http://127.0.0.1:{port}" in up.stdout
            assert _database_exists(env)
            sessions = {int(p.read_text()) for p in run_dir.glob("*.pid")}
            api = Api(f"http://127.0.0.1:{port}")
            api.token = api.login("admin", PASSWORD)
            for dag_id in ("ecommerce__prepare", "ecommerce__backfill", "rated__backfill"):
                api.wait(f"DAG {dag_id} to be parsed",
                         lambda d=dag_id: api.call("GET", f"/api/v2/dags/{d}"))  # fmt: skip
                api.call("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
            yield Cluster(api, settings, env, run_dir, mysql, dynamodb, s3_storage_url,
                          rated_dynamodb)  # fmt: skip
        finally:
            # restarted components have new sessions: take every pid file's
            sessions |= {int(p.read_text()) for p in run_dir.glob("*.pid") if p.read_text()}
            down = _script("cluster-down.sh", env, "--purge")
    assert down.returncode == 0, f"cluster-down.sh failed:\n{down.stdout}\n{down.stderr}"
    # everything it started is gone, and its database with it
    assert len(sessions) >= 6 and not _sessions_alive(sessions)
    assert not _database_exists(env)


@pytest.fixture
def fresh_tables(cluster: Cluster) -> Cluster:
    """The contract's DynamoDB tables, emptied (deleted and made again by prepare), so a key
    a drill loses cannot hide behind an earlier run's item."""
    client = cluster.dynamodb.client()
    drop_tables(client, PREFIX)
    run_prepare(load_contract(CONTRACT), cluster.settings)
    return cluster


def _trigger(api: Api, dag_id: str, conf: dict[str, Any]) -> str:
    run = api.call("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf})
    return f"/api/v2/dags/{dag_id}/dagRuns/{run['dag_run_id']}"


def _finish(api: Api, path: str, timeout: float = 600) -> None:
    state = api.wait(f"{path} to finish", lambda: (
        r := api.call("GET", path))["state"] in ("success", "failed") and r["state"],
        timeout=timeout)  # fmt: skip
    assert state == "success", f"{path} ended {state}: {_tasks(api, path)}"


def _tasks(api: Api, path: str) -> list[dict[str, Any]]:
    return list(api.call("GET", f"{path}/taskInstances?limit=200")["task_instances"])


def _name(ti: dict[str, Any]) -> str:
    return ti["task_id"] + (f"[{ti['map_index']}]" if ti["map_index"] >= 0 else "")


def _await_task(api: Api, path: str, what: str,
                check: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:  # fmt: skip
    """Poll the run's task instances every 0.5 s until one satisfies ``check`` (an API server
    too busy to answer in time is asked again)."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            tis = _tasks(api, path)
        except OSError:  # a timeout, a refused connection: not the answer we wait for
            continue
        for ti in tis:
            if check(ti):
                return ti
        time.sleep(0.5)  # poll: until a task instance satisfies check
    raise AssertionError(f"no task instance {what} within 300 s: {_tasks(api, path)}")


def _loading_for(seconds: float) -> Callable[[dict[str, Any]], bool]:
    """A load task instance that has been running for ``seconds``: mid-partition."""
    return lambda ti: (
        ti["task_id"] == "load" and ti["state"] == "running" and ti["start_date"] is not None
        and time.time() - _epoch(ti["start_date"]) > seconds)  # fmt: skip


def _full_parity(cluster: Cluster) -> dict[str, Any]:
    """The backfill's evidence, after checking the validation's parity of every table."""
    backfill = phase_store(cluster.settings).evidence("ecommerce")["backfill"]
    assert backfill["complete"] is True and backfill["gate_passed"] is True, backfill
    assert backfill["quarantined"] == SAMPLE_QUARANTINED, backfill
    report = run_validate(load_contract(CONTRACT), cluster.settings)
    assert report["success"] is True, report["report"]
    for table in report["tables"]:
        for entity, figures in table["parity"]["entities"].items():
            where = f"{table['table']}/{entity}"
            assert figures["expected"] > 0, where
            assert figures["missing"] == 0 and figures["extra"] == 0, (where, figures)
            assert figures["mismatched"] == 0 and figures["actual"] == figures["expected"], (
                where, figures)  # fmt: skip
    return backfill


def test_sample_backfill_runs_on_both_workers_with_s3_storage(fresh_tables: Cluster) -> None:
    cluster = fresh_tables
    path = _trigger(cluster.api, "ecommerce__backfill", {"partitions": 2, "workers": 2})
    _finish(cluster.api, path)
    _full_parity(cluster)

    # Airflow's own records: each task instance names the Celery worker that ran it
    ran_on: dict[str, list[str]] = defaultdict(list)
    for ti in _tasks(cluster.api, path):
        assert ti["state"] == "success", ti
        ran_on[ti["hostname"]].append(_name(ti))
    print("\ntask instances by worker:", dict(ran_on))
    assert set(ran_on) == {f"worker1@{HOST}", f"worker2@{HOST}"}, dict(ran_on)
    loads = {w: [t for t in tasks if t.startswith("load[")] for w, tasks in ran_on.items()}
    assert all(loads.values()), f"a worker loaded no partition: {loads}"

    # staging, checkpoints, reports and Data Docs are objects in the bucket, not local files
    keys = cluster.storage.keys()
    assert any(k.endswith(".parquet") for k in keys), keys[:20]
    assert "reports/ecommerce/backfill.json" in keys, keys[:20]
    assert any(k.startswith("gx/") and k.endswith("index.html") for k in keys), keys[:20]


def test_the_validate_dag_compares_buckets_on_both_workers(fresh_tables: Cluster) -> None:
    """The validate DAG on the cluster, storage on S3: each table's sides written by bucket,
    a compare task per bucket spread over both workers, and three planted corruptions (a
    changed value, a missing item, an extra item) named with their keys in the report."""
    cluster, api = fresh_tables, fresh_tables.api
    _finish(api, _trigger(api, "ecommerce__backfill", {"partitions": 1, "workers": 2}))
    client = cluster.dynamodb.client()
    users = PREFIX + "Users"
    profiles = [i for i in client.scan(TableName=users, ConsistentRead=True)["Items"]
                if i["SK"]["S"] == "PROFILE"][:2]  # fmt: skip
    client.put_item(TableName=users, Item={**profiles[0], "username": {"S": "planted"}})
    client.delete_item(TableName=users, Key={"PK": profiles[1]["PK"], "SK": profiles[1]["SK"]})
    client.put_item(TableName=users, Item={"PK": {"S": "USER#999999"}, "SK": {"S": "PROFILE"},
                                           "username": {"S": "ghost"}})  # fmt: skip
    api.call("PATCH", "/api/v2/dags/ecommerce__validate", {"is_paused": False})
    path = _trigger(api, "ecommerce__validate", {})
    state = api.wait(f"{path} to finish", lambda: (
        r := api.call("GET", path))["state"] in ("success", "failed") and r["state"],
        timeout=600)  # fmt: skip
    tis = _tasks(api, path)
    assert state == "failed", tis  # parity fails: the report task says so
    states = {_name(t): t["state"] for t in tis}
    assert states.pop("report") == "failed" and set(states.values()) == {"success"}, states
    hosts = {t["hostname"] for t in tis if t["task_id"] == "compare_bucket"}
    print(f"\ncompare tasks: {sum(t['task_id'] == 'compare_bucket' for t in tis)} on {hosts}")
    assert hosts == {f"worker1@{HOST}", f"worker2@{HOST}"}, hosts
    report = read_report(Staging(cluster.settings.staging), "ecommerce", "validate")
    assert report is not None
    found = {(d["kind"], d["PK"], d["SK"]) for t in report["tables"]
             for d in t["parity"]["differences"]}  # fmt: skip
    assert found == {("mismatch", profiles[0]["PK"]["S"], "PROFILE"),
                     ("missing", profiles[1]["PK"]["S"], "PROFILE"),
                     ("extra", "USER#999999", "PROFILE")}  # fmt: skip
    (users_report,) = [t for t in report["tables"] if t["table"] == "Users"]
    assert users_report["buckets"]["count"] > 2


def test_four_partitions_on_two_workers_keep_the_runs_rate(cluster: Cluster) -> None:
    """`rated`: 4 equal partitions of items of 2 WCUs, at 200 items/s for the whole run. The
    plan gives each load a quarter; the four run at once, two on each worker."""
    rated = cluster.env["CUTOVER_CONTRACTS_DIR"] + "/rated.json"
    on_rated = replace(cluster.settings, dynamodb_endpoint=cluster.rated_dynamodb.endpoint)
    run_prepare(load_contract(rated), on_rated)
    path = _trigger(cluster.api, "rated__backfill",
                    {"partitions": 4, "workers": 2, "rate": RATED_TARGET})  # fmt: skip
    _finish(cluster.api, path)
    manifest = read_report(Staging(cluster.settings.staging), "rated", "backfill")
    assert manifest is not None
    loads = [p["load"] for p in manifest["partitions"]]
    assert len(loads) == 4 and sum(ld["items"] for ld in loads) == RATED_ROWS
    hosts = {t["hostname"] for t in _tasks(cluster.api, path) if t["task_id"] == "load"}
    began = min(_epoch(ld["finished_at"]) - ld["seconds"] for ld in loads)
    ended = max(_epoch(ld["finished_at"]) for ld in loads)
    together = sum(ld["items_per_s"] for ld in loads)
    overall = RATED_ROWS / (ended - began)
    print(f"\nrated: target {RATED_TARGET} items/s; loads on {sorted(hosts)}: "
          f"{[ld['items_per_s'] for ld in loads]} items/s, together {together:.1f}; "
          f"{overall:.1f} items/s over the {ended - began:.1f} s of the load phase")  # fmt: skip
    assert hosts == {f"worker1@{HOST}", f"worker2@{HOST}"}, hosts
    # the loads wrote where the contract's connection points, and nowhere else
    table = f"{PREFIX}Rated"
    rated_client = cluster.rated_dynamodb.client()
    counted = sum(page["Count"] for page in rated_client.get_paginator("scan").paginate(
        TableName=table, Select="COUNT"))  # fmt: skip
    assert counted == RATED_ROWS
    assert table not in table_names(cluster.dynamodb.client())
    # the rates above are printed, not asserted (a clock on a shared machine): what makes
    # them so is that each load's limiter got a quarter of the run's rate
    assert [ld["rate_limit"] for ld in loads] == [RATED_TARGET / 4] * 4, loads


def test_worker_killed_mid_partition_is_retried_on_the_other(fresh_tables: Cluster) -> None:
    cluster = fresh_tables
    # a rate that keeps each load busy for seconds, so the kill lands in the middle of one
    path = _trigger(cluster.api, "ecommerce__backfill",
                    {"partitions": 1, "workers": 2, "rate": 800})  # fmt: skip
    victim = _await_task(cluster.api, path, "loading for 2 s", _loading_for(2))
    worker = victim["hostname"].split("@")[0]
    survivor = {"worker1": "worker2", "worker2": "worker1"}[worker]
    cluster.kill(worker)
    try:
        _finish(cluster.api, path)
    finally:
        cluster.restart_missing()
    after = next(t for t in _tasks(cluster.api, path) if _name(t) == _name(victim))
    print(f"\nkilled {worker} while it ran {_name(victim)}; try {after['try_number']} ran on "
          f"{after['hostname']}")  # fmt: skip
    assert after["try_number"] >= 2, after
    assert after["hostname"] == f"{survivor}@{HOST}", after
    _full_parity(cluster)


def test_scheduler_restarted_during_backfill(fresh_tables: Cluster) -> None:
    cluster = fresh_tables
    path = _trigger(cluster.api, "ecommerce__backfill",
                    {"partitions": 1, "workers": 2, "rate": 1500})  # fmt: skip
    _await_task(cluster.api, path, "loading", lambda ti: (
        ti["task_id"] == "load" and ti["state"] == "running"))  # fmt: skip
    before = cluster.session("scheduler")
    cluster.kill("scheduler")
    time.sleep(3)  # how long the scheduler stays down: the drill's length
    cluster.restart_missing()
    assert cluster.session("scheduler") != before
    _finish(cluster.api, path)
    _full_parity(cluster)


def test_mysql_restarted_during_extraction(fresh_tables: Cluster) -> None:
    cluster = fresh_tables
    path = _trigger(cluster.api, "ecommerce__backfill", {"partitions": 1, "workers": 2})
    # the moment the plan is made the extracts start: MySQL goes down under them
    _await_task(cluster.api, path, "planned", lambda ti: (
        ti["task_id"] == "plan" and ti["state"] == "success"))  # fmt: skip
    cluster.mysql.stop()
    try:
        hit = _await_task(cluster.api, path, "failing for want of MySQL", lambda ti: (
            ti["task_id"] == "extract" and ti["state"] in ("up_for_retry", "failed")))  # fmt: skip
    finally:
        cluster.mysql.start()
    assert hit["state"] == "up_for_retry", hit  # transient: retried, not failed
    _finish(cluster.api, path)
    extracts = [t for t in _tasks(cluster.api, path) if t["task_id"] == "extract"]
    print(f"\nextract tries: {[(_name(t), t['try_number']) for t in extracts]}")
    assert any(t["try_number"] >= 2 for t in extracts)
    _full_parity(cluster)


def test_dynamodb_restarted_during_load(fresh_tables: Cluster) -> None:
    cluster = fresh_tables
    path = _trigger(cluster.api, "ecommerce__backfill",
                    {"partitions": 1, "workers": 2, "rate": 800})  # fmt: skip
    before = _await_written(cluster, path)  # counted by the test, not cutover's report
    cluster.dynamodb.stop()
    # the outage hit a load: it was still running once DynamoDB was gone, with part of the
    # items written
    loads = [t for t in _tasks(cluster.api, path) if t["task_id"] == "load"]
    assert any(t["state"] == "running" for t in loads), loads
    time.sleep(3)  # how long the outage lasts: the drill's length, not a wait for an event
    cluster.dynamodb.start()
    _finish(cluster.api, path)
    loads = [(_name(t), t["try_number"]) for t in _tasks(cluster.api, path)
             if t["task_id"] == "load"]  # fmt: skip
    print(f"\nload tries: {loads}; {before:,} items in DynamoDB when it stopped")
    _full_parity(cluster)
    assert 0 < before < _items(cluster), before


def _await_written(cluster: Cluster, path: str) -> int:
    """Wait until a load task instance runs and DynamoDB holds some of its items; the count."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        _await_task(cluster.api, path, "running", _loading_for(0))
        written = _items(cluster)
        if written > 0:
            return written
        time.sleep(0.2)  # poll: until DynamoDB holds an item
    raise AssertionError(f"no item written within 300 s: {_tasks(cluster.api, path)}")


def _items(cluster: Cluster) -> int:
    client = cluster.dynamodb.client()
    return sum(
        page["Count"]
        for table in load_contract(CONTRACT).tables
        for page in client.get_paginator("scan").paginate(
            TableName=PREFIX + table.table, Select="COUNT"
        )
    )


def _epoch(iso: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
