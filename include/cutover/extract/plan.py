"""Partition planning: split each source of a view into key ranges of its partition column.

Boundaries are quantiles of the actual column values (one ordered pass with ROW_NUMBER), so
skewed and sparse keys give partitions of even row counts, numeric or string alike. Equal
boundaries collapse, so a key with one huge value gives fewer, not empty, partitions.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from cutover.contract.model import Contract, Source, Table
from cutover.db import literal, query, quote_ident

DEFAULT_ROWS_PER_PARTITION = 250_000


@dataclass(frozen=True)
class Partition:
    """Rows of one source whose partition column is in [lower, upper); None is unbounded.
    The first partition also holds rows whose partition column is NULL."""

    table: str
    entity_type: str
    index: int
    lower: Any
    upper: Any

    @property
    def id(self) -> str:
        return f"{self.table}.{self.entity_type}.{self.index:04d}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Partition:
        return cls(**data)


def partition_count(rows: int, source: Source, override: int | None = None) -> int:
    if override:
        return max(1, override)
    if source.options.partitions:
        return source.options.partitions
    per = source.options.rows_per_partition or DEFAULT_ROWS_PER_PARTITION
    return max(1, math.ceil(rows / per))


def boundaries(conn: Any, source: Source, parts: int) -> list[Any]:
    """Up to ``parts - 1`` increasing boundary values of the source's partition column."""
    if parts <= 1:
        return []
    column = quote_ident(source.partition_column)
    table = quote_ident(source.source_table)
    (count,) = query(conn, f"SELECT COUNT({column}) FROM {table}")[0]
    if count == 0:
        return []
    step = max(1, math.ceil(count / parts))
    rows = query(
        conn,
        f"SELECT v FROM (SELECT {column} AS v, ROW_NUMBER() OVER (ORDER BY {column}) AS rn "
        f"FROM {table} WHERE {column} IS NOT NULL) AS ranked "
        f"WHERE rn > 1 AND MOD(rn - 1, %s) = 0 ORDER BY rn",
        (step,),
    )
    out: list[Any] = []
    for (value,) in rows:
        if not out or value > out[-1]:
            out.append(value)
    return out


def plan_table(conn: Any, table: Table, partitions: int | None = None) -> list[Partition]:
    planned: list[Partition] = []
    for source in table.sources:
        (rows,) = query(conn, f"SELECT COUNT(*) FROM {quote_ident(source.source_table)}")[0]
        bounds = boundaries(conn, source, partition_count(rows, source, partitions))
        edges = [None, *bounds, None]
        planned.extend(
            Partition(table.table, source.entity_type, i, edges[i], edges[i + 1])
            for i in range(len(edges) - 1)
        )
    return planned


def plan(conn: Any, contract: Contract, partitions: int | None = None) -> list[Partition]:
    """Every partition of every table of the contract."""
    return [p for t in contract.tables for p in plan_table(conn, t, partitions)]


def partition_predicate(conn: Any, partition: Partition, multi_entity: bool) -> str:
    """The WHERE clause selecting one partition's rows from the view."""
    clauses = []
    if multi_entity:
        clauses.append(f"`__entity` = {literal(conn, partition.entity_type)}")
    if partition.lower is not None:
        clauses.append(f"`__part` >= {literal(conn, partition.lower)}")
    if partition.upper is not None:
        upper = f"`__part` < {literal(conn, partition.upper)}"
        clauses.append(f"({upper} OR `__part` IS NULL)" if partition.lower is None else upper)
    return " AND ".join(clauses) or "TRUE"
