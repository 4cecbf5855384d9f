"""Contract lint: what the typed model cannot see alone — keys, indexes, names, joins, and
(given the source schema) tables, columns and type fit. Every problem names its JSON path."""

from __future__ import annotations

import difflib
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cutover.contract.load import load_contract
from cutover.contract.model import (
    KEY_TYPES,
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
    template_fields,
)
from cutover.contract.reserved import DYNAMODB_RESERVED_WORDS
from cutover.contract.source_schema import SourceSchema
from cutover.errors import ContractError

MAX_GSIS = 20
MAX_ITEM_BYTES = 400 * 1024
NUMERIC = {
    "tinyint",
    "smallint",
    "mediumint",
    "int",
    "integer",
    "bigint",
    "decimal",
    "numeric",
    "float",
    "double",
    "real",
    "bit",
    "year",
}
TEMPORAL = {"date", "datetime", "timestamp"}
BINARY = {"binary", "varbinary", "blob", "tinyblob", "mediumblob", "longblob"}
TEXT = {"char", "varchar", "text", "tinytext", "mediumtext", "longtext", "enum", "set"}


@dataclass(frozen=True)
class Problem:
    path: str
    message: str
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        prefix = "warning: " if self.severity == "warning" else ""
        return f"{prefix}{self.path}: {self.message}"


def _warn(path: str, message: str) -> Problem:
    return Problem(path, message, "warning")


def _sources(table: Table, ti: int) -> Iterator[tuple[str, Source]]:
    for source in table.sources:
        yield f"tables[{ti}]{source.path_prefix}", source


def _types_by_name(table: Table) -> dict[str, set[str]]:
    types: dict[str, set[str]] = {}
    for source in table.sources:
        for attr in source.attributes:
            types.setdefault(attr.name, set()).add(attr.type)
    return types


# --- offline checks ------------------------------------------------------------------------


def check_tables(contract: Contract) -> Iterator[Problem]:
    counts = Counter(t.table for t in contract.tables)
    for ti, table in enumerate(contract.tables):
        if counts[table.table] > 1:
            yield Problem(f"tables[{ti}].table", f"table name {table.table!r} is used twice")
        size = table.estimated_item_size_bytes
        if size is not None and size > MAX_ITEM_BYTES:
            yield Problem(
                f"tables[{ti}].estimated_item_size_bytes",
                f"{size:,.0f} bytes is over DynamoDB's 400 KB item limit",
            )


def check_keys(table: Table, ti: int) -> Iterator[Problem]:
    types = _types_by_name(table)
    if table.type == "single-entity":
        for field in ("pk", "sk"):
            name = getattr(table, field)
            if name is None:
                continue
            if name not in types:
                yield Problem(
                    f"tables[{ti}].{field}",
                    f"{name!r} is not produced by any attribute of table "
                    f"{table.table!r}; add an attribute named {name!r}",
                )
            elif not types[name] <= set(KEY_TYPES):
                yield Problem(
                    f"tables[{ti}].{field}",
                    f"key {name!r} has type {'/'.join(sorted(types[name]))}; "
                    "a key must be S, N or B",
                )
        return
    seen: dict[tuple[str, str], int] = {}
    assert table.entities is not None
    for ei, entity in enumerate(table.entities):
        path = f"tables[{ti}].entities[{ei}]"
        names = {a.name for a in entity.attributes}
        for ai, attr in enumerate(entity.attributes):
            if attr.name in (table.pk, table.sk):
                yield Problem(
                    f"{path}.attributes[{ai}].name",
                    f"attribute {attr.name!r} collides with the key that "
                    f"{'pk' if attr.name == table.pk else 'sk'}_template makes; "
                    "drop the attribute (the template makes the key)",
                )
        for field in ("pk_template", "sk_template"):
            for name in template_fields(getattr(entity, field)):
                if not name:
                    yield Problem(f"{path}.{field}", "empty {} field in the template")
                elif name not in names:
                    yield _warn(
                        f"{path}.{field}",
                        f"{{{name}}} names no attribute of entity "
                        f"{entity.entity_type!r}; it must be a column of "
                        f"{entity.source_table!r} (lint --db checks)",
                    )
        shape = (_skeleton(entity.pk_template), _skeleton(entity.sk_template))
        if not template_fields(entity.pk_template) and not template_fields(entity.sk_template):
            yield Problem(
                f"{path}.sk_template",
                "both key templates are constant, so every row gets the same key",
            )
        if shape in seen:
            yield Problem(
                f"{path}.sk_template",
                f"entity {entity.entity_type!r} makes keys of the same shape as "
                f"entities[{seen[shape]}]; give it a distinct sk_template prefix",
            )
        seen.setdefault(shape, ei)
    for name, kinds in types.items():
        if len(kinds) > 1:
            yield Problem(
                f"tables[{ti}].entities",
                f"attribute {name!r} has types {sorted(kinds)} in different "
                "entities; one attribute name must have one type",
            )


