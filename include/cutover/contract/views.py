"""The MySQL views of a contract: one per DynamoDB table, exactly as docs/contract.md says.

Joins and aggregates are correlated subqueries, so the outer query reads the source table
under its own name and several attributes may join the same table independently.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from cutover.contract.fragments import (
    FragmentError,
    Kind,
    as_column,
    is_constant,
    is_same_row,
    parse,
    render,
    render_order,
    string_literal,
)
from cutover.contract.model import (
    AggregateCalculation,
    Attribute,
    CaseCalculation,
    ChainJoin,
    ConcatCalculation,
    ConditionalJoin,
    Contract,
    DateMathCalculation,
    JsonConstructionJoin,
    LookupTableJoin,
    MultiColumnJoin,
    SelfJoin,
    Source,
    Table,
    Transformation,
)
from cutover.db import quote_ident as q
from cutover.errors import ContractError

Dialect = Literal["mariadb", "mysql"]
METADATA_COLUMNS = ("__entity", "__source_pk", "__part")
VERSION_COLUMN = "__version"
_COLLECTING = ("SS", "NS", "BS", "L")
_DATE_TOKENS = [("YYYY", "%Y"), ("MM", "%m"), ("DD", "%d"), ("HH", "%H"), ("mm", "%i"),
                ("ss", "%s")]  # fmt: skip
ISO8601 = "%Y-%m-%dT%H:%i:%sZ"


sql_literal = string_literal
# A NULL placeholder (an entity without the attribute), typed like the attribute it stands
# for so that no view column is of MySQL type NULL. IF(FALSE, <typed literal>, NULL) has the
# literal's type with a coercible collation, so a UNION keeps the real column's type and
# collation (a CAST would impose the connection's collation: "Illegal mix of collations").
_TYPED_EMPTY = {"N": "0", "BOOL": "0", "B": "X''"}


def view_name(contract: Contract, table: Table) -> str:
    return f"cutover_{contract.name}_{re.sub(r'[^a-z0-9_]', '_', table.table.lower())}"


def versioned(table: Table) -> bool:
    return any(s.options.version_column for s in table.sources)


def view_columns(table: Table) -> list[str]:
    """The view's columns: (multi-entity) the keys, every attribute, cutover's metadata, and
    ``__version`` when a source of the table has a version column."""
    names: list[str] = []
    if table.type == "multi-entity":
        names.extend(k for k in (table.pk, table.sk) if k)
    for source in table.sources:
        for attr in source.attributes:
            if attr.name not in names:
                names.append(attr.name)
    return [*names, *METADATA_COLUMNS, *([VERSION_COLUMN] if versioned(table) else [])]


def date_format(fmt: str) -> str:
    if fmt.lower() == "iso8601":
        return ISO8601
    for token, code in _DATE_TOKENS:
        fmt = fmt.replace(token, code)
    return fmt


# --- expressions ---------------------------------------------------------------------------


def fragment(sql: str, path: str, kind: Kind = "expression") -> str:
    """A contract's SQL fragment, parsed, allow-listed and rendered (never pasted)."""
    return (
        render_order(_tree(sql, path, kind))
        if kind == "order_by"
        else render(_tree(sql, path, kind))
    )


def _tree(sql: str, path: str, kind: Kind = "expression") -> Any:
    try:
        return parse(sql, kind)
    except FragmentError as exc:
        raise ContractError([(path, exc.message)]) from None


def _col(source: Source, column: str) -> str:
    return f"{q(source.source_table)}.{q(column)}"


def _coalesce(expr: str, fallback: str | None) -> str:
    return expr if fallback is None else f"COALESCE({expr}, {sql_literal(fallback)})"


def _from(table: str, alias: str | None) -> str:
    return q(table) + (f" AS {q(alias)}" if alias else "")


def reads_same_row(target: str, alias: str | None, condition: str, source: Source) -> bool:
    """A join onto the source table itself, without an alias, whose condition equates a
    column with itself (``users.id = users.id``) reads the outer row (workshop semantics)."""
    if target != source.source_table or alias:
        return False
    try:
        return is_same_row(parse(condition), target)
    except FragmentError:
        return False


def _lookup(select: str, from_: str, where: str) -> str:
    return f"(SELECT {select} FROM {from_} WHERE {where} LIMIT 1)"


