"""The SQL a contract carries (join conditions, select columns, case branches, ...), parsed
and allow-listed, never pasted.

A contract is untrusted input: each fragment is parsed with sqlglot's MySQL dialect as exactly
one expression, walked node by node against an allow-list (columns of the tables its
attribute names, literals, operators, a fixed set of scalar and aggregate functions), and the
view SQL is rendered from the parsed tree with every identifier quoted and every string
literal written so that no ``sql_mode`` can change its meaning. Statements, comments,
``INTO``, subqueries, variables and functions outside the list are refused with the JSON
path of the fragment.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Literal

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokens import TokenType

if TYPE_CHECKING:
    from cutover.contract.source_schema import SourceSchema

Kind = Literal["expression", "order_by"]


def _words(text: str) -> list[str]:
    return text.split()


DIALECT = "mysql"

FUNCTIONS = frozenset(
    _words(
        """
    ASCII CHAR_LENGTH CHARACTER_LENGTH CONCAT CONCAT_WS ELT FIELD FIND_IN_SET FORMAT HEX INSTR
    LCASE LEFT LENGTH LOCATE LOWER LPAD LTRIM MID POSITION REPEAT REPLACE REVERSE RIGHT RPAD
    RTRIM SPACE SUBSTR SUBSTRING SUBSTRING_INDEX TRIM UCASE UNHEX UPPER TO_BASE64 FROM_BASE64
    MD5 SHA1 SHA2
    ABS CEIL CEILING FLOOR GREATEST LEAST MOD POW POWER ROUND SIGN SQRT TRUNCATE
    COALESCE IF IFNULL NULLIF ISNULL CASE CAST CONVERT
    ADDDATE CURDATE CURRENT_DATE CURRENT_TIMESTAMP DATE DATE_ADD DATE_FORMAT DATE_SUB DATEDIFF
    DAY DAYOFMONTH DAYOFWEEK DAYOFYEAR EXTRACT FROM_UNIXTIME HOUR LAST_DAY MINUTE MONTH
    MONTHNAME QUARTER SECOND STR_TO_DATE SUBDATE TIME TIME_FORMAT TIMESTAMP TIMESTAMPADD
    TIMESTAMPDIFF TO_DAYS UNIX_TIMESTAMP UTC_DATE UTC_TIMESTAMP WEEK WEEKDAY YEAR YEARWEEK
    JSON_ARRAY JSON_ARRAYAGG JSON_EXTRACT JSON_OBJECT JSON_OBJECTAGG JSON_QUOTE JSON_UNQUOTE
    JSON_VALUE JSON_LENGTH JSON_KEYS
    AVG COUNT GROUP_CONCAT MAX MIN SUM
    """
    )
)

# Node types a fragment may contain (functions are judged by name on top of this).
_ALLOWED_NODES: tuple[type[exp.Expression], ...] = (
    exp.Column, exp.Identifier, exp.Literal, exp.Null, exp.Boolean, exp.Star, exp.Paren,
    exp.Neg, exp.Not, exp.Connector, exp.Predicate, exp.Binary, exp.Is, exp.In, exp.Between,
    exp.Case, exp.If, exp.Cast, exp.DataType, exp.DataTypeParam, exp.Var, exp.Interval,
    exp.Tuple, exp.Ordered, exp.Order, exp.Distinct, exp.Func, exp.HexString, exp.JSONPath,
    exp.JSONPathPart,
    # a scalar subquery over tables of the same database (e.g. through a junction table)
    exp.Subquery, exp.Select, exp.From, exp.Where, exp.Table, exp.TableAlias, exp.Join,
    exp.Limit, exp.Group, exp.Having, exp.Alias, exp.Exists,
)  # fmt: skip
_REFUSED_NODES: dict[type[exp.Expression], str] = {
    exp.Union: "a UNION",
    exp.Into: "INTO",
    exp.Parameter: "a variable (@name)",
    exp.SessionParameter: "a system variable (@@name)",
    exp.Placeholder: "a placeholder",
    exp.PropertyEQ: "an assignment (:=)",
}
_OPERATORS = (exp.Connector, exp.Binary, exp.Predicate, exp.Not, exp.Neg, exp.Paren)
_HEAD = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(\()?")
_PLAIN_STRING = re.compile(r"[\x20-\x5b\x5d-\x7e\u00a0-\U0010ffff]*")  # no backslash, no controls


class FragmentError(Exception):
    """A fragment that cannot be used; ``message`` says why (the caller adds the path)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Scope:
    """What a fragment may refer to: ``tables`` maps each qualifier it may use to the real
    table; a bare column must be a column of one of ``bare`` (real tables, in the order MySQL
    resolves them)."""

    tables: Mapping[str, str]
    bare: tuple[str, ...]