def _skeleton(template: str) -> str:
    return re.sub(r"\{[^{}]*\}", "{}", template)


def check_gsis(table: Table, ti: int) -> Iterator[Problem]:
    types = _types_by_name(table)
    if len(table.gsis) > MAX_GSIS:
        yield Problem(f"tables[{ti}].gsis", f"{len(table.gsis)} GSIs; DynamoDB allows {MAX_GSIS}")
    counts = Counter(g.index_name for g in table.gsis)
    for gi, gsi in enumerate(table.gsis):
        path = f"tables[{ti}].gsis[{gi}]"
        if counts[gsi.index_name] > 1:
            yield Problem(f"{path}.index_name", f"index name {gsi.index_name!r} is used twice")
        for field in ("pk", "sk"):
            name = getattr(gsi, field)
            if name is None:
                continue
            if name not in types and name not in (table.pk, table.sk):
                yield Problem(
                    f"{path}.{field}",
                    f"{name!r} is not produced by any attribute of table "
                    f"{table.table!r}; add an attribute named {name!r} or change "
                    "the index key",
                )
            elif name in types and not types[name] <= set(KEY_TYPES):
                yield Problem(
                    f"{path}.{field}",
                    f"index key {name!r} has type {'/'.join(sorted(types[name]))}; "
                    "a key must be S, N or B",
                )
        if gsi.projection == "INCLUDE" and not gsi.projected_attributes:
            yield Problem(
                f"{path}.projected_attributes", "an INCLUDE projection needs projected_attributes"
            )
        if gsi.projection != "INCLUDE" and gsi.projected_attributes:
            yield Problem(
                f"{path}.projected_attributes",
                f"projected_attributes only apply to INCLUDE, not {gsi.projection}",
            )


def _mentions(sql: str, name: str) -> bool:
    return re.search(rf"(?<![\w`]){re.escape(name)}`?\s*\.", sql) is not None


def _qualifiers(sql: str) -> set[str]:
    """Table qualifiers of a plain column expression; a subquery has its own scope, so
    expressions with parentheses are not judged."""
    if "(" in sql:
        return set()
    return {m for m in re.findall(r"(?<![\w.'])`?([A-Za-z_]\w*)`?\s*\.\s*`?[A-Za-z_*]", sql)}


def check_attribute(attr: Attribute, source: Source, path: str) -> Iterator[Problem]:
    src = source.source_table
    if attr.name.startswith("__"):
        yield Problem(
            f"{path}.name",
            f"names starting with '__' are reserved for cutover's "
            f"view columns; rename {attr.name!r}",
        )
    elif attr.name.upper() in DYNAMODB_RESERVED_WORDS:
        yield _warn(
            f"{path}.name",
            f"{attr.name!r} is a DynamoDB reserved word; expressions "
            "must use ExpressionAttributeNames for it",
        )
    derived = attr.join is not None or isinstance(attr.calculation, AggregateCalculation)
    if attr.source_table != src and not derived:
        yield Problem(
            f"{path}.source_table",
            f"attribute reads from {attr.source_table!r} but its source is {src!r} "
            "and it has no join or aggregate calculation",
        )
    yield from _check_join(attr, source, path)
    yield from _check_calculation(attr, path)
    yield from _check_transformation_type(attr, path)
    default = attr.cutover.default
    if attr.cutover.on_null == "default" and not _default_fits(attr.type, default):
        yield Problem(
            f"{path}.cutover.default", f"default {default!r} does not fit type {attr.type}"
        )


