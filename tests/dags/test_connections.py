"""DAG tasks read MySQL and DynamoDB from the Airflow connections their contract names
(`cutover.mysql_conn_id`, `cutover.dynamodb_conn_id`), through the providers' hooks, into the
same Settings the CLI builds from the environment; secrets stay out of repr and URLs."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.dynamo_tables import drop_tables, table_names

from cutover.airflow_connections import settings_from_connections
from cutover.aws import dynamodb_client
from cutover.contract.load import parse_contract
from cutover.db import connect, query
from cutover.errors import ConfigError, ContractError
from cutover.settings import AwsCredentials, Settings

pytestmark = [pytest.mark.dags, pytest.mark.airflow]

SECRET = "s3cr@t:pw/x"  # URL-quoted in URIs below
SECRET_QUOTED = "s3cr%40t%3Apw%2Fx"


def _aws_conn(endpoint: str | None, region: str, **fields: Any) -> str:
    extra: dict[str, Any] = {"region_name": region}
    if endpoint:
        extra["endpoint_url"] = endpoint
    return json.dumps({"conn_type": "aws", "extra": extra, **fields})


@pytest.fixture
def no_default_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    """`make airflow` exports the default connections; tests must not depend on the caller."""
    for name in ("AIRFLOW_CONN_CUTOVER_MYSQL", "AIRFLOW_CONN_CUTOVER_DYNAMODB"):
        monkeypatch.delenv(name, raising=False)


# --- Settings from connections (hooks read AIRFLOW_CONN_* without a running task) ----------


def test_connections_and_the_equivalent_environment_give_equal_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    staging = (tmp_path / "staging").as_uri()
    cli_env = {
        "CUTOVER_MYSQL_URL": f"mysql://app:{SECRET_QUOTED}@db.example:3307/shop",
        "CUTOVER_DYNAMODB_ENDPOINT": "http://ddb.example:8001",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "CUTOVER_STAGING": staging,
        "CUTOVER_TABLE_PREFIX": "p_",
    }
    monkeypatch.setenv("AIRFLOW_CONN_PROBE_MYSQL", cli_env["CUTOVER_MYSQL_URL"])
    monkeypatch.setenv("AIRFLOW_CONN_PROBE_DDB", _aws_conn("http://ddb.example:8001", "eu-west-1"))
    # The task's environment has no MySQL or DynamoDB settings, and another region: what the
    # connections give must come from the connections.
    task_env = {
        "CUTOVER_STAGING": staging,
        "CUTOVER_TABLE_PREFIX": "p_",
        "AWS_DEFAULT_REGION": "ap-south-1",
    }
    from_connections = settings_from_connections("probe_mysql", "probe_ddb", env=task_env)
    from_env = Settings.from_env(cli_env)
    assert from_connections == from_env
    assert from_connections.mysql.password == SECRET
    assert from_connections.region == "eu-west-1"
    assert from_connections.aws_credentials is None


def test_an_access_key_in_the_connection_signs_the_dynamodb_requests(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_PROBE_MYSQL", "mysql://root@127.0.0.1:3306/shop")
    monkeypatch.setenv(
        "AIRFLOW_CONN_PROBE_DDB",
        _aws_conn("http://127.0.0.1:1", "eu-west-1", login="AKIAPROBE", password=SECRET),
    )
    settings = settings_from_connections("probe_mysql", "probe_ddb")
    assert settings.aws_credentials == AwsCredentials("AKIAPROBE", SECRET)
    assert SECRET not in repr(settings) and "AKIAPROBE" not in repr(settings)

    class Sent(Exception):
        pass

    def capture(request: Any, **_: Any) -> None:
        raise Sent(request.headers["Authorization"].decode())

    client = dynamodb_client(settings, attempts=1)
    client.meta.events.register("before-send.dynamodb", capture)
    with pytest.raises(Sent) as sent:
        client.list_tables()
    assert "Credential=AKIAPROBE/" in str(sent.value)
    assert "/eu-west-1/dynamodb/" in str(sent.value)


def test_the_password_is_never_in_repr_or_the_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_PROBE_MYSQL", f"mysql://app:{SECRET_QUOTED}@db.example:3307/shop"
    )
    monkeypatch.setenv("AIRFLOW_CONN_PROBE_DDB", _aws_conn(None, "eu-west-1"))
    settings = settings_from_connections("probe_mysql", "probe_ddb")
    assert settings.mysql.password == SECRET
    for text in (repr(settings), str(settings), repr(settings.mysql), settings.mysql.url):
        assert SECRET not in text and SECRET_QUOTED not in text
    assert settings.mysql.url == "mysql://app:***@db.example:3307/shop"


@pytest.mark.parametrize(
    ("mysql_id", "dynamodb_id", "missing"),
    [
        ("shop_eu_mysql", "probe_ddb", "shop_eu_mysql"),
        ("probe_mysql", "shop_eu_ddb", "shop_eu_ddb"),
    ],
)
def test_a_named_connection_that_is_not_defined_is_a_config_error_naming_it(
    monkeypatch: pytest.MonkeyPatch, mysql_id: str, dynamodb_id: str, missing: str
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_PROBE_MYSQL", "mysql://root@127.0.0.1:3306/shop")
    monkeypatch.setenv("AIRFLOW_CONN_PROBE_DDB", _aws_conn(None, "eu-west-1"))
    # the environment would work: a named connection never falls back to it
    monkeypatch.setenv("CUTOVER_MYSQL_URL", "mysql://root@127.0.0.1:3306/shop")
    with pytest.raises(ConfigError) as error:
        settings_from_connections(mysql_id, dynamodb_id)
    message = str(error.value)
    assert f"'{missing}'" in message and f"AIRFLOW_CONN_{missing.upper()}" in message


def test_the_default_connections_fall_back_to_the_environment_when_not_defined(
    no_default_connections: None, tmp_path: Path
) -> None:
    env = {
        "CUTOVER_MYSQL_URL": "mysql://app@db.example:3307/shop",
        "CUTOVER_DYNAMODB_ENDPOINT": "http://ddb.example:8001",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "CUTOVER_STAGING": (tmp_path / "staging").as_uri(),
    }
    settings = settings_from_connections(env=env)
    assert settings == Settings.from_env(env)
    assert settings.mysql.host == "db.example"


def test_the_contract_names_its_connections_with_defaults_and_checks_them() -> None:
    table = {"table": "Notes", "type": "single-entity", "source_table": "notes", "pk": "id",
             "attributes": [{"name": "id", "type": "N", "source_table": "notes",
                             "source_column": "id"}]}  # fmt: skip
    plain = parse_contract({"tables": [table]})
    assert (plain.cutover.mysql_conn_id, plain.cutover.dynamodb_conn_id) == (
        "cutover_mysql",
        "cutover_dynamodb",
    )
    named = parse_contract(
        {"tables": [table], "cutover": {"mysql_conn_id": "eu.mysql-1", "dynamodb_conn_id": "d"}}
    )
    assert (named.cutover.mysql_conn_id, named.cutover.dynamodb_conn_id) == ("eu.mysql-1", "d")
    with pytest.raises(ContractError) as error:
        parse_contract(
            {"tables": [table], "cutover": {"mysql_conn_id": "my sql", "dynamodb_conn_id": ""}}
        )
    paths = [path for path, _ in error.value.problems]
    assert paths == ["cutover.mysql_conn_id", "cutover.dynamodb_conn_id"]
    assert "not an Airflow connection id" in error.value.problems[0][1]


# --- a real DAG run reads its connections --------------------------------------------------

PROBE_CONTRACT = {
    "cutover": {"name": "conn_probe", "mysql_conn_id": "probe_mysql",
                "dynamodb_conn_id": "probe_dynamodb"},
    "tables": [{"table": "Notes", "type": "single-entity", "source_table": "notes", "pk": "id",
                "attributes": [
                    {"name": "id", "type": "N", "source_table": "notes", "source_column": "id"},
                    {"name": "body", "type": "S", "source_table": "notes",
                     "source_column": "body"}]}],
}  # fmt: skip


@pytest.fixture
def probe(
    scratch_db: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    """The probe contract's connections point at ``scratch_db`` and the test's DynamoDB, while
    the environment points at a database that does not exist and a port nothing listens on:
    a task that read the environment instead would fail."""
    from cutover.dags import factory

    m = scratch_db.mysql
    conn = connect(m)
    try:
        query(conn, "CREATE TABLE notes (id INT PRIMARY KEY, body VARCHAR(50))")
        query(conn, "INSERT INTO notes VALUES (1, 'hello')")
    finally:
        conn.close()
    contracts = tmp_path / "contracts"
    contracts.mkdir()
    (contracts / "conn_probe.json").write_text(json.dumps(PROBE_CONTRACT))
    prefix = f"{scratch_db.table_prefix}conn_"
    auth = m.user + (f":{m.password}" if m.password else "")
    monkeypatch.setenv("CUTOVER_CONTRACTS_DIR", str(contracts))
    monkeypatch.setenv("AIRFLOW_CONN_PROBE_MYSQL", f"mysql://{auth}@{m.host}:{m.port}/{m.database}")
    monkeypatch.setenv(
        "AIRFLOW_CONN_PROBE_DYNAMODB", _aws_conn(scratch_db.dynamodb_endpoint, scratch_db.region)
    )
    absent = f"cutover_absent_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("CUTOVER_MYSQL_URL", f"mysql://{auth}@{m.host}:{m.port}/{absent}")
    monkeypatch.setenv("CUTOVER_DYNAMODB_ENDPOINT", "http://127.0.0.1:1")
    monkeypatch.setenv("CUTOVER_STAGING", (tmp_path / "staging").as_uri())
    monkeypatch.setenv("CUTOVER_TABLE_PREFIX", prefix)
    # Should a task read the environment, it fails at once rather than after minutes of retries.
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setitem(factory.DEFAULT_ARGS, "retries", 0)
    yield scratch_db
    client = dynamodb_client(scratch_db)
    drop_tables(client, prefix)


def test_the_prepare_dag_applies_views_in_the_connections_database(probe: Settings) -> None:
    from cutover.dags.local_run import run_dag

    run_dag("conn_probe__prepare")

    conn = connect(probe.mysql)
    try:
        views = query(
            conn,
            "SELECT table_name FROM information_schema.views WHERE table_schema = %s",
            (probe.mysql.database,),
        )
        assert views == [("cutover_conn_probe_notes",)]
        assert query(conn, "SELECT id, body FROM cutover_conn_probe_notes") == [(1, "hello")]
        absent = os.environ["CUTOVER_MYSQL_URL"].rsplit("/", 1)[1]
        assert query(conn, "SHOW DATABASES LIKE %s", (absent,)) == []
    finally:
        conn.close()
    tables = table_names(dynamodb_client(probe))
    assert f"{os.environ['CUTOVER_TABLE_PREFIX']}Notes" in tables
