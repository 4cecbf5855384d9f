"""Connection settings, read from the environment.

``CUTOVER_MYSQL_URL``          mysql://user:password@host:port/database
``CUTOVER_DYNAMODB_ENDPOINT``  DynamoDB endpoint URL; unset or empty means AWS itself
``CUTOVER_STAGING``            file:///path or s3://bucket/prefix for Parquet staging
``CUTOVER_TABLE_PREFIX``       prefix put before every DynamoDB table name (isolates runs)
``AWS_DEFAULT_REGION``         region, us-east-1 when unset
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from cutover.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
LOCAL_DIR = PROJECT_ROOT / ".local"
DEFAULT_MYSQL_URL = "mysql://root@127.0.0.1:3306/shop"
LOCAL_DYNAMODB_ENDPOINT = "http://127.0.0.1:8000"


@dataclass(frozen=True)
class MySQLSettings:
    host: str
    port: int
    user: str
    password: str
    database: str

    @classmethod
    def from_url(cls, url: str) -> MySQLSettings:
        parsed = urlparse(url)
        if parsed.scheme not in ("mysql", "mariadb", "mysql+mysqldb"):
            raise ConfigError(
                f"CUTOVER_MYSQL_URL {url!r} must start with mysql://, "
                "e.g. mysql://root@127.0.0.1:3306/shop"
            )
        database = parsed.path.lstrip("/")
        if not database:
            raise ConfigError(
                f"CUTOVER_MYSQL_URL {url!r} names no database; add one after the port, "
                "e.g. mysql://root@127.0.0.1:3306/shop"
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
class Settings:
    mysql: MySQLSettings
    dynamodb_endpoint: str | None
    staging: str
    table_prefix: str
    region: str

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        staging = env.get("CUTOVER_STAGING") or (LOCAL_DIR / "staging").as_uri()
        if not staging.startswith(("file://", "s3://")):
            raise ConfigError(f"CUTOVER_STAGING {staging!r} must be a file:// or s3:// URL")
        return cls(
            mysql=MySQLSettings.from_url(env.get("CUTOVER_MYSQL_URL") or DEFAULT_MYSQL_URL),
            dynamodb_endpoint=env.get("CUTOVER_DYNAMODB_ENDPOINT") or None,
            staging=staging,
            table_prefix=env.get("CUTOVER_TABLE_PREFIX", ""),
            region=env.get("AWS_DEFAULT_REGION") or env.get("AWS_REGION") or "us-east-1",
        )