def _default_fits(type_: str, value: object) -> bool:
    if type_ == "N":
        if isinstance(value, str):
            return re.fullmatch(r"-?\d+(\.\d+)?", value) is not None
        return isinstance(value, int | float) and not isinstance(value, bool)
    if type_ == "BOOL":
        return isinstance(value, bool)
    if type_ in ("M",):
        return isinstance(value, dict)
    if type_ in ("L", "SS", "NS", "BS"):
        return isinstance(value, list)
    return isinstance(value, str)


def _check_join(attr: Attribute, source: Source, path: str) -> Iterator[Problem]:
    join = attr.join
    if join is None:
        return
    src = source.source_table
    jpath = f"{path}.join"
    conditions: list[tuple[str, str]] = []
    targets: set[str] = set()
    if isinstance(join, SelfJoin):
        targets = {join.join_alias}
        if not (
            _mentions(join.join_condition, src) and _mentions(join.join_condition, join.join_alias)
        ):
            yield Problem(
                f"{jpath}.join_condition",
                f"a self-join condition must compare {join.join_alias!r} with "
                f"{src!r}; as written it would match every row",
            )
        if join.join_alias == src:
            yield Problem(
                f"{jpath}.join_alias", f"the alias must differ from the source table {src!r}"
            )
    elif isinstance(join, ChainJoin):
        targets = {s.target_table for s in join.joins}
        conditions = [(f"{jpath}.joins[0].join_condition", join.joins[0].join_condition)]
        for si, step in enumerate(join.joins):
            if not _qualifiers(step.select_column) <= targets:
                yield Problem(
                    f"{jpath}.joins[{si}].select_column",
                    f"{step.select_column!r} names a table outside the chain {sorted(targets)}",
                )
    elif isinstance(join, MultiColumnJoin):
        targets = {join.target_table}
        conditions = [(f"{jpath}.join_conditions", " AND ".join(join.join_conditions))]
    else:
        assert isinstance(
            join, ForeignKeyJoin | LookupTableJoin | ConditionalJoin | JsonConstructionJoin
        )
        targets = {join.target_table}
        conditions = [(f"{jpath}.join_condition", join.join_condition)]
        if join.target_table == src:
            yield Problem(
                f"{jpath}.target_table",
                f"target_table is the source table {src!r} itself; use a self-join "
                "with a join_alias",
            )
    for cpath, condition in conditions:
        if not _mentions(condition, src):
            yield Problem(
                cpath,
                f"the condition never refers to the source table {src!r}; it would match every row",
            )
    select = getattr(join, "select_column", None)
    if isinstance(select, str) and not _qualifiers(select) <= targets:
        yield Problem(
            f"{jpath}.select_column", f"{select!r} names a table other than {sorted(targets)}"
        )
    if isinstance(join, JsonConstructionJoin):
        wanted = {"array": ("L", "S"), "object": ("M", "S")}[join.construction.type]
        if attr.type not in wanted:
            yield Problem(
                f"{path}.type",
                f"a json-construction {join.construction.type} makes "
                f"{' or '.join(wanted)}, not {attr.type}",
            )


def _check_calculation(attr: Attribute, path: str) -> Iterator[Problem]:
    calc = attr.calculation
    cpath = f"{path}.calculation"
    if isinstance(calc, AggregateCalculation):
        if calc.operation in ("COUNT", "SUM", "AVG") and attr.type != "N":
            yield Problem(f"{path}.type", f"{calc.operation} makes a number: use type N")
        if not _mentions(calc.join_condition, attr.source_table) and not _mentions(
            calc.join_condition, calc.target_table
        ):
            yield Problem(
                f"{cpath}.join_condition",
                "the condition names neither table; it would aggregate every row",
            )
    elif isinstance(calc, CaseCalculation) and attr.type not in ("S", "N", "BOOL"):
        yield Problem(f"{path}.type", f"a case calculation makes S, N or BOOL, not {attr.type}")
    elif isinstance(calc, ConcatCalculation):
        if len(attr.columns) < 2:
            yield Problem(f"{path}.source_column", "concat needs a list of at least 2 columns")
        if attr.type != "S":
            yield Problem(f"{path}.type", f"concat makes S, not {attr.type}")
    elif isinstance(calc, DateMathCalculation) and calc.operation == "diff-days":
        if len(attr.columns) > 2:
            yield Problem(f"{path}.source_column", "diff-days takes one or two columns")
        if attr.type != "N":
            yield Problem(f"{path}.type", "diff-days makes a number: use type N")


