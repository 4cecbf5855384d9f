"""The figures an estimate starts from: row counts and real items from MySQL, a size guess
from the contract's types when MySQL is not used, and the client CPU per item `cutover bench`
measured.

Items are built exactly as the backfill builds them: each source's rows go through the view's
own SELECT for that source (``source_select_sql``, so the view need not exist yet) into the
table's ``ItemBuilder``; the JSON each item would be put with is what is sized.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from cutover.contract.model import Contract, Source, Table, template_fields
from cutover.contract.views import source_select_sql, view_columns
from cutover.db import literal, query
from cutover.db import quote_ident as q
from cutover.errors import ConfigError
from cutover.estimate.capacity import DEFAULT_CPU_US_PER_ITEM, SourceProfile, profile_items
from cutover.settings import LOCAL_DIR, PROJECT_ROOT
from cutover.transform.items import VERSION_ATTRIBUTE, Item, ItemBuilder

EXACT_BELOW = 1_000_000  # information_schema estimates below this are replaced by COUNT(*)
SAMPLE_STRIPES = 10  # a large table is sampled in this many runs spread over its key range
BENCH_JSON = LOCAL_DIR / "bench.json"
CountMethod = Literal["exact", "estimate", "given"]


@dataclass(frozen=True)
class RowCount:
    rows: int
    method: CountMethod

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "method": self.method}


def source_tables(contract: Contract) -> list[str]:
    """The contract's source tables, each once, in contract order."""
    out: list[str] = []
    for table in contract.tables:
        for source in table.sources:
            if source.source_table not in out:
                out.append(source.source_table)
    return out


def joined_tables(contract: Contract) -> list[str]:
    """Tables read only through joins or aggregates (their rows make no item of their own)."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            target = node.get("target_table")
            if isinstance(target, str) and target not in found:
                found.append(target)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(contract.model_dump(by_alias=True))
    sources = set(source_tables(contract))
    return [t for t in found if t not in sources]


# --- row counts ------------------------------------------------------------------------------


def count_rows(conn: Any, tables: Iterable[str], exact: bool = False) -> dict[str, RowCount]:
    """Rows per table: information_schema's TABLE_ROWS (an InnoDB estimate, free) for tables
    of ``EXACT_BELOW`` rows or more, COUNT(*) for smaller ones and for every table when
    ``exact``."""
    listed = {
        str(name): rows
        for name, rows in query(
            conn,
            "SELECT TABLE_NAME, TABLE_ROWS FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = DATABASE()",
        )
    }
    (database,) = query(conn, "SELECT DATABASE()")[0]
    out: dict[str, RowCount] = {}
    for table in tables:
        if table not in listed:
            raise ConfigError(
                f"source table `{table}` of the contract is not in database `{database}`: "
                "point CUTOVER_MYSQL_URL at the source database, or check the contract with "
                "`cutover contract lint --db`"
            )
        estimate = listed[table]
        if exact or estimate is None or int(estimate) < EXACT_BELOW:
            (rows,) = query(conn, f"SELECT COUNT(*) FROM {q(table)}")[0]
            out[table] = RowCount(int(rows), "exact")
        else:
            out[table] = RowCount(int(estimate), "estimate")
    return out


# --- items from real rows --------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def _stripe_starts(low: Any, high: Any, stripes: int) -> list[Any]:
    if isinstance(low, int) and isinstance(high, int):
        return sorted({low + (high - low) * i // stripes for i in range(stripes)})
    span = high - low
    return sorted({low + span * i / stripes for i in range(stripes)})


def sample_selects(
    conn: Any, contract: Contract, table: Table, source: Source, rows: int, sample: int
) -> list[str]:
    """SELECTs of the source's view rows to build: all rows when there are at most
    ``sample``; else ``SAMPLE_STRIPES`` runs of consecutive rows starting at points spread
    evenly over a numeric partition column's range (the first ``sample`` rows otherwise)."""
    base = source_select_sql(contract, table, source)
    if rows <= sample:
        return [base]
    column = f"{q(source.source_table)}.{q(source.partition_column)}"
    low, high = query(conn, f"SELECT MIN({column}), MAX({column}) FROM {q(source.source_table)}")[0]
    if not (_is_number(low) and _is_number(high)) or low == high:
        return [f"{base}\nORDER BY {column}\nLIMIT {sample}"]
    stripes = max(1, min(SAMPLE_STRIPES, sample))
    per = math.ceil(sample / stripes)
    return [
        f"{base}\nWHERE {column} >= {literal(conn, start)}\nORDER BY {column}\nLIMIT {per}"
        for start in _stripe_starts(low, high, stripes)
    ]