def _join_expr(attr: Attribute, source: Source, path: str, dialect: Dialect) -> str:
    join = attr.join
    at = f"{path}.join"
    if isinstance(join, SelfJoin):
        sub = _lookup(
            fragment(join.select_column, f"{at}.select_column"),
            _from(source.source_table, join.join_alias),
            fragment(join.join_condition, f"{at}.join_condition"),
        )
        return _coalesce(sub, join.null_value)
    if isinstance(join, ChainJoin):
        return _chain(join, at)
    if isinstance(join, JsonConstructionJoin):
        return _json_construction(join, source, at, dialect)
    if isinstance(join, MultiColumnJoin):
        condition = " AND ".join(
            f"({fragment(c, f'{at}.join_conditions[{i}]')})"
            for i, c in enumerate(join.join_conditions)
        )
        same_row = all(
            reads_same_row(join.target_table, join.join_alias, c, source)
            for c in join.join_conditions
        )
    else:
        assert join is not None
        condition = fragment(join.join_condition, f"{at}.join_condition")
        same_row = reads_same_row(join.target_table, join.join_alias, join.join_condition, source)
    from_ = _from(join.target_table, join.join_alias)
    select = fragment(join.select_column, f"{at}.select_column")
    if isinstance(join, ConditionalJoin):
        return _conditional(join, source, at, select, from_, condition, same_row)
    if isinstance(join, LookupTableJoin) and attr.type in _COLLECTING:
        where = "TRUE" if same_row else condition
        return (f"(SELECT COALESCE(JSON_ARRAYAGG({select}), JSON_ARRAY()) FROM {from_} "
                f"WHERE {where})")  # fmt: skip
    value = select if same_row else _lookup(select, from_, condition)
    return _coalesce(value, join.null_value)


def else_reads_target(join: ConditionalJoin) -> bool:
    """Whether ``else_value`` is a column of the joined row (``parent.name``) rather than a
    literal: the workshop's rule (a dotted, unquoted name), limited to the join's own table."""
    try:
        ref = as_column(parse(join.else_value))
    except FragmentError:
        return False
    return ref is not None and ref[0] in {join.join_alias or join.target_table}


def _conditional(
    join: ConditionalJoin,
    source: Source,
    at: str,
    select: str,
    from_: str,
    condition: str,
    same_row: bool,
) -> str:
    when = fragment(join.condition, f"{at}.condition")
    if else_reads_target(join):
        other = fragment(join.else_value, f"{at}.else_value")
        other = other if same_row else _lookup(other, from_, condition)
    else:
        other = sql_literal(join.else_value)
    if same_row or is_constant(_tree(join.select_column, f"{at}.select_column")):
        then = select  # a constant (e.g. 'ROOT') or the outer row's own column
    else:
        then = f"COALESCE({_lookup(select, from_, condition)}, {other})"
    return f"CASE WHEN {when} THEN {then} ELSE {other} END"


def _chain(join: ChainJoin, at: str) -> str:
    first, *rest = join.joins
    from_clause = q(first.target_table) + "".join(
        f" JOIN {q(step.target_table)} ON {fragment(step.join_condition, f'{at}.joins[{i}].join_condition')}"  # noqa: E501
        for i, step in enumerate(rest, 1)
    )
    selects = [
        fragment(step.select_column, f"{at}.joins[{i}].select_column")
        for i, step in enumerate(join.joins)
    ]
    if join.chain_separator is None:
        value = selects[-1]
    else:
        value = f"CONCAT_WS({sql_literal(join.chain_separator)}, {', '.join(selects)})"
    where = fragment(first.join_condition, f"{at}.joins[0].join_condition")
    return _coalesce(_lookup(value, from_clause, where), join.null_value)


def _json_construction(
    join: JsonConstructionJoin, source: Source, at: str, dialect: Dialect
) -> str:
    c = join.construction
    obj = "JSON_OBJECT(" + ", ".join(
        f"{sql_literal(k)}, {fragment(v, f'{at}.construction.select_columns.{k}')}"
        for k, v in c.select_columns.items()
    ) + ")"  # fmt: skip
    if reads_same_row(join.target_table, join.join_alias, join.join_condition, source):
        return obj if c.type == "object" else f"JSON_ARRAY({obj})"
    target = _from(join.target_table, join.join_alias)
    condition = fragment(join.join_condition, f"{at}.join_condition")
    order = (
        f" ORDER BY {fragment(c.order_by, f'{at}.construction.order_by', 'order_by')}"
        if c.order_by
        else ""
    )
    if c.type == "object":
        return f"(SELECT {obj} FROM {target} WHERE {condition}{order} LIMIT 1)"
    limit = f" LIMIT {int(c.limit)}" if c.limit else ""
    if dialect == "mariadb":
        agg = f"JSON_ARRAYAGG({obj}{order}{limit})"
        return f"(SELECT COALESCE({agg}, JSON_ARRAY()) FROM {target} WHERE {condition})"
    inner = f"SELECT {obj} AS j FROM {target} WHERE {condition}{order}{limit}"
    return f"(SELECT COALESCE(JSON_ARRAYAGG(t.j), JSON_ARRAY()) FROM ({inner}) AS t)"


