"""Row changes as the application asks for them, in the MySQL shape of the source tables,
and their parameterised SQL (identifiers quoted, values always bound, one statement per
call). A change carries the version it sets, so that replaying it late never undoes a
newer one."""

from __future__ import annotations

import base64
import datetime as dt
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from cutover.db import quote_ident as q

Op = Literal["put", "update", "delete"]


@dataclass(frozen=True)
class Change:
    """``put`` inserts or replaces a row (all its columns), ``update`` sets ``values`` on
    the row of ``key``, ``delete`` removes the row of ``key``."""

    table: str
    op: Op
    key: dict[str, Any]
    values: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        return {**self.values, **self.key}

    def to_json(self) -> dict[str, Any]:
        return {"table": self.table, "op": self.op, "key": _encode(self.key),
                "values": _encode(self.values)}  # fmt: skip

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Change:
        return cls(data["table"], data["op"], _decode(data["key"]), _decode(data["values"]))


def _encode(values: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in values.items():
        if isinstance(value, dt.datetime):
            out[name] = {"dt": value.isoformat()}
        elif isinstance(value, dt.date):
            out[name] = {"d": value.isoformat()}
        elif isinstance(value, Decimal):
            out[name] = {"dec": str(value)}
        elif isinstance(value, bytes):
            out[name] = {"b64": base64.b64encode(value).decode()}
        else:
            out[name] = {"v": value}
    return out


def _decode(values: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, boxed in values.items():
        ((kind, value),) = boxed.items()
        if kind == "dt":
            out[name] = dt.datetime.fromisoformat(value)
        elif kind == "d":
            out[name] = dt.date.fromisoformat(value)
        elif kind == "dec":
            out[name] = Decimal(value)
        elif kind == "b64":
            out[name] = base64.b64decode(value)
        else:
            out[name] = value
    return out


class VersionClock:
    """Versions for the rows the layer writes: UTC with microseconds, strictly increasing
    within a process (two changes in the same microsecond still get distinct versions)."""

    def __init__(self) -> None:
        self._last = dt.datetime.min
        self._lock = threading.Lock()

    def next(self) -> dt.datetime:
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        with self._lock:
            if now <= self._last:
                now = self._last + dt.timedelta(microseconds=1)
            self._last = now
            return now


def where_in(column_values: Mapping[str, Any], table: str | None = None) -> tuple[str, list]:
    """``col IN (%s, ...) AND ...`` for each column's value (or list of values), columns
    qualified by ``table`` when given, and the parameters in order."""
    prefix = f"{q(table)}." if table else ""
    parts, params = [], []
    for column, value in column_values.items():
        values = value if isinstance(value, list) else [value]
        parts.append(f"{prefix}{q(column)} IN ({', '.join(['%s'] * len(values))})")
        params.extend(values)
    return " AND ".join(parts), params


def apply(cursor: Any, change: Change, version_column: str | None, *, guard: bool) -> int:
    """Run one change; with ``guard``, a row whose version is newer than the change's stays
    as it is (a replay arriving after a newer write). Returns the affected row count."""
    table = q(change.table)
    version = change.values.get(version_column) if version_column else None
    guarded = guard and version is not None
    if change.op == "delete":
        where, params = where_in(change.key)
        if guarded:
            where += f" AND {q(version_column or '')} <= %s"
            params.append(version)
        cursor.execute(f"DELETE FROM {table} WHERE {where}", params)
        return int(cursor.rowcount)
    if change.op == "update":
        where, params = where_in(change.key)
        sets = ", ".join(f"{q(c)} = %s" for c in change.values)
        if guarded:
            where += f" AND {q(version_column or '')} <= %s"
        cursor.execute(
            f"UPDATE {table} SET {sets} WHERE {where}",
            [*change.values.values(), *params, *([version] if guarded else [])],
        )
        return int(cursor.rowcount)
    row = change.row()
    # the version column is assigned last: MySQL evaluates the assignments left to right,
    # so every IF() before it still compares against the stored version
    columns = [c for c in row if c != version_column] + (
        [version_column] if version_column in row else []
    )
    names = ", ".join(q(c) for c in columns)
    marks = ", ".join(["%s"] * len(columns))
    if guarded:
        v = q(version_column or "")
        updates = ", ".join(
            f"{q(c)} = IF({v} <= VALUES({v}), VALUES({q(c)}), {q(c)})" for c in columns
        )
    else:
        updates = ", ".join(f"{q(c)} = VALUES({q(c)})" for c in columns)
    cursor.execute(
        f"INSERT INTO {table} ({names}) VALUES ({marks}) ON DUPLICATE KEY UPDATE {updates}",
        [row[c] for c in columns],
    )
    return int(cursor.rowcount)


def select_rows(cursor: Any, table: str, column_values: Mapping[str, Any]) -> list[dict]:
    """Rows of ``table`` where each column has its value (or one of its list of values)."""
    where, params = where_in(column_values)
    cursor.execute(f"SELECT * FROM {q(table)} WHERE {where}", params)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