def _check_transformation_type(attr: Attribute, path: str) -> Iterator[Problem]:
    t = attr.transformation
    if t is None:
        return
    allowed = {
        "date-format": ("S",),
        "string-format": ("S",),
        "number-format": ("N", "S"),
        "json-parse": ("M", "L", "S", "N", "BOOL", "SS", "NS"),
    }[t.type]
    if attr.type not in allowed:
        yield Problem(
            f"{path}.type",
            f"a {t.type} transformation makes {' or '.join(allowed)}, not {attr.type}",
        )
    src = t.source_format
    known = ("timestamp", "datetime", "date", "unix")
    if t.type == "date-format" and src and src not in known and not src.startswith("string:"):
        yield Problem(
            f"{path}.transformation.source_format",
            f"{src!r} is not timestamp, datetime, date, unix or string:<format>",
        )


def check_attributes(table: Table, ti: int) -> Iterator[Problem]:
    for base, source in _sources(table, ti):
        counts = Counter(a.name for a in source.attributes)
        for ai, attr in enumerate(source.attributes):
            path = f"{base}.attributes[{ai}]"
            if counts[attr.name] > 1:
                yield Problem(f"{path}.name", f"attribute {attr.name!r} is defined twice")
            yield from check_attribute(attr, source, path)


# --- checks against the source database ----------------------------------------------------