def _calculation_expr(attr: Attribute, source: Source, path: str) -> str:
    calc = attr.calculation
    at = f"{path}.calculation"
    columns = [_col(source, c) for c in attr.columns]
    if isinstance(calc, AggregateCalculation):
        select = fragment(calc.select_column, f"{at}.select_column")
        condition = fragment(calc.join_condition, f"{at}.join_condition")
        sub = (f"(SELECT {calc.operation}({select}) FROM "
               f"{_from(calc.target_table, calc.join_alias)} WHERE {condition})")  # fmt: skip
        return f"COALESCE({sub}, 0)" if calc.operation == "COUNT" else sub
    if isinstance(calc, CaseCalculation):
        whens = " ".join(
            f"WHEN {fragment(c.when, f'{at}.cases[{i}].when')} "
            f"THEN {fragment(c.then, f'{at}.cases[{i}].then')}"
            for i, c in enumerate(calc.cases)
        )
        tail = f" ELSE {fragment(calc.else_, f'{at}.else')}" if calc.else_ is not None else ""
        return f"CASE {whens}{tail} END"
    if isinstance(calc, ConcatCalculation):
        return f"CONCAT_WS({sql_literal(calc.separator)}, {', '.join(columns)})"
    if isinstance(calc, DateMathCalculation):
        if calc.operation == "diff-days":
            if len(columns) >= 2:
                return f"DATEDIFF({columns[1]}, {columns[0]})"
            return f"DATEDIFF(CURRENT_DATE, {columns[0]})"
        fn = "DATE_ADD" if calc.operation == "add" else "DATE_SUB"
        return f"{fn}({columns[0]}, INTERVAL {calc.interval})"  # the model checked its shape
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


def attribute_expr(
    attr: Attribute, source: Source, dialect: Dialect = "mariadb", path: str = "attribute"
) -> str:
    """The SQL of one attribute; ``path`` (its JSON path) names it in errors."""
    if attr.join is not None:
        return _join_expr(attr, source, path, dialect)
    if attr.calculation is not None:
        return _calculation_expr(attr, source, path)
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


def key_attribute(source: Source, key: str | None) -> Attribute | None:
    """The attribute of ``source`` named after a key: its derivation is the key's value
    (workshop semantics); the entity's template is used only where there is none."""
    if key is None:
        return None
    return next((a for a in source.attributes if a.name == key), None)


def _source_select(
    table: Table,
    path: str,
    source: Source,
    columns: list[str],
    dialect: Dialect,
    from_sql: str | None = None,
) -> str:
    exprs = {
        a.name: attribute_expr(a, source, dialect, f"{path}.attributes[{i}]")
        for i, a in enumerate(source.attributes)
    }
    types = {a.name: a.type for s in table.sources for a in s.attributes}

    def field(name: str) -> str:
        return exprs[name] if name in exprs else _col(source, name)

    if table.type == "multi-entity":
        for key, template in ((table.pk, source.pk_template), (table.sk, source.sk_template)):
            if key and key_attribute(source, key) is None:
                exprs[key] = _template_sql(template or "", field)
                types.setdefault(key, "S")
    key_pairs = ", ".join(f"{sql_literal(k)}, {_col(source, k)}" for k in source.source_key)
    exprs["__entity"] = sql_literal(source.entity_type)
    exprs["__source_pk"] = f"JSON_OBJECT({key_pairs})"
    exprs["__part"] = _col(source, source.partition_column)
    if VERSION_COLUMN in columns:
        exprs[VERSION_COLUMN] = _version_expr(table, source)
    lines = [
        f"  {exprs[c] if c in exprs else _null_of(types.get(c, 'S'))} AS {q(c)}" for c in columns
    ]
    return "SELECT\n" + ",\n".join(lines) + f"\nFROM {from_sql or q(source.source_table)}"


def _null_of(type_: str) -> str:
    empty = _TYPED_EMPTY.get(type_, "''")
    return f"IF(FALSE, {empty}, NULL)"


def _version_expr(table: Table, source: Source) -> str:
    """The version column; for an entity without one, a NULL of the same SQL type as the
    first versioned entity's (a scalar subquery that never returns a row keeps the type)."""
    if source.options.version_column:
        return _col(source, source.options.version_column)
    other = next(s for s in table.sources if s.options.version_column)
    column = other.options.version_column or ""
    return f"(SELECT {q(column)} FROM {q(other.source_table)} WHERE FALSE LIMIT 1)"


def select_sql(contract: Contract, table: Table, dialect: Dialect = "mariadb") -> str:
    columns = view_columns(table)
    ti = contract.tables.index(table)
    return "\nUNION ALL\n".join(
        _source_select(table, f"tables[{ti}]{source.path_prefix}", source, columns, dialect)
        for source in table.sources
    )


def source_select_sql(
    contract: Contract,
    table: Table,
    source: Source,
    from_sql: str | None = None,
    dialect: Dialect = "mariadb",
) -> str:
    """The view's SELECT for one entity: its rows of the view. ``from_sql`` replaces the
    source table (e.g. a one-row derived table under the source table's name), so the same
    expressions derive an item from a row that is not stored yet."""
    ti = contract.tables.index(table)
    path = f"tables[{ti}]{source.path_prefix}"
    return _source_select(table, path, source, view_columns(table), dialect, from_sql)


def view_ddl(contract: Contract, table: Table, dialect: Dialect = "mariadb") -> str:
    return (
        f"CREATE OR REPLACE VIEW {q(view_name(contract, table))} AS\n"
        f"{select_sql(contract, table, dialect)}"
    )


def all_view_ddl(contract: Contract, dialect: Dialect = "mariadb") -> list[tuple[str, str]]:
    return [(view_name(contract, t), view_ddl(contract, t, dialect)) for t in contract.tables]
