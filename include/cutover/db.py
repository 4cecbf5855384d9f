"""MySQL connections (mysqlclient), shared by every stage."""

from __future__ import annotations

from typing import Any

import MySQLdb
import MySQLdb.cursors

from cutover.errors import ServiceError
from cutover.settings import MySQLSettings


def connect(mysql: MySQLSettings, *, database: bool = True, **kwargs: Any) -> Any:
    """Open a utf8mb4 connection in UTC; ``database=False`` connects without selecting one.
    One statement per call: multi-statements are off, so no text can smuggle a second one."""
    params: dict[str, Any] = {
        "host": mysql.host,
        "port": mysql.port,
        "user": mysql.user,
        "passwd": mysql.password,
        "charset": "utf8mb4",
        "use_unicode": True,
        "autocommit": True,
        "init_command": "SET time_zone = '+00:00'",
        **kwargs,
        "multi_statements": False,
    }
    if database:
        params["db"] = mysql.database
    try:
        return MySQLdb.connect(**params)
    except MySQLdb.OperationalError as exc:
        raise ServiceError(
            f"cannot connect to MySQL at {mysql.url}: {exc.args[-1]}; "
            "start the local one with `cutover up` or set CUTOVER_MYSQL_URL"
        ) from None


def query(
    conn: Any, sql: str, params: tuple[Any, ...] | dict[str, Any] | None = None
) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return list(cur.fetchall())


def quote_ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def literal(conn: Any, value: Any) -> str:
    """``value`` as an SQL literal, escaped by the connection."""
    text = conn.literal(value)
    return text.decode() if isinstance(text, bytes) else str(text)