def sample_items(
    conn: Any,
    contract: Contract,
    table: Table,
    source: Source,
    rows: int,
    sample: int,
    builder: ItemBuilder | None = None,
) -> tuple[int, list[dict[str, Any]]]:
    """(rows built, the items they made as AttributeValue maps) for up to about ``sample``
    rows of one source; rows the builder rejects count as built but make no item."""
    builder = builder or ItemBuilder(contract, table)
    names = view_columns(table)
    seen: set[str] = set()
    built = 0
    items: list[dict[str, Any]] = []
    for sql in sample_selects(conn, contract, table, source, rows, sample):
        for values in query(conn, sql):
            row = dict(zip(names, values, strict=True))
            key = str(row.get("__source_pk"))
            if key in seen:  # two runs met
                continue
            seen.add(key)
            built += 1
            result = builder.build(row)
            if isinstance(result, Item):
                items.append(json.loads(result.body))
    return built, items


def measured_profile(
    conn: Any, contract: Contract, table: Table, source: Source, rows: int, sample: int
) -> SourceProfile:
    built, items = sample_items(conn, contract, table, source, rows, sample)
    if not built:
        return typed_profile(table, source)
    return profile_items(table, source.entity_type, source.source_table, items, built)


# --- a size guess from the contract's types -------------------------------------------------

_TYPICAL_TEXT = "x" * 24  # a name, a status, a short label
_TYPICAL: dict[str, dict[str, Any]] = {
    "S": {"S": _TYPICAL_TEXT},
    "N": {"N": "123456"},  # an id or an amount with cents
    "B": {"B": base64.b64encode(b"\x00" * 32).decode()},
    "BOOL": {"BOOL": True},
    "NULL": {"NULL": True},
    "SS": {"SS": ["x" * 12, "y" * 12, "z" * 12]},
    "NS": {"NS": ["1234", "5678", "9012"]},
    "BS": {"BS": [base64.b64encode(b"\x00" * 16).decode()] * 3},
    "M": {"M": {f"field{i}": {"S": "x" * 16} for i in range(4)}},
    "L": {"L": [{"S": "x" * 16} for _ in range(4)]},
}
_ISO_DATE = "2024-01-31T12:00:00Z"


def typical_item(table: Table, source: Source) -> dict[str, Any]:
    """An item as the contract's types suggest it, with typical values: the keys a template
    makes, every attribute, and the version attribute of a versioned source."""
    item: dict[str, Any] = {}
    by_name = {a.name for a in source.attributes}
    if table.type == "multi-entity":
        for key, template in ((table.pk, source.pk_template), (table.sk, source.sk_template)):
            if key and key not in by_name and template is not None:
                text = template
                for name in template_fields(template):
                    text = text.replace("{" + name + "}", "12345678")
                item[key] = {"S": text}
    for attr in source.attributes:
        value = _TYPICAL[attr.type]
        t = attr.transformation
        if attr.type == "S" and t is not None and t.type == "date-format":
            value = {"S": _ISO_DATE if (t.format or "").lower() == "iso8601" else t.format}
        item[attr.name] = value
    if source.options.version_column:
        item[VERSION_ATTRIBUTE] = {"N": str(1_700_000_000_000_000)}
    return item


def typed_profile(table: Table, source: Source) -> SourceProfile:
    return profile_items(
        table,
        source.entity_type,
        source.source_table,
        [typical_item(table, source)],
        0,
        basis="column types",
    )


# --- the client ------------------------------------------------------------------------------


def client_cpu(path: Path = BENCH_JSON) -> tuple[float, str]:
    """(CPU µs per item of the loader, where it comes from): the last `cutover bench --json`
    figures at ``path`` when there are any, else the default."""
    shown = path.relative_to(PROJECT_ROOT) if path.is_relative_to(PROJECT_ROOT) else path
    try:
        figures = json.loads(path.read_text())
    except FileNotFoundError:
        return DEFAULT_CPU_US_PER_ITEM, (
            f"default: no {shown}; `make bench` measures it on DynamoDB Local"
        )
    except (OSError, ValueError):
        return DEFAULT_CPU_US_PER_ITEM, f"default: {shown} is not readable JSON"
    value = figures.get("loader_cpu_us_per_item") if isinstance(figures, dict) else None
    if not _is_number(value) or value <= 0:
        return DEFAULT_CPU_US_PER_ITEM, f"default: {shown} has no loader_cpu_us_per_item"
    when = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC).strftime("%Y-%m-%d")
    return float(value), f"measured by `cutover bench` ({shown}, {when})"
