"""Connection settings. The CLI reads them from the environment (``Settings.from_env``); DAG
tasks read MySQL and DynamoDB from Airflow connections
(``cutover.airflow_connections.settings_from_connections``). Both build them through
``Settings.from_parts``, so the same services give equal ``Settings``.

``CUTOVER_MYSQL_URL``          mysql://user:password@host:port/database
``CUTOVER_DYNAMODB_ENDPOINT``  DynamoDB endpoint URL; unset or empty means AWS itself
``CUTOVER_STAGING``            file:///path or s3://bucket/prefix: the one storage URL of staged
                              Parquet, checkpoints, quarantine, the stage reports
                              (reports/<contract>/) and the GX project with its Data Docs
                              (gx/); default .local/staging. ``AWS_ENDPOINT_URL_S3`` points
                              s3:// at an S3-compatible endpoint (see cutover.extract.staging)
``CUTOVER_TABLE_PREFIX``       prefix put before every DynamoDB table name (isolates runs)
``AWS_DEFAULT_REGION``         region, us-east-1 when unset

Secrets (the MySQL password, AWS keys) are left out of ``repr``/``str`` and of
``MySQLSettings.url``: print, log or report those, never the fields themselves.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

from cutover.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
LOCAL_DIR = PROJECT_ROOT / ".local"
DEFAULT_MYSQL_URL = "mysql://root@127.0.0.1:3307/shop"
LOCAL_DYNAMODB_ENDPOINT = "http://127.0.0.1:8000"


@dataclass(frozen=True)
class MySQLSettings:
    host: str
    port: int
    user: str
    password: str = field(repr=False)
    database: str

    @classmethod
    def from_url(cls, url: str) -> MySQLSettings:
        parsed = urlparse(url)
        if parsed.scheme not in ("mysql", "mariadb", "mysql+mysqldb"):
            raise ConfigError(
                f"CUTOVER_MYSQL_URL {url!r} must start with mysql://, "
                "e.g. mysql://root@127.0.0.1:3307/shop"
            )
        database = parsed.path.lstrip("/")
        if not database:
            raise ConfigError(
                f"CUTOVER_MYSQL_URL {url!r} names no database; add one after the port, "
                "e.g. mysql://root@127.0.0.1:3307/shop"
            )
        return cls(
            host=parsed.hostname or "127.0.0.1",
            port=parsed.port or 3306,
            user=unquote(parsed.username or "root"),
            password=unquote(parsed.password or ""),
            database=database,
        )

    def with_database(self, database: str) -> MySQLSettings:
        return MySQLSettings(self.host, self.port, self.user, self.password, database)

    @property
    def url(self) -> str:
        auth = self.user + (":***" if self.password else "")
        return f"mysql://{auth}@{self.host}:{self.port}/{self.database}"


@dataclass(frozen=True)
class AwsCredentials:
    """An access key given with the settings (an Airflow connection's login and password);
    without one, boto3 finds credentials itself (environment, profile, instance role)."""

    access_key_id: str = field(repr=False)
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)


def env_region(env: Mapping[str, str]) -> str:
    return env.get("AWS_DEFAULT_REGION") or env.get("AWS_REGION") or "us-east-1"


@dataclass(frozen=True)
class Settings:
    mysql: MySQLSettings
    dynamodb_endpoint: str | None
    staging: str
    table_prefix: str
    region: str
    aws_credentials: AwsCredentials | None = field(default=None, repr=False)

    @classmethod
    def from_parts(
        cls,
        *,
        mysql: MySQLSettings,
        dynamodb_endpoint: str | None,
        region: str | None = None,
        aws_credentials: AwsCredentials | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Settings:
        """The one constructor of every source: MySQL, DynamoDB endpoint (empty means AWS),
        region and credentials as given; staging and table prefix, and the region when none
        is given, from ``env`` (default ``os.environ``)."""
        env = os.environ if env is None else env
        staging = env.get("CUTOVER_STAGING") or (LOCAL_DIR / "staging").as_uri()
        if not staging.startswith(("file://", "s3://")):
            raise ConfigError(f"CUTOVER_STAGING {staging!r} must be a file:// or s3:// URL")
        return cls(
            mysql=mysql,
            dynamodb_endpoint=dynamodb_endpoint or None,
            staging=staging,
            table_prefix=env.get("CUTOVER_TABLE_PREFIX", ""),
            region=region or env_region(env),
            aws_credentials=aws_credentials,
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        return cls.from_parts(
            mysql=MySQLSettings.from_url(env.get("CUTOVER_MYSQL_URL") or DEFAULT_MYSQL_URL),
            dynamodb_endpoint=env.get("CUTOVER_DYNAMODB_ENDPOINT"),
            env=env,
        )
