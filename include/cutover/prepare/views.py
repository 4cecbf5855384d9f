"""Applying a contract's views; a view whose definition would not change is left alone."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Literal

import MySQLdb

from cutover.contract.model import Contract
from cutover.contract.views import Dialect, select_sql, view_name
from cutover.db import query, quote_ident
from cutover.errors import ContractError


@dataclass(frozen=True)
class ViewChange:
    view: str
    action: Literal["created", "replaced", "unchanged"]


def detect_dialect(conn: Any) -> Dialect:
    (version,) = query(conn, "SELECT VERSION()")[0]
    return "mariadb" if "mariadb" in str(version).lower() else "mysql"


def _definition(conn: Any, view: str) -> str | None:
    rows = query(
        conn,
        "SELECT VIEW_DEFINITION FROM information_schema.VIEWS "
        "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s",
        (view,),
    )
    return rows[0][0] if rows else None


def apply_views(conn: Any, contract: Contract, dialect: Dialect | None = None) -> list[ViewChange]:
    """Create or replace each view; the server's normalized definition of the new SELECT is
    compared with the existing one through a temporary view, so "unchanged" is exact."""
    dialect = dialect or detect_dialect(conn)
    changes: list[ViewChange] = []
    for index, table in enumerate(contract.tables):
        name = view_name(contract, table)
        select = select_sql(contract, table, dialect)
        temp = f"cutover_tmp_{uuid.uuid4().hex[:12]}"
        try:
            query(conn, f"CREATE VIEW {quote_ident(temp)} AS {select}")
            wanted = _definition(conn, temp)
        except MySQLdb.MySQLError as exc:
            raise ContractError(
                [(f"tables[{index}]", f"the view of table {table.table!r} is invalid SQL: "
                  f"{exc.args[-1]}")]
            ) from None  # fmt: skip
        finally:
            query(conn, f"DROP VIEW IF EXISTS {quote_ident(temp)}")
        current = _definition(conn, name)
        if current is not None and current == wanted:
            changes.append(ViewChange(name, "unchanged"))
            continue
        query(conn, f"CREATE OR REPLACE VIEW {quote_ident(name)} AS {select}")
        changes.append(ViewChange(name, "created" if current is None else "replaced"))
    return changes
