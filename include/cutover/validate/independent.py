"""Checks independent of the transform: column aggregates computed straight from the MySQL
base tables (row count, distinct keys, non-null counts, sums and min/max of numbers, min/max
of dates) against the same figures from the DynamoDB export. A transform bug cannot hide
behind both parity sides agreeing."""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Context, Decimal
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from cutover.contract.model import Attribute, Source, Table
from cutover.contract.views import date_format
from cutover.db import literal, query, quote_ident

_EXACT = Context(prec=200)


@dataclass(frozen=True)
class Check:
    entity: str
    name: str  # e.g. "count", "non_null(price)", "sum(price)"
    sql: str  # aggregate over the base table
    attribute: str | None
    kind: str  # count | non_null | sum | min | max | min_text | max_text


def _plain(attr: Attribute) -> bool:
    return attr.join is None and attr.calculation is None and isinstance(attr.source_column, str)


def plan_checks(table: Table) -> list[Check]:
    checks: list[Check] = []
    for source in table.sources:
        e = source.entity_type
        checks.append(Check(e, "count", "COUNT(*)", None, "count"))
        for attr in source.attributes:
            if not _plain(attr) or attr.cutover.on_null != "omit":
                continue
            col = quote_ident(str(attr.source_column))
            t = attr.transformation
            if t is None:
                checks.append(
                    Check(e, f"non_null({attr.name})", f"COUNT({col})", attr.name, "non_null")
                )
                if attr.type == "N":
                    for fn in ("sum", "min", "max"):
                        checks.append(
                            Check(e, f"{fn}({attr.name})", f"{fn.upper()}({col})", attr.name, fn)
                        )
            elif (
                t.type == "date-format"
                and t.format
                and (t.source_format or "date") in ("timestamp", "datetime", "date")
            ):
                fmt = literal_format(t.format)
                for fn in ("min", "max"):
                    checks.append(
                        Check(
                            e,
                            f"{fn}({attr.name})",
                            f"DATE_FORMAT({fn.upper()}({col}), {fmt})",
                            attr.name,
                            f"{fn}_text",
                        )
                    )
    return checks


def literal_format(fmt: str) -> str:
    return "'" + date_format(fmt).replace("'", "''") + "'"


def _canon(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, int | Decimal | float):
        dec = Decimal(str(value)).normalize(_EXACT)
        return "0" if dec.is_zero() else format(dec, "f")
    return str(value)


def source_figures(
    conn: Any, source: Source, checks: list[Check], excluded: list[str]
) -> dict[str, str | None]:
    mine = [c for c in checks if c.entity == source.entity_type]
    keys = source.source_key
    where = ""
    if excluded:
        tuples = []
        for pk in excluded:
            values = json.loads(pk)
            tuples.append("(" + ", ".join(literal(conn, values.get(k)) for k in keys) + ")")
        key_list = ", ".join(quote_ident(k) for k in keys)
        where = f" WHERE ({key_list}) NOT IN ({', '.join(tuples)})"
    sql = f"SELECT {', '.join(c.sql for c in mine)} FROM {quote_ident(source.source_table)}{where}"
    row = query(conn, sql)[0]
    return {c.name: _canon(v) for c, v in zip(mine, row, strict=True)}


def export_figures(actual_dir: Path, checks: list[Check]) -> dict[tuple[str, str], str | None]:
    """The same figures over the exported items, streamed."""
    acc: dict[tuple[str, str], Any] = {}
    by_entity: dict[str, list[Check]] = {}
    for check in checks:
        by_entity.setdefault(check.entity, []).append(check)
        acc[(check.entity, check.name)] = 0 if check.kind in ("count", "non_null", "sum") else None
    for file in sorted(actual_dir.glob("*.parquet")):
        for batch in pq.ParquetFile(file).iter_batches(columns=["entity", "canon"]):
            for entity, canon in zip(
                batch.column("entity").to_pylist(), batch.column("canon").to_pylist(), strict=True
            ):
                mine = by_entity.get(entity)
                if not mine:
                    continue
                item = json.loads(canon)
                for c in mine:
                    _accumulate(acc, (entity, c.name), c, item)
    return {k: _canon(v) for k, v in acc.items()}


def _accumulate(
    acc: dict[tuple[str, str], Any], key: tuple[str, str], c: Check, item: dict[str, Any]
) -> None:
    if c.kind == "count":
        acc[key] += 1
        return
    av = item.get(c.attribute or "")
    if av is None or "NULL" in av:
        return
    if c.kind == "non_null":
        acc[key] += 1
        return
    numeric = c.kind in ("sum", "min", "max")
    if isinstance(acc[key], str) and numeric:
        return  # already marked as holding a non-number
    if numeric and "N" not in av:
        acc[key] = f"non-number {next(iter(av))} value"
        return
    value: Any = Decimal(av["N"]) if numeric else av.get("S")
    if value is None:
        return
    if c.kind == "sum":
        acc[key] += value
    elif c.kind in ("min", "min_text"):
        acc[key] = value if acc[key] is None else min(acc[key], value)
    else:
        acc[key] = value if acc[key] is None else max(acc[key], value)


def independent_checks(
    conn: Any,
    table: Table,
    duplicate_source_pks: dict[str, list[str]],
    rejected: dict[str, list[str]],
    actual: Path,
) -> list[dict[str, Any]]:
    """Each check of ``table`` (row counts, sums, ...) taken straight from the base tables
    (without the rows the backfill quarantines or two of which make one key) and from the
    exported items in ``actual``: {entity, check, source_value, export_value}."""
    checks = plan_checks(table)
    exported = export_figures(actual, checks)
    out = []
    for source in table.sources:
        excluded = rejected.get(source.entity_type, []) + duplicate_source_pks.get(
            source.entity_type, []
        )
        figures = source_figures(conn, source, checks, excluded)
        for name, value in figures.items():
            export_value = exported.get((source.entity_type, name))
            out.append(
                {
                    "entity": source.entity_type,
                    "check": name,
                    "source_value": "NULL" if value is None else value,
                    "export_value": "NULL" if export_value is None else export_value,
                }
            )
    return out
