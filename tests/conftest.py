"""Shared fixtures: settings for the local services and isolated scratch space in each.

Every test session gets its own DynamoDB table prefix and its own MySQL databases, so
parallel or repeated runs never see each other's data.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from cutover.settings import LOCAL_DIR, LOCAL_DYNAMODB_ENDPOINT, PROJECT_ROOT, Settings

RUN_ID = uuid.uuid4().hex[:8]

# Airflow reads its configuration at import: point it at the project before any test does.
os.environ.setdefault("AIRFLOW_HOME", str(LOCAL_DIR / "airflow"))
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(PROJECT_ROOT / "dags"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")


@pytest.fixture(scope="session")
def settings() -> Settings:
    env = dict(os.environ)
    env.setdefault("CUTOVER_DYNAMODB_ENDPOINT", LOCAL_DYNAMODB_ENDPOINT)
    env["CUTOVER_TABLE_PREFIX"] = f"t{RUN_ID}_"
    return Settings.from_env(env)


@pytest.fixture(scope="session")
def ddb(settings: Settings) -> Any:
    from cutover.aws import dynamodb_client

    return dynamodb_client(settings)


@pytest.fixture
def scratch_db(settings: Settings, request: pytest.FixtureRequest) -> Iterator[Settings]:
    """A fresh, empty MySQL database for one test; dropped afterwards."""
    from cutover.db import connect

    name = f"cutover_test_{RUN_ID}_{uuid.uuid4().hex[:6]}"
    admin = connect(settings.mysql, database=False)
    try:
        with admin.cursor() as cur:
            cur.execute(
                f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
            )
        yield _with_database(settings, name)
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()


def _with_database(settings: Settings, name: str) -> Settings:
    from dataclasses import replace

    return replace(settings, mysql=settings.mysql.with_database(name))