# --- parsing -------------------------------------------------------------------------------


def _tokens_check(sql: str) -> None:
    try:
        tokens = sqlglot.tokenize(sql, read=DIALECT)
    except TokenError as exc:
        raise FragmentError(f"{sql!r} is not valid SQL: {exc}") from None
    for token in tokens:
        if token.comments:
            raise FragmentError(f"{sql!r} contains a comment; comments are not allowed")
        if token.token_type == TokenType.SEMICOLON:
            raise FragmentError(
                f"{sql!r} contains ';': a fragment is one expression, never a statement"
            )


@lru_cache(maxsize=4096)
def _parse(sql: str, kind: Kind) -> exp.Expression:
    if not sql.strip():
        raise FragmentError("is empty; write an SQL expression")
    _tokens_check(sql)
    try:
        if kind == "order_by":
            select = sqlglot.parse_one(f"SELECT 1 ORDER BY {sql}", read=DIALECT)
            used = {k for k, v in select.args.items() if v}
            if not isinstance(select, exp.Select) or used != {"expressions", "order"}:
                raise FragmentError(f"{sql!r} is not an ORDER BY list (e.g. 'col DESC')")
            tree: exp.Expression = select.args["order"]
        else:
            trees = sqlglot.parse(sql, read=DIALECT)
            if len(trees) != 1 or trees[0] is None:
                raise FragmentError(f"{sql!r} must be exactly one expression")
            tree = trees[0]
    except ParseError as exc:
        first = exc.errors[0]["description"] if exc.errors else str(exc)
        raise FragmentError(f"{sql!r} is not a valid MySQL expression: {first}") from None
    _walk_check(tree, sql)
    return tree


def parse(sql: str, kind: Kind = "expression") -> exp.Expression:
    """The parsed, allow-listed tree of ``sql`` (shared: never mutate it). Raises
    ``FragmentError`` for anything outside the allow-list."""
    return _parse(sql, kind)


def function_name(node: exp.Func) -> str | None:
    """The name MySQL will see for a function node (as rendered), upper case; None for a node
    that renders as an operator (``a AND b``)."""
    if isinstance(node, exp.Anonymous):
        return str(node.name).upper()
    m = _HEAD.match(node.sql(dialect=DIALECT))
    if m and (m.group(2) or not isinstance(node, _OPERATORS)):
        return m.group(1).upper()
    return None


def _walk_check(tree: exp.Expression, sql: str) -> None:
    for node in tree.walk():
        for refused, what in _REFUSED_NODES.items():
            if isinstance(node, refused):
                raise FragmentError(f"{sql!r} contains {what}, which a contract may not use")
        if not isinstance(node, _ALLOWED_NODES):
            raise FragmentError(
                f"{sql!r} contains {node.key.upper()} ({node.sql(dialect=DIALECT)[:40]!r}), "
                "which a contract fragment may not use"
            )
        if isinstance(node, exp.Func):
            name = function_name(node)
            if name is not None and name not in FUNCTIONS:
                raise FragmentError(
                    f"{sql!r} calls {name}(), which is not on the allow-list of functions a "
                    "contract may use (docs/contract.md lists them)"
                )
        if isinstance(node, exp.Column | exp.Table) and (
            node.args.get("db") or node.args.get("catalog")
        ):
            raise FragmentError(
                f"{sql!r} names {node.sql(dialect=DIALECT)}: a fragment may only use "
                "tables of the source database, never another schema"
            )


# --- inspecting ----------------------------------------------------------------------------


def column_refs(tree: exp.Expression) -> Iterator[tuple[str | None, str]]:
    """(qualifier or None, column) of every column the tree names."""
    for col in tree.find_all(exp.Column):
        if isinstance(col.this, exp.Star):
            continue
        yield (col.table or None), col.name


def qualifiers(tree: exp.Expression) -> set[str]:
    return {q for q, _ in column_refs(tree) if q}


def as_column(tree: exp.Expression) -> tuple[str | None, str] | None:
    """(qualifier, column) when the whole fragment is one column reference."""
    if isinstance(tree, exp.Column) and not isinstance(tree.this, exp.Star):
        return (tree.table or None), tree.name
    return None


