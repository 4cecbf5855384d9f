"""The MySQL views of a contract: one per DynamoDB table, exactly as docs/contract.md says.

Joins and aggregates are correlated subqueries, so the outer query reads the source table
under its own name and several attributes may join the same table independently.
"""

from __future__ import annotations

import re
from typing import Literal

from cutover.contract.model import (
    AggregateCalculation,
    Attribute,
    CaseCalculation,
    ChainJoin,
    ConcatCalculation,
    ConditionalJoin,
    Contract,
    DateMathCalculation,
    ForeignKeyJoin,
    JsonConstructionJoin,
    LookupTableJoin,
    MultiColumnJoin,
    SelfJoin,
    Source,
    Table,
    Transformation,
)
from cutover.db import quote_ident as q

Dialect = Literal["mariadb", "mysql"]
METADATA_COLUMNS = ("__entity", "__source_pk", "__part", "__version")
_COLLECTING = ("SS", "NS", "BS", "L")
_DATE_TOKENS = [("YYYY", "%Y"), ("MM", "%m"), ("DD", "%d"), ("HH", "%H"), ("mm", "%i"),
                ("ss", "%s")]  # fmt: skip
ISO8601 = "%Y-%m-%dT%H:%i:%sZ"


def sql_literal(value: str) -> str:
    """A MySQL string literal: backslashes and quotes escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def view_name(contract: Contract, table: Table) -> str:
    return f"cutover_{contract.name}_{re.sub(r'[^a-z0-9_]', '_', table.table.lower())}"


def view_columns(table: Table) -> list[str]:
    names: list[str] = []
    if table.type == "multi-entity":
        names.extend(k for k in (table.pk, table.sk) if k)
    for source in table.sources:
        for attr in source.attributes:
            if attr.name not in names:
                names.append(attr.name)
    return [*names, *METADATA_COLUMNS]


def date_format(fmt: str) -> str:
    if fmt.lower() == "iso8601":
        return ISO8601
    for token, code in _DATE_TOKENS:
        fmt = fmt.replace(token, code)
    return fmt


# --- expressions ---------------------------------------------------------------------------


def _col(source: Source, column: str) -> str:
    return f"{q(source.source_table)}.{q(column)}"


def _coalesce(expr: str, fallback: str | None) -> str:
    return expr if fallback is None else f"COALESCE({expr}, {sql_literal(fallback)})"


def _join_expr(attr: Attribute, source: Source, dialect: Dialect) -> str:
    join = attr.join
    if isinstance(join, SelfJoin):
        sub = (f"(SELECT {join.select_column} FROM {q(source.source_table)} AS "
               f"{q(join.join_alias)} WHERE {join.join_condition} LIMIT 1)")  # fmt: skip
        return _coalesce(sub, join.null_value)
    if isinstance(join, LookupTableJoin) and attr.type in _COLLECTING:
        return (f"(SELECT COALESCE(JSON_ARRAYAGG({join.select_column}), JSON_ARRAY()) "
                f"FROM {q(join.target_table)} WHERE {join.join_condition})")  # fmt: skip
    if isinstance(join, ForeignKeyJoin | LookupTableJoin):
        sub = (f"(SELECT {join.select_column} FROM {q(join.target_table)} "
               f"WHERE {join.join_condition} LIMIT 1)")  # fmt: skip
        return _coalesce(sub, join.null_value)
    if isinstance(join, MultiColumnJoin):
        cond = " AND ".join(f"({c})" for c in join.join_conditions)
        sub = f"(SELECT {join.select_column} FROM {q(join.target_table)} WHERE {cond} LIMIT 1)"
        return _coalesce(sub, join.null_value)
    if isinstance(join, ConditionalJoin):
        sub = (f"(SELECT {join.select_column} FROM {q(join.target_table)} "
               f"WHERE {join.join_condition} LIMIT 1)")  # fmt: skip
        return (f"CASE WHEN {join.condition} THEN COALESCE({sub}, {sql_literal(join.else_value)})"
                f" ELSE {sql_literal(join.else_value)} END")  # fmt: skip
    if isinstance(join, ChainJoin):
        first, *rest = join.joins
        from_clause = q(first.target_table) + "".join(
            f" JOIN {q(step.target_table)} ON {step.join_condition}" for step in rest
        )
        if join.chain_separator is None:
            value = join.joins[-1].select_column
        else:
            parts = ", ".join(step.select_column for step in join.joins)
            value = f"CONCAT_WS({sql_literal(join.chain_separator)}, {parts})"
        sub = f"(SELECT {value} FROM {from_clause} WHERE {first.join_condition} LIMIT 1)"
        return _coalesce(sub, join.null_value)
    if isinstance(join, JsonConstructionJoin):
        return _json_construction(join, dialect)
    raise AssertionError(f"unhandled join {join!r}")


def _json_construction(join: JsonConstructionJoin, dialect: Dialect) -> str:
    c = join.construction
    obj = "JSON_OBJECT(" + ", ".join(
        f"{sql_literal(k)}, {v}" for k, v in c.select_columns.items()
    ) + ")"  # fmt: skip
    target = q(join.target_table)
    order = f" ORDER BY {c.order_by}" if c.order_by else ""
    if c.type == "object":
        return f"(SELECT {obj} FROM {target} WHERE {join.join_condition}{order} LIMIT 1)"
    limit = f" LIMIT {c.limit}" if c.limit else ""
    if dialect == "mariadb":
        agg = f"JSON_ARRAYAGG({obj}{order}{limit})"
        return f"(SELECT COALESCE({agg}, JSON_ARRAY()) FROM {target} WHERE {join.join_condition})"
    inner = f"SELECT {obj} AS j FROM {target} WHERE {join.join_condition}{order}{limit}"
    return f"(SELECT COALESCE(JSON_ARRAYAGG(t.j), JSON_ARRAY()) FROM ({inner}) AS t)"


def _calculation_expr(attr: Attribute, source: Source) -> str:
    calc = attr.calculation
    columns = [_col(source, c) for c in attr.columns]
    if isinstance(calc, AggregateCalculation):
        sub = (f"(SELECT {calc.operation}({calc.select_column}) FROM {q(calc.target_table)} "
               f"WHERE {calc.join_condition})")  # fmt: skip
        return f"COALESCE({sub}, 0)" if calc.operation == "COUNT" else sub
    if isinstance(calc, CaseCalculation):
        whens = " ".join(f"WHEN {c.when} THEN {c.then}" for c in calc.cases)
        tail = f" ELSE {calc.else_}" if calc.else_ is not None else ""
        return f"CASE {whens}{tail} END"
    if isinstance(calc, ConcatCalculation):
        return f"CONCAT_WS({sql_literal(calc.separator)}, {', '.join(columns)})"
    if isinstance(calc, DateMathCalculation):
        if calc.operation == "diff-days":
            if len(columns) >= 2:
                return f"DATEDIFF({columns[1]}, {columns[0]})"
            return f"DATEDIFF(CURRENT_DATE, {columns[0]})"
        fn = "DATE_ADD" if calc.operation == "add" else "DATE_SUB"
        return f"{fn}({columns[0]}, INTERVAL {calc.interval})"
    raise AssertionError(f"unhandled calculation {calc!r}")


def _transformation_expr(attr: Attribute, source: Source, t: Transformation) -> str:
    column = _col(source, attr.columns[0])
    fmt = t.format or ""
    if t.type == "date-format":
        value = column
        src = t.source_format or "date"
        if src == "unix":
            value = f"FROM_UNIXTIME({column})"
        elif src.startswith("string:"):
            value = f"STR_TO_DATE({column}, {sql_literal(date_format(src[7:]))})"
        return f"DATE_FORMAT({value}, {sql_literal(date_format(fmt))})"
    if t.type == "string-format":
        if fmt in ("upper", "lower", "trim"):
            return f"{fmt.upper()}({column})"
        return _template_sql(fmt, lambda name: column if name == "" else _col(source, name))
    if t.type == "number-format":
        decimals = len(fmt.split(".", 1)[1]) if "." in fmt else 0
        return f"ROUND({column}, {decimals})"
    if t.format:  # json-parse with a path
        return f"JSON_EXTRACT({column}, {sql_literal(t.format)})"
    return column


def _template_sql(template: str, field: object) -> str:
    """``'CART#{product_id}'`` -> ``CONCAT('CART#', <field('product_id')>)``."""
    parts: list[str] = []
    pos = 0
    for m in re.finditer(r"\{([^{}]*)\}", template):
        if m.start() > pos:
            parts.append(sql_literal(template[pos : m.start()]))
        parts.append(field(m.group(1)))  # type: ignore[operator]
        pos = m.end()
    if pos < len(template):
        parts.append(sql_literal(template[pos:]))
    if not parts:
        return sql_literal("")
    return parts[0] if len(parts) == 1 else f"CONCAT({', '.join(parts)})"


def attribute_expr(attr: Attribute, source: Source, dialect: Dialect = "mariadb") -> str:
    if attr.join is not None:
        return _join_expr(attr, source, dialect)
    if attr.calculation is not None:
        return _calculation_expr(attr, source)
    if attr.transformation is not None:
        return _transformation_expr(attr, source, attr.transformation)
    columns = [_col(source, c) for c in attr.columns]
    if len(columns) == 1:
        return columns[0]
    if attr.type == "L":
        return f"JSON_ARRAY({', '.join(columns)})"
    if attr.type == "M":
        pairs = ", ".join(
            f"{sql_literal(c)}, {e}" for c, e in zip(attr.columns, columns, strict=True)
        )
        return f"JSON_OBJECT({pairs})"
    return f"CONCAT_WS('#', {', '.join(columns)})"


# --- SELECTs and views ---------------------------------------------------------------------


def _source_select(table: Table, source: Source, columns: list[str], dialect: Dialect) -> str:
    exprs = {a.name: attribute_expr(a, source, dialect) for a in source.attributes}

    def field(name: str) -> str:
        return exprs[name] if name in exprs else _col(source, name)

    if table.type == "multi-entity":
        exprs[table.pk] = _template_sql(source.pk_template or "", field)
        if table.sk:
            exprs[table.sk] = _template_sql(source.sk_template or "", field)
    key_pairs = ", ".join(f"{sql_literal(k)}, {_col(source, k)}" for k in source.source_key)
    exprs["__entity"] = sql_literal(source.entity_type)
    exprs["__source_pk"] = f"JSON_OBJECT({key_pairs})"
    exprs["__part"] = _col(source, source.partition_column)
    version = source.options.version_column
    exprs["__version"] = _col(source, version) if version else "NULL"
    lines = [f"  {exprs.get(c, 'NULL')} AS {q(c)}" for c in columns]
    return "SELECT\n" + ",\n".join(lines) + f"\nFROM {q(source.source_table)}"


def select_sql(contract: Contract, table: Table, dialect: Dialect = "mariadb") -> str:
    columns = view_columns(table)
    return "\nUNION ALL\n".join(
        _source_select(table, source, columns, dialect) for source in table.sources
    )


def view_ddl(contract: Contract, table: Table, dialect: Dialect = "mariadb") -> str:
    return (
        f"CREATE OR REPLACE VIEW {q(view_name(contract, table))} AS\n"
        f"{select_sql(contract, table, dialect)}"
    )


def all_view_ddl(contract: Contract, dialect: Dialect = "mariadb") -> list[tuple[str, str]]:
    return [(view_name(contract, t), view_ddl(contract, t, dialect)) for t in contract.tables]
