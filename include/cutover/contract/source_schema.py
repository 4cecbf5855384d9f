"""What the source database holds: tables, columns, primary keys, and the unique keys and
foreign keys DynamoDB will not enforce (information_schema)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cutover.db import query

_COLUMNS_SQL = (
    "SELECT c.TABLE_NAME, c.COLUMN_NAME, LOWER(c.DATA_TYPE), LOWER(c.COLUMN_TYPE), "
    "c.IS_NULLABLE, {is_json} "
    "FROM information_schema.COLUMNS c "
    "JOIN information_schema.TABLES t ON t.TABLE_SCHEMA = c.TABLE_SCHEMA "
    "AND t.TABLE_NAME = c.TABLE_NAME AND t.TABLE_TYPE = 'BASE TABLE' "
    "WHERE c.TABLE_SCHEMA = DATABASE() "
    "ORDER BY c.TABLE_NAME, c.ORDINAL_POSITION"
)
# MariaDB stores JSON as LONGTEXT guarded by a json_valid(`col`) check constraint
_MARIADB_IS_JSON = (
    "EXISTS (SELECT 1 FROM information_schema.CHECK_CONSTRAINTS k "
    "WHERE k.CONSTRAINT_SCHEMA = c.TABLE_SCHEMA AND k.TABLE_NAME = c.TABLE_NAME "
    "AND k.CHECK_CLAUSE LIKE CONCAT('%json_valid(`', c.COLUMN_NAME, '`)%'))"
)
_PRIMARY_KEY_SQL = (
    "SELECT k.TABLE_NAME, k.COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE k "
    "WHERE k.TABLE_SCHEMA = DATABASE() AND k.CONSTRAINT_NAME = 'PRIMARY' "
    "ORDER BY k.TABLE_NAME, k.ORDINAL_POSITION"
)

_UNIQUE_SQL = (
    "SELECT TABLE_NAME, INDEX_NAME, COLUMN_NAME FROM information_schema.STATISTICS "
    "WHERE TABLE_SCHEMA = DATABASE() AND NON_UNIQUE = 0 AND INDEX_NAME <> 'PRIMARY' "
    "ORDER BY TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX"
)
_FOREIGN_KEY_SQL = (
    "SELECT TABLE_NAME, CONSTRAINT_NAME, COLUMN_NAME, REFERENCED_TABLE_NAME "
    "FROM information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA = DATABASE() "
    "AND REFERENCED_TABLE_NAME IS NOT NULL ORDER BY TABLE_NAME, CONSTRAINT_NAME, "
    "ORDINAL_POSITION"
)


@dataclass(frozen=True)
class Constraint:
    """A unique key (``references`` None) or a foreign key of a table."""

    name: str
    columns: tuple[str, ...]
    references: str | None = None


@dataclass(frozen=True)
class Column:
    name: str
    data_type: str  # lower case, e.g. "decimal", "varchar", "json", "tinyint"
    column_type: str  # e.g. "tinyint(1)", "decimal(10,2)"
    nullable: bool


@dataclass
class SourceSchema:
    """Tables of the connection's database: ``tables[table][column]`` and primary keys in
    key order."""

    tables: dict[str, dict[str, Column]] = field(default_factory=dict)
    primary_keys: dict[str, list[str]] = field(default_factory=dict)
    unique_keys: dict[str, list[Constraint]] = field(default_factory=dict)
    foreign_keys: dict[str, list[Constraint]] = field(default_factory=dict)

    @classmethod
    def from_connection(cls, conn: Any) -> SourceSchema:
        (version,) = query(conn, "SELECT VERSION()")[0]
        is_json = _MARIADB_IS_JSON if "mariadb" in str(version).lower() else "0"
        schema = cls()
        for table, name, data_type, column_type, nullable, json_check in query(
            conn, _COLUMNS_SQL.format(is_json=is_json)
        ):
            kind = "json" if json_check else data_type
            schema.tables.setdefault(table, {})[name] = Column(
                name, kind, column_type, nullable == "YES"
            )
        for table, name in query(conn, _PRIMARY_KEY_SQL):
            if table in schema.tables:
                schema.primary_keys.setdefault(table, []).append(name)
        schema.unique_keys = _grouped(query(conn, _UNIQUE_SQL))
        schema.foreign_keys = _grouped(query(conn, _FOREIGN_KEY_SQL))
        return schema

    def has_table(self, table: str) -> bool:
        return table in self.tables

    def column(self, table: str, name: str) -> Column | None:
        return self.tables.get(table, {}).get(name)

    def primary_key(self, table: str) -> list[str]:
        return self.primary_keys.get(table, [])


def _grouped(rows: Any) -> dict[str, list[Constraint]]:
    """(table, name, column[, referenced table]) rows in key order -> constraints by table."""
    columns: dict[tuple[str, str], list[str]] = {}
    references: dict[tuple[str, str], str | None] = {}
    for table, name, column, *ref in rows:
        columns.setdefault((str(table), str(name)), []).append(str(column))
        references[(str(table), str(name))] = str(ref[0]) if ref else None
    out: dict[str, list[Constraint]] = {}
    for (table, name), cols in columns.items():
        out.setdefault(table, []).append(Constraint(name, tuple(cols), references[(table, name)]))
    return out
