"""docker-compose.yml describes the production shape; `docker-compose config` (Debian's
docker-compose, installed by `make setup`) validates it without a Docker engine. `make cluster`
runs the same shape on one machine: the same components and the same Airflow settings
(scripts/cluster.env), only hosts and paths differ."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from cutover.settings import PROJECT_ROOT

pytestmark = pytest.mark.unit

CLUSTER_ENV = PROJECT_ROOT / "scripts" / "cluster.env"
# every Airflow component: the services of docker-compose.yml, the processes of `make cluster`
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer", "worker1", "worker2")
AIRFLOW_SERVICES = tuple(f"airflow-{c}" for c in COMPONENTS)
WORKERS = ("airflow-worker1", "airflow-worker2")
# Containers share no airflow.cfg, so compose gives every one the JWT secret; the processes of
# `make cluster` share the airflow.cfg of their home, where Airflow generated one.
COMPOSE_ONLY = {"AIRFLOW__API_AUTH__JWT_SECRET"}
# settings, not addresses nor paths: equal in both
SAME_VALUE = (
    "AIRFLOW__CORE__EXECUTOR",
    "AIRFLOW__CORE__AUTH_MANAGER",
    "AIRFLOW__CORE__LOAD_EXAMPLES",
    "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION",
    "AIRFLOW__CORE__PARALLELISM",
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS",
    "AIRFLOW__API__PORT",
    "AIRFLOW__CELERY__WORKER_CONCURRENCY",
)
# where `make cluster` says 127.0.0.1, compose names the service
SAME_BUT_HOST = {
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgres",
    "AIRFLOW__CELERY__RESULT_BACKEND": "postgres",
    "AIRFLOW__CELERY__BROKER_URL": "redis",
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": "airflow-api-server",
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    binary = shutil.which("docker-compose")
    assert binary, "docker-compose is not installed; run `make setup`"
    result = subprocess.run(
        [binary, "-f", str(PROJECT_ROOT / "docker-compose.yml"), "config"],
        capture_output=True, text=True, cwd=PROJECT_ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def _bash(script: str) -> str:
    """Run ``script`` after sourcing scripts/cluster.env, in an environment of nothing else
    (the defaults of `make cluster`, not what this session exported)."""
    result = subprocess.run(
        ["bash", "-c", f'source "{CLUSTER_ENV}" && {script}'],
        env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"},
        capture_output=True, text=True, cwd=PROJECT_ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def cluster_env() -> dict[str, str]:
    """What `make cluster` exports to Airflow: the AIRFLOW__ settings and AIRFLOW_CONN_ ids."""
    out = _bash("env -0").split("\0")
    pairs = (line.split("=", 1) for line in out if "=" in line)
    return {k: v for k, v in pairs if k.startswith(("AIRFLOW__", "AIRFLOW_CONN_"))}


def test_airflow_runs_on_celery_with_postgres_and_redis(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in AIRFLOW_SERVICES:
        env = services[name]["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql"), name
        assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://redis"), name
        assert services[name]["image"].startswith("apache/airflow:3."), name
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["redis"]["image"].startswith("redis:")


def test_the_services_are_the_components_of_make_cluster(compose: dict[str, Any]) -> None:
    """One service per component of scripts/cluster.env, each running the same `airflow`
    command as `make cluster` does: two Celery workers with distinct names."""
    components = _bash('echo "${CUTOVER_CLUSTER_COMPONENTS[@]}"').split()
    assert tuple(components) == COMPONENTS
    services = compose["services"]
    airflow_services = {n for n, s in services.items() if s.get("image", "").startswith(
        "apache/airflow")} - {"airflow-init"}  # fmt: skip
    assert airflow_services == set(AIRFLOW_SERVICES)
    for component in COMPONENTS:
        command = services[f"airflow-{component}"]["command"]
        assert command == _bash(f"cutover_cluster_command {component}").strip(), component
    assert services["airflow-worker1"]["command"] == "celery worker --celery-hostname worker1@%h"
    # in compose each worker is its own host: the name task instances record
    assert [services[w]["hostname"] for w in WORKERS] == list(WORKERS)


def test_compose_sets_what_make_cluster_sets(
    compose: dict[str, Any], cluster_env: dict[str, str]
) -> None:
    for name in AIRFLOW_SERVICES:
        env = {k: str(v) for k, v in compose["services"][name]["environment"].items()
               if k.startswith(("AIRFLOW__", "AIRFLOW_CONN_"))}  # fmt: skip
        assert set(env) - set(cluster_env) == COMPOSE_ONLY, name
        assert set(cluster_env) - set(env) == set(), name
        for key in SAME_VALUE:
            assert env[key] == cluster_env[key], (name, key)
        for key, host in SAME_BUT_HOST.items():
            local = urlsplit(cluster_env[key])
            assert local.hostname == "127.0.0.1", key
            assert env[key] == cluster_env[key].replace("127.0.0.1", host, 1), (name, key)
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert env["AIRFLOW__CELERY__BROKER_URL"].endswith("/5")  # Redis db of scripts/cluster.env


def test_sources_and_targets_are_mysql_8_and_dynamodb_local(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["mysql"]["image"].startswith("mysql:8")
    assert services["dynamodb"]["image"].startswith("amazon/dynamodb-local")
    for worker in WORKERS:
        env = services[worker]["environment"]
        url = env["CUTOVER_MYSQL_URL"]
        assert url.startswith("mysql://") and "@mysql:" in url
        assert env["CUTOVER_DYNAMODB_ENDPOINT"] == "http://dynamodb:8000"
        assert env["AIRFLOW_CONN_CUTOVER_MYSQL"] == url
        assert '"endpoint_url": "http://dynamodb:8000"' in env["AIRFLOW_CONN_CUTOVER_DYNAMODB"]


def test_every_airflow_service_mounts_the_project(compose: dict[str, Any]) -> None:
    for name in AIRFLOW_SERVICES:
        targets = {str(v).split(":")[1] for v in compose["services"][name]["volumes"]}
        for folder in ("dags", "include", "plugins", "contracts"):
            assert f"/opt/airflow/{folder}" in targets, (name, folder)