def is_constant(tree: exp.Expression) -> bool:
    return next(column_refs(tree), None) is None


def _conjuncts(tree: exp.Expression) -> list[exp.Expression]:
    parts = list(tree.flatten()) if isinstance(tree, exp.And) else [tree]
    return [p.unnest() if isinstance(p, exp.Paren) else p for p in parts]


def equalities(tree: exp.Expression) -> list[tuple[exp.Expression, exp.Expression]]:
    """The (left, right) sides of the top-level ``=`` of a condition (ANDs are split)."""
    return [(p.this, p.expression) for p in _conjuncts(tree) if isinstance(p, exp.EQ)]


def is_same_row(tree: exp.Expression, table: str) -> bool:
    """Whether a join condition only equates columns of ``table`` with themselves
    (``t.id = t.id``): the workshop's way of saying "this same row"."""
    parts = _conjuncts(tree)
    if not parts or len(equalities(tree)) != len(parts):
        return False
    for left, right in equalities(tree):
        a, b = as_column(left), as_column(right)
        if a is None or a != b or a[0] not in (None, table):
            return False
    return True


def _local_tables(tree: exp.Expression) -> dict[str, str]:
    """Qualifier -> table of the tables a fragment's own subqueries read."""
    return {t.alias_or_name: t.name for t in tree.find_all(exp.Table)}


def qualifier_problems(tree: exp.Expression, sql: str, scope: Scope) -> Iterator[str]:
    """Why the fragment names tables outside its scope (the tables its attribute reads)."""
    tables = {**scope.tables, **_local_tables(tree)}
    for qualifier in sorted(qualifiers(tree) - set(tables)):
        known = ", ".join(sorted(tables)) or "none"
        yield (
            f"{sql!r} names {qualifier!r}, which is not a table this attribute reads "
            f"(it may use: {known})"
        )


def column_problems(
    tree: exp.Expression, sql: str, scope: Scope, schema: SourceSchema
) -> Iterator[str]:
    """Why the fragment names tables or columns the live schema does not have."""
    local = _local_tables(tree)
    tables = {**scope.tables, **local}
    for real in sorted(set(local.values())):
        if not schema.has_table(real):
            yield f"{sql!r} reads table {real!r}, which does not exist in the source database"
    seen: set[tuple[str | None, str]] = set()
    for qualifier, column in column_refs(tree):
        if (qualifier, column) in seen or (qualifier is not None and qualifier not in tables):
            continue
        seen.add((qualifier, column))
        if qualifier is not None:
            table = tables[qualifier]
            if schema.has_table(table) and schema.column(table, column) is None:
                yield f"{sql!r}: column {column!r} does not exist in table {table!r}"
        else:
            candidates = [t for t in (*local.values(), *scope.bare) if schema.has_table(t)]
            if candidates and not any(schema.column(t, column) for t in candidates):
                where = " or ".join(repr(t) for t in dict.fromkeys(candidates))
                yield f"{sql!r}: column {column!r} does not exist in {where}"


# --- rendering -----------------------------------------------------------------------------


def string_literal(value: str) -> str:
    """A MySQL string literal that means ``value`` under every ``sql_mode``: quotes are
    doubled; text with a backslash or a control character is written as hex."""
    if _PLAIN_STRING.fullmatch(value):
        return "'" + value.replace("'", "''") + "'"
    return f"CAST(X'{value.encode('utf-8').hex()}' AS CHAR CHARACTER SET utf8mb4)"


def _safe_literals(node: exp.Expression) -> exp.Expression:
    if isinstance(node, exp.Literal) and node.is_string and not _PLAIN_STRING.fullmatch(node.this):
        return sqlglot.parse_one(string_literal(node.this), read=DIALECT)
    return node


def render(tree: exp.Expression, rename: Mapping[str, str] | None = None) -> str:
    """MySQL text of a parsed fragment: identifiers quoted, literals safe, and qualifiers
    renamed by ``rename``."""
    copy = tree.copy()
    if rename:
        for col in copy.find_all(exp.Column):
            if col.table in rename:
                col.set("table", exp.to_identifier(rename[col.table]))
    copy = copy.transform(_safe_literals)
    return copy.sql(dialect=DIALECT, identify=True)


def render_order(tree: exp.Expression) -> str:
    """An ORDER BY list (the ``Order`` node) without its keyword."""
    return ", ".join(render(o) for o in tree.expressions)
