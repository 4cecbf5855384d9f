"""docker-compose.yml describes the production shape; `docker-compose config` (Debian's
docker-compose, installed by `make setup`) validates it without a Docker engine."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest
import yaml

from cutover.settings import PROJECT_ROOT

pytestmark = pytest.mark.unit

AIRFLOW_SERVICES = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
                    "airflow-worker", "airflow-triggerer")  # fmt: skip


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
    assert services["airflow-worker"]["command"] == "celery worker"


def test_sources_and_targets_are_mysql_8_and_dynamodb_local(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["mysql"]["image"].startswith("mysql:8")
    assert services["dynamodb"]["image"].startswith("amazon/dynamodb-local")
    env = services["airflow-worker"]["environment"]
    assert env["CUTOVER_MYSQL_URL"].startswith("mysql://") and "@mysql:" in env["CUTOVER_MYSQL_URL"]
    assert env["CUTOVER_DYNAMODB_ENDPOINT"] == "http://dynamodb:8000"


def test_every_airflow_service_mounts_the_project(compose: dict[str, Any]) -> None:
    for name in AIRFLOW_SERVICES:
        targets = {str(v).split(":")[1] for v in compose["services"][name]["volumes"]}
        for folder in ("dags", "include", "plugins", "contracts"):
            assert f"/opt/airflow/{folder}" in targets, (name, folder)
