"""What the source database holds: tables, columns and primary keys (information_schema)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cutover.db import query


@dataclass(frozen=True)
class Column:
    name: str
    data_type: str  # lower case, e.g. "decimal", "varchar", "json", "tinyint"
    column_type: str  # e.g. "tinyint(1)", "decimal(10,2)"
    nullable: bool


@dataclass
class SourceSchema:
    tables: dict[str, dict[str, Column]] = field(default_factory=dict)
    primary_keys: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def from_connection(cls, conn: Any) -> SourceSchema:
        schema = cls()
        rows = query(
            conn,
            "SELECT c.TABLE_NAME, c.COLUMN_NAME, LOWER(c.DATA_TYPE), LOWER(c.COLUMN_TYPE), "
            "c.IS_NULLABLE, c.COLUMN_KEY, c.CHECK_CONSTRAINT_JSON FROM ("
            "SELECT c.*, (SELECT 1 FROM information_schema.CHECK_CONSTRAINTS k "
            "WHERE k.CONSTRAINT_SCHEMA = c.TABLE_SCHEMA AND k.TABLE_NAME = c.TABLE_NAME "
            "AND k.CHECK_CLAUSE LIKE CONCAT('%json_valid(`', c.COLUMN_NAME, '`)%') LIMIT 1) "
            "AS CHECK_CONSTRAINT_JSON FROM information_schema.COLUMNS c "
            "WHERE c.TABLE_SCHEMA = DATABASE()) AS c "
            "JOIN information_schema.TABLES t ON t.TABLE_SCHEMA = c.TABLE_SCHEMA "
            "AND t.TABLE_NAME = c.TABLE_NAME AND t.TABLE_TYPE = 'BASE TABLE' "
            "ORDER BY c.TABLE_NAME, c.ORDINAL_POSITION",
        )
        for table, name, data_type, column_type, nullable, key, is_json in rows:
            # MariaDB stores JSON as LONGTEXT with a json_valid() check
            kind = "json" if is_json else data_type
            schema.tables.setdefault(table, {})[name] = Column(
                name, kind, column_type, nullable == "YES"
            )
            if key == "PRI":
                schema.primary_keys.setdefault(table, []).append(name)
        return schema

    def has_table(self, table: str) -> bool:
        return table in self.tables

    def column(self, table: str, name: str) -> Column | None:
        return self.tables.get(table, {}).get(name)

    def primary_key(self, table: str) -> list[str]:
        return self.primary_keys.get(table, [])