def _unknown_table(schema: SourceSchema, table: str, path: str) -> Problem:
    close = difflib.get_close_matches(table, list(schema.tables), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return Problem(path, f"table {table!r} does not exist in the source database{hint}")


def _unknown_column(schema: SourceSchema, table: str, column: str, path: str) -> Problem:
    close = difflib.get_close_matches(column, list(schema.tables.get(table, {})), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return Problem(path, f"column {column!r} does not exist in table {table!r}{hint}")


def _type_fit(attr: Attribute, data_type: str) -> str | None:
    """Why a source column of ``data_type`` cannot feed ``attr`` directly, or None."""
    t = attr.type
    derived = attr.join or attr.calculation
    if derived or t in ("S", "NULL"):
        return None
    transformation = attr.transformation
    if transformation and transformation.type == "number-format":
        return None if data_type in NUMERIC else "number-format needs a numeric column"
    if transformation and transformation.type == "date-format":
        src = transformation.source_format or "date"
        ok = (
            data_type in TEMPORAL
            or (src == "unix" and data_type in NUMERIC)
            or (src.startswith("string:") and data_type in TEXT)
        )
        return None if ok else f"date-format with source_format {src!r} cannot read it"
    if t == "N" and data_type not in NUMERIC:
        return "type N needs a numeric column"
    if t == "BOOL" and data_type not in ("tinyint", "bit", "boolean"):
        return "type BOOL needs a TINYINT(1) or BIT column"
    if t in ("B", "BS") and data_type not in BINARY:
        return f"type {t} needs a binary column"
    parsed = transformation is not None and transformation.type == "json-parse"
    if t in ("M", "L", "SS", "NS") and data_type != "json" and not (parsed and data_type in TEXT):
        return f"type {t} needs a JSON column (or a text column with a json-parse transformation)"
    return None


def check_against_schema(contract: Contract, schema: SourceSchema) -> Iterator[Problem]:
    for ti, table in enumerate(contract.tables):
        for base, source in _sources(table, ti):
            src = source.source_table
            if not schema.has_table(src):
                yield _unknown_table(schema, src, f"{base}.source_table")
                continue
            names = {a.name for a in source.attributes}
            for ai, attr in enumerate(source.attributes):
                path = f"{base}.attributes[{ai}]"
                yield from _check_attribute_schema(schema, attr, src, path)
            if table.type == "multi-entity":
                for field in ("pk_template", "sk_template"):
                    for name in template_fields(getattr(source, field) or ""):
                        if name and name not in names and not schema.column(src, name):
                            yield Problem(
                                f"{base}.{field}",
                                f"{{{name}}} is neither an attribute of entity "
                                f"{source.entity_type!r} nor a column of {src!r}",
                            )
            yield from _check_options(schema, source, base)


def _check_attribute_schema(
    schema: SourceSchema, attr: Attribute, src: str, path: str
) -> Iterator[Problem]:
    if not schema.has_table(attr.source_table):
        yield _unknown_table(schema, attr.source_table, f"{path}.source_table")
        return
    for column in attr.columns:
        col = schema.column(attr.source_table, column)
        if col is None:
            yield _unknown_column(schema, attr.source_table, column, f"{path}.source_column")
        elif (why := _type_fit(attr, col.data_type)) is not None:
            yield Problem(
                f"{path}.type",
                f"{attr.type} cannot hold {attr.source_table}.{column} ({col.column_type}): {why}",
            )
    join = attr.join
    tables: list[tuple[str, str]] = []
    if isinstance(join, ChainJoin):
        tables = [
            (s.target_table, f"{path}.join.joins[{i}].target_table")
            for i, s in enumerate(join.joins)
        ]
    elif join is not None and not isinstance(join, SelfJoin):
        tables = [(join.target_table, f"{path}.join.target_table")]
    if isinstance(attr.calculation, AggregateCalculation):
        tables.append((attr.calculation.target_table, f"{path}.calculation.target_table"))
    for table, tpath in tables:
        if not schema.has_table(table):
            yield _unknown_table(schema, table, tpath)


def _check_options(schema: SourceSchema, source: Source, base: str) -> Iterator[Problem]:
    src = source.source_table
    opts = source.options
    for field, column in (
        ("partition_column", opts.partition_column),
        ("version_column", opts.version_column),
    ):
        if column is None:
            continue
        col = schema.column(src, column)
        if col is None:
            yield _unknown_column(schema, src, column, f"{base}.cutover.{field}")
        elif field == "version_column" and col.data_type not in TEMPORAL | NUMERIC:
            yield Problem(
                f"{base}.cutover.version_column",
                f"{column!r} is {col.column_type}; a version column must be a "
                "date-time or an integer",
            )
    for column in source.source_key:
        if schema.column(src, column) is None:
            yield _unknown_column(schema, src, column, f"{base}.cutover.source_key")
    actual = schema.primary_key(src)
    if actual and actual != source.source_key:
        yield _warn(
            f"{base}.cutover.source_key",
            f"the primary key of {src!r} is {actual}, not {source.source_key}; set "
            f'"source_key": {actual}',
        )


# --- entry points ----------------------------------------------------------------------------


def lint(contract: Contract, schema: SourceSchema | None = None) -> list[Problem]:
    problems = list(check_tables(contract))
    for ti, table in enumerate(contract.tables):
        problems.extend(check_keys(table, ti))
        problems.extend(check_gsis(table, ti))
        problems.extend(check_attributes(table, ti))
    if schema is not None:
        problems.extend(check_against_schema(contract, schema))
        # a template field the schema resolves is no longer worth a warning
        problems = [p for p in problems if not _resolved_template_warning(p, contract, schema)]
    return problems


def _resolved_template_warning(p: Problem, contract: Contract, schema: SourceSchema) -> bool:
    if p.severity != "warning" or "lint --db checks" not in p.message:
        return False
    m = re.match(r"tables\[(\d+)\]\.entities\[(\d+)\]", p.path)
    field = re.search(r"\{(.*)\} names no attribute", p.message)
    if not m or not field:
        return False
    entities = contract.tables[int(m.group(1))].entities or []
    entity = entities[int(m.group(2))]
    return schema.column(entity.source_table, field.group(1)) is not None


def lint_file(
    path: str | Path, schema: SourceSchema | None = None
) -> tuple[Contract | None, list[Problem]]:
    try:
        contract = load_contract(path)
    except ContractError as exc:
        return None, [Problem(p, m) for p, m in exc.problems]
    return contract, lint(contract, schema)
