"""Checks independent of the transform: column aggregates computed straight from the MySQL
base tables (row count, distinct keys, non-null counts, sums and min/max of numbers, min/max
of dates) against the same figures from the DynamoDB export. A transform bug cannot hide
behind both parity sides agreeing."""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Context, Decimal, localcontext
from pathlib import Path
from typing import Any

import duckdb

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


def _pointer(*names: str) -> str:
    """A JSON pointer to ``names`` (DuckDB reads '/a/b'; '~' and '/' in a name escaped)."""
    return "".join("/" + n.replace("~", "~0").replace("/", "~1") for n in names)


def export_figures(actual_dir: Path, checks: list[Check]) -> dict[tuple[str, str], str | None]:
    """The same figures over the exported items, by DuckDB, each item's canonical JSON
    parsed once per query. Sums, minima and maxima of numbers are exact: as DECIMALs where
    the numbers' width allows, else in Python over the number texts DuckDB streams."""
    acc: dict[tuple[str, str], Any] = {}
    by_entity: dict[str, list[Check]] = {}
    for check in checks:
        by_entity.setdefault(check.entity, []).append(check)
        acc[(check.entity, check.name)] = 0 if check.kind in ("count", "non_null", "sum") else None
    files = str(actual_dir / "*.parquet")
    db = duckdb.connect()
    try:
        db.execute("SET threads = 2")
        for entity, mine in by_entity.items() if any(actual_dir.glob("*.parquet")) else ():
            _entity_figures(db, files, entity, mine, acc)
    finally:
        db.close()
    return {k: _canon(v) for k, v in acc.items()}


def _entity_figures(
    db: Any, files: str, entity: str, mine: list[Check], acc: dict[tuple[str, str], Any]
) -> None:
    paths: list[str] = []  # each item's JSON is parsed once, for all of these paths

    def value(attr: str, *path: str) -> str:
        pointer = _pointer(attr, *path)
        if pointer not in paths:
            paths.append(pointer)
        return f"v[{paths.index(pointer) + 1}]"

    def present(attr: str) -> str:  # the item has the attribute, and it is not a NULL
        return f"{value(attr)} IS NOT NULL AND {value(attr, 'NULL')} IS NULL"

    figures: list[tuple[Check, str]] = []
    numeric = [c for c in mine if c.kind in ("sum", "min", "max")]
    for c in mine:
        attr = c.attribute or ""
        if c.kind == "count":
            figures.append((c, "count(*)"))
        elif c.kind == "non_null":
            figures.append((c, f"count(*) FILTER (WHERE {present(attr)})"))
        elif c.kind in ("min_text", "max_text"):
            fn = c.kind.split("_")[0]
            figures.append((c, f"{fn}({value(attr, 'S')}) FILTER (WHERE {present(attr)})"))
        else:  # a number's type, when it is not N: the figure says so
            kind = f"regexp_extract({value(attr)}, '^\\{{\"([A-Z]+)\"', 1)"
            test = f"{present(attr)} AND {value(attr, 'N')} IS NULL"
            figures.append((c, f"min({kind}) FILTER (WHERE {test})"))
    number_attrs = sorted({c.attribute or "" for c in numeric})
    for attr in number_attrs:  # how wide its numbers are: whether a DECIMAL holds their sum
        n = value(attr, "N")
        figures.append((Check(entity, attr, "", attr, "width"),
                        f"[count({n}), max(length(split_part(ltrim({n}, '-'), '.', 1))), "
                        f"max(length(split_part({n}, '.', 2)))]"))  # fmt: skip
    # every path the queries below read is registered by now (the N paths just above):
    # the subquery extracts them all at once
    items = (
        "(SELECT json_extract_string(canon, [" + ", ".join(literal_text(p) for p in paths)
        + "]) AS v FROM read_parquet(?) WHERE entity = ?)"
    )  # fmt: skip
    if not paths:
        items = "(SELECT NULL AS v FROM read_parquet(?) WHERE entity = ?)"
    row = db.execute(
        f"SELECT {', '.join(sql for _, sql in figures)} FROM {items}", [files, entity]
    ).fetchone()
    not_numbers: dict[str, str] = {}
    scales: dict[str, int] = {}  # attributes whose sums DuckDB takes exactly, at their scale
    for (c, _), got in zip(figures, row, strict=True):
        if c.kind == "width":
            count, digits, scale = got
            if count and digits + scale + len(str(count)) <= 38:
                scales[c.name] = scale
        elif c.kind in ("sum", "min", "max"):
            if got is not None:
                not_numbers[c.attribute or ""] = f"non-number {got} value"
        else:
            acc[(entity, c.name)] = got
    totals: dict[str, Decimal] = {}
    lows: dict[str, Decimal | None] = {}
    highs: dict[str, Decimal | None] = {}
    wide = [a for a in number_attrs if a not in not_numbers and a not in scales]
    exact = [a for a in number_attrs if a not in not_numbers and a in scales]
    if exact:
        casts = [f"CAST({value(a, 'N')} AS DECIMAL(38, {scales[a]}))" for a in exact]
        got = db.execute(
            "SELECT " + ", ".join(f"sum({x}), min({x}), max({x})" for x in casts)
            + f" FROM {items}",
            [files, entity],
        ).fetchone()  # fmt: skip
        for n, a in enumerate(exact):
            totals[a], lows[a], highs[a] = got[3 * n : 3 * n + 3]
    if wide:
        columns = [value(a, "N") for a in wide]
        _wide_figures(db, f"SELECT {', '.join(columns)} FROM {items}", [files, entity], wide,
                      totals, lows, highs)  # fmt: skip
    for c in numeric:
        a = c.attribute or ""
        if a in not_numbers:
            acc[(entity, c.name)] = not_numbers[a]
        elif a in totals:
            acc[(entity, c.name)] = {"sum": totals, "min": lows, "max": highs}[c.kind][a]


def _wide_figures(
    db: Any,
    sql: str,
    params: list[Any],
    attrs: list[str],
    totals: dict[str, Decimal],
    lows: dict[str, Decimal | None],
    highs: dict[str, Decimal | None],
) -> None:
    """Sums, minima and maxima of numbers too wide for a DECIMAL, exactly, in Python."""
    cursor = db.execute(sql, params)
    for a in attrs:
        totals[a], lows[a], highs[a] = Decimal(0), None, None
    with localcontext(_EXACT):
        while rows := cursor.fetchmany(100_000):
            for a, column in zip(attrs, zip(*rows, strict=True), strict=True):
                numbers = [Decimal(t) for t in column if t is not None]
                if not numbers:
                    continue
                totals[a] += sum(numbers, Decimal(0))
                low, high = min(numbers), max(numbers)
                lows[a] = low if lows[a] is None else min(lows[a], low)
                highs[a] = high if highs[a] is None else max(highs[a], high)


def literal_text(text: str) -> str:
    """A SQL string literal of ``text`` for DuckDB."""
    return "'" + text.replace("'", "''") + "'"


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
