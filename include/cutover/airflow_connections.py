"""``Settings`` from Airflow connections: what DAG tasks use, where the CLI reads the
environment (``Settings.from_env``). A contract names its connections in its ``cutover``
section (``mysql_conn_id``, ``dynamodb_conn_id``); `make airflow` defines the default ones,
``cutover_mysql`` and ``cutover_dynamodb``, from the same environment as the CLI.

The MySQL connection (read through the mysql provider's ``MySqlHook``) gives host, port,
login, password and schema (the database). The DynamoDB connection (the amazon provider's
``AwsBaseHook``, type ``aws``) gives ``endpoint_url`` and ``region_name`` from its extra (no
endpoint means AWS itself; no region means ``AWS_DEFAULT_REGION``, else us-east-1) and an
access key from its login/password (or extra ``aws_access_key_id``/``aws_secret_access_key``);
without one, boto3 finds credentials itself. Staging (``CUTOVER_STAGING``) and the table prefix
(``CUTOVER_TABLE_PREFIX``) always come from the environment.

Airflow is imported only when connections are read, so the CLI and DAG parsing stay light.
Connection passwords are masked in task logs by Airflow, and left out of ``Settings``' repr.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from cutover.errors import ConfigError
from cutover.settings import DEFAULT_MYSQL_URL, AwsCredentials, MySQLSettings, Settings

DEFAULT_MYSQL_CONN_ID = "cutover_mysql"
DEFAULT_DYNAMODB_CONN_ID = "cutover_dynamodb"

log = logging.getLogger(__name__)


def settings_from_connections(
    mysql_conn_id: str = DEFAULT_MYSQL_CONN_ID,
    dynamodb_conn_id: str = DEFAULT_DYNAMODB_CONN_ID,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """``Settings`` for the MySQL and DynamoDB Airflow connections ``mysql_conn_id`` and
    ``dynamodb_conn_id``; the rest from ``env`` (default ``os.environ``).

    Fallback: a connection that is not defined under its *default* id (``cutover_mysql``,
    ``cutover_dynamodb``) is replaced by the environment, as for the CLI (``CUTOVER_MYSQL_URL``;
    ``CUTOVER_DYNAMODB_ENDPOINT`` and ``AWS_DEFAULT_REGION``), so `make demo`'s ``dag.test()``
    runs without connections. A connection a contract names itself (any other id) must exist:
    when it does not, this raises ``ConfigError`` naming it and saying how to define it."""
    env = os.environ if env is None else env
    mysql = _mysql(mysql_conn_id, env)
    endpoint, region, credentials = _dynamodb(dynamodb_conn_id, env)
    return Settings.from_parts(
        mysql=mysql,
        dynamodb_endpoint=endpoint,
        region=region,
        aws_credentials=credentials,
        env=env,
    )


def settings_for_contract(contract: Any) -> Settings:
    """``Settings`` from the connections a contract names in its ``cutover`` section: what
    DAG tasks and the Migrations panel use."""
    options = contract.cutover
    return settings_from_connections(options.mysql_conn_id, options.dynamodb_conn_id)


def _missing(conn_id: str, kind: str, conn_type: str, example: str) -> ConfigError:
    return ConfigError(
        f"Airflow connection {conn_id!r} ({kind}) is not defined; define it in the Airflow UI "
        f"(Admin > Connections, type {conn_type}) or as the environment variable "
        f"AIRFLOW_CONN_{conn_id.upper()}, e.g. AIRFLOW_CONN_{conn_id.upper()}='{example}'"
    )


def _mysql(conn_id: str, env: Mapping[str, str]) -> MySQLSettings:
    from airflow.providers.mysql.hooks.mysql import MySqlHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    hook = MySqlHook(mysql_conn_id=conn_id)
    try:
        conn = hook.get_connection(conn_id)
    except AirflowNotFoundException:
        if conn_id == DEFAULT_MYSQL_CONN_ID:
            mysql = MySQLSettings.from_url(env.get("CUTOVER_MYSQL_URL") or DEFAULT_MYSQL_URL)
            log.info(
                "no Airflow connection %r: MySQL %s from CUTOVER_MYSQL_URL", conn_id, mysql.url
            )
            return mysql
        raise _missing(
            conn_id, "MySQL", "MySQL", "mysql://user:password@host:3306/database"
        ) from None
    if not conn.schema:
        raise ConfigError(
            f"Airflow connection {conn_id!r} names no database; set its schema (the part after "
            "the port in a URI, e.g. mysql://user:password@host:3306/shop)"
        )
    return MySQLSettings(
        host=conn.host or "127.0.0.1",
        port=int(conn.port or 3306),
        user=conn.login or "root",
        password=conn.password or "",
        database=conn.schema,
    )


def _dynamodb(
    conn_id: str, env: Mapping[str, str]
) -> tuple[str | None, str | None, AwsCredentials | None]:
    """Endpoint (None: AWS), region (None: from the environment) and credentials (None:
    boto3's own) of the DynamoDB connection."""
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    hook = AwsBaseHook(aws_conn_id=conn_id, client_type="dynamodb")
    try:
        # AwsBaseHook.conn_config turns a missing connection into an empty one: ask first.
        hook.get_connection(conn_id)
    except AirflowNotFoundException:
        if conn_id == DEFAULT_DYNAMODB_CONN_ID:
            endpoint = env.get("CUTOVER_DYNAMODB_ENDPOINT") or None
            log.info(
                "no Airflow connection %r: DynamoDB %s from CUTOVER_DYNAMODB_ENDPOINT",
                conn_id,
                endpoint or "AWS",
            )
            return endpoint, None, None
        example = '{"conn_type": "aws", "extra": {"region_name": "us-east-1"}}'
        raise _missing(conn_id, "DynamoDB", "Amazon Web Services", example) from None
    config: Any = hook.conn_config
    if config.role_arn or config.profile_name:
        raise ConfigError(
            f"Airflow connection {conn_id!r} uses role_arn or profile_name, which cutover does "
            "not read; give it an access key (login and password) or none (boto3's default "
            "credentials: environment, profile, instance or task role)"
        )
    credentials = None
    if config.aws_access_key_id and config.aws_secret_access_key:
        credentials = AwsCredentials(
            access_key_id=config.aws_access_key_id,
            secret_access_key=config.aws_secret_access_key,
            session_token=config.aws_session_token or None,
        )
    endpoint = config.get_service_endpoint_url("dynamodb") or None
    return endpoint, config.region_name or None, credentials
