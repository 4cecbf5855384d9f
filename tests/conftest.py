"""Shared fixtures: settings for the local services and isolated scratch space in each.

Every test session gets its own DynamoDB table prefix, its own MySQL databases and its own
Airflow home, so parallel or repeated runs never see each other's data, and the user's
Airflow home (`.local/airflow`, which `scripts/local.env` exports) is never touched.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cutover.settings import LOCAL_DIR, LOCAL_DYNAMODB_ENDPOINT, PROJECT_ROOT, Settings
from tests.s3_server import s3_storage_url  # noqa: F401  (the local S3 endpoint fixture)

RUN_ID = uuid.uuid4().hex[:8]

# This session's own Airflow home (metadata database, logs, airflow.cfg), removed at the end
# of the session unless CUTOVER_KEEP_AIRFLOW_HOME is set (`dag.test()` prints task logs anyway).
AIRFLOW_HOME = LOCAL_DIR / "test-airflow" / RUN_ID
AIRFLOW_HOME.mkdir(parents=True, exist_ok=True)

# Airflow reads its configuration at import, so this runs before any test module imports it,
# and overrides whatever the caller exported (scripts/local.env exports the user's home).
# Subprocesses (the CLI, `airflow db migrate`, `airflow standalone`) inherit os.environ.
os.environ["AIRFLOW_HOME"] = str(AIRFLOW_HOME)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(PROJECT_ROOT / "dags")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
# The storage URL too: staged Parquet, checkpoints, quarantine files, the stage reports and
# the GX project with its Data Docs (the user's are in .local/staging).
os.environ["CUTOVER_STAGING"] = (AIRFLOW_HOME / "staging").as_uri()
# Generated suites of test contracts too: the project's expectations/ holds people's suites.
os.environ["CUTOVER_EXPECTATIONS_DIR"] = str(AIRFLOW_HOME / "expectations")
# Settings that would send Airflow's state somewhere else than AIRFLOW_HOME.
for _name in (
    "AIRFLOW_CONFIG",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_SECRET",
    "AIRFLOW__LOGGING__BASE_LOG_FOLDER",
    # connections exported for `make airflow` would send DAG tasks to the user's services
    "AIRFLOW_CONN_CUTOVER_MYSQL",
    "AIRFLOW_CONN_CUTOVER_DYNAMODB",
):
    os.environ.pop(_name, None)


# Longest first: `make test` runs the suite on two pytest-xdist workers, each taking whole
# modules in this order, so the long modules start at once and the short ones fill in around
# them. The cluster module alone takes about a third of the suite's time.
_FIRST = ("tests/e2e/test_cluster.py", "tests/e2e/test_phase_walk.py", "tests/e2e/test_bench.py")
_LAYERS = ("tests/e2e/", "tests/integration/", "tests/dags/", "tests/unit/")


def _order(item: pytest.Item) -> tuple[int, int]:
    path = Path(item.path).relative_to(PROJECT_ROOT).as_posix()
    if path in _FIRST:
        return (0, _FIRST.index(path))
    layer = next((i for i, prefix in enumerate(_LAYERS) if path.startswith(prefix)), len(_LAYERS))
    return (1 + layer, 0)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_order)  # stable: a module's tests keep their order
    for item in items:  # the layer's marker, from the folder, where a module does not say
        layer = Path(item.path).parent.name
        if (
            layer in ("unit", "integration", "dags", "e2e")
            and item.get_closest_marker(layer) is None
        ):
            item.add_marker(layer)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("CUTOVER_KEEP_AIRFLOW_HOME") is None:
        shutil.rmtree(AIRFLOW_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def airflow_home() -> Path:
    """This session's Airflow home, never the user's `.local/airflow` (that of `make demo`
    and `make airflow`)."""
    return AIRFLOW_HOME


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
            # a connection a test leaked with a transaction open fails the teardown in a
            # minute, naming itself, instead of holding the suite until the CI limit
            cur.execute("SET SESSION lock_wait_timeout = 60")
            try:
                cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
            except Exception as exc:
                cur.execute("SELECT id, command, time, state FROM information_schema.processlist"
                            " WHERE db = %s", (name,))  # fmt: skip
                raise AssertionError(
                    f"could not drop {name} ({exc}); connections left open: {cur.fetchall()}"
                ) from exc
        admin.close()


def _with_database(settings: Settings, name: str) -> Settings:
    from dataclasses import replace

    return replace(settings, mysql=settings.mysql.with_database(name))
