"""Contract lint: what the typed model cannot see alone — keys, indexes, names, joins, and
(given the source schema) tables, columns and type fit. Every problem names its JSON path."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cutover.contract.attribute_fragments import attribute_fragments, key_path, target_of
from cutover.contract.fix import rewrite_self_reference
from cutover.contract.fragments import (
    FragmentError,
    as_column,
    column_problems,
    parse,
    qualifier_problems,
    qualifiers,
)
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
    Transformation,
    template_fields,
)
from cutover.contract.reserved import DYNAMODB_RESERVED_WORDS
from cutover.contract.source_schema import Column, SourceSchema
from cutover.contract.views import else_reads_target, key_attribute, reads_same_row
from cutover.errors import ContractError
from cutover.transform.items import VERSION_ATTRIBUTE

MAX_GSIS = 20
MAX_ITEM_BYTES = 400 * 1024
INTEGER = {"tinyint", "smallint", "mediumint", "int", "integer", "bigint"}
NUMERIC = INTEGER | {"decimal", "numeric", "float", "double", "real", "bit", "year"}
TEMPORAL = {"date", "datetime", "timestamp"}
BOOLEAN = {"tinyint", "bit", "bool", "boolean"}
BINARY = {"binary", "varbinary", "blob", "tinyblob", "mediumblob", "longblob"}
TEXT = {"char", "varchar", "text", "tinytext", "mediumtext", "longtext", "enum", "set"}
DATE_SOURCE_FORMATS = ("timestamp", "datetime", "date", "unix")
# the types each derivation can make
JSON_PARSE_TYPES = ("M", "L", "S", "N", "BOOL", "SS", "NS")
TRANSFORMATION_TYPES = {
    "date-format": ("S",),
    "string-format": ("S",),
    "number-format": ("N", "S"),
    "json-parse": JSON_PARSE_TYPES,
}
_COLLECTING = ("SS", "NS", "BS", "L")  # a lookup-table join collects every match for these


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


# --- helpers -----------------------------------------------------------------------------


def _sources(table: Table, ti: int) -> Iterator[tuple[str, Source]]:
    for source in table.sources:
        yield f"tables[{ti}]{source.path_prefix}", source


def _attributes(table: Table, ti: int) -> Iterator[tuple[str, Attribute, Source]]:
    for base, source in _sources(table, ti):
        for ai, attr in enumerate(source.attributes):
            yield f"{base}.attributes[{ai}]", attr, source


def _types_by_name(table: Table) -> dict[str, set[str]]:
    types: dict[str, set[str]] = {}
    for source in table.sources:
        for attr in source.attributes:
            types.setdefault(attr.name, set()).add(attr.type)
    return types


def _tree(sql: str, kind: str = "expression") -> Any:
    """The parsed fragment, or None when it does not parse (check_fragments reports it)."""
    try:
        return parse(sql, kind)  # type: ignore[arg-type]
    except FragmentError:
        return None


def _skeleton(template: str) -> str:
    return re.sub(r"\{[^{}]*\}", "{}", template)


def _repeats(names: Iterable[str]) -> Iterator[tuple[int, str, int]]:
    """(index, name, index of its first use) for every repeated name."""
    first: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in first:
            yield i, name, first[name]
        else:
            first[name] = i


def _is_number(text: str) -> bool:
    return re.fullmatch(r"\s*-?\d+(\.\d+)?([eE][-+]?\d+)?\s*", text) is not None


# --- tables --------------------------------------------------------------------------------


def check_table_names(contract: Contract) -> Iterator[Problem]:
    for ti, name, first in _repeats(t.table for t in contract.tables):
        yield Problem(
            f"tables[{ti}].table",
            f"table name {name!r} is already used by tables[{first}]; DynamoDB table names "
            "must be unique",
        )


def check_item_size(table: Table, ti: int) -> Iterator[Problem]:
    size = table.estimated_item_size_bytes
    if size is not None and size > MAX_ITEM_BYTES:
        yield Problem(
            f"tables[{ti}].estimated_item_size_bytes",
            f"{size:,.0f} bytes is over DynamoDB's 400 KB item limit; move large "
            "attributes to another table or to S3",
        )


# --- keys ----------------------------------------------------------------------------------


def check_single_entity_keys(table: Table, ti: int) -> Iterator[Problem]:
    if table.type != "single-entity":
        return
    types = _types_by_name(table)
    for field in ("pk", "sk"):
        name = getattr(table, field)
        if name is None:
            continue
        if name not in types:
            yield Problem(
                f"tables[{ti}].{field}",
                f"{name!r} is not produced by any attribute of table {table.table!r}; "
                f"add an attribute named {name!r} or change the key",
            )
        elif not types[name] <= set(KEY_TYPES):
            yield Problem(
                f"tables[{ti}].{field}",
                f"key {name!r} has type {'/'.join(sorted(types[name]))}; a key must be S, N or B",
            )


def check_entity_types(table: Table, ti: int) -> Iterator[Problem]:
    for ei, name, first in _repeats(e.entity_type for e in table.entities or []):
        yield Problem(
            f"tables[{ti}].entities[{ei}].entity_type",
            f"entity_type {name!r} is already used by entities[{first}]; each entity needs its own",
        )


def _derivation_skeleton(attr: Attribute) -> str:
    """The shape of the text an attribute makes: a string-format's literal parts around
    ``{}``, else one value."""
    t = attr.transformation
    if t is not None and t.type == "string-format" and t.format not in ("upper", "lower", "trim"):
        return _skeleton(t.format or "")
    return "{}"


def check_key_attributes(table: Table, ti: int) -> Iterator[Problem]:
    """An attribute named after a key makes that key (workshop semantics); the entity's
    template then only describes it, and should have the same shape."""
    if table.type != "multi-entity":
        return
    for ei, entity in enumerate(table.entities or []):
        source = table.sources[ei]
        for field, key in (("pk", table.pk), ("sk", table.sk)):
            attr = key_attribute(source, key)
            template = getattr(entity, f"{field}_template")
            if attr is None or not template:
                continue
            made, described = _derivation_skeleton(attr), _skeleton(template)
            if made != described:
                ai = entity.attributes.index(attr)
                yield _warn(
                    f"tables[{ti}].entities[{ei}].{field}_template",
                    f"{template!r} has the shape {described!r}, but attribute {key!r} "
                    f"(attributes[{ai}]), which makes the key, has the shape {made!r}; the "
                    "attribute wins: align the template (it documents the key) or the "
                    "attribute",
                )


def _key_shape(source: Source, key: str | None, template: str | None) -> str:
    attr = key_attribute(source, key)
    return _derivation_skeleton(attr) if attr is not None else _skeleton(template or "")


def check_key_shapes(table: Table, ti: int) -> Iterator[Problem]:
    """Two entities must not make keys of the same constant shape."""
    seen: dict[tuple[str, str], int] = {}
    for ei, entity in enumerate(table.entities or []):
        path = f"tables[{ti}].entities[{ei}]"
        source = table.sources[ei]
        shape = (
            _key_shape(source, table.pk, entity.pk_template),
            _key_shape(source, table.sk, entity.sk_template),
        )
        if "{}" not in shape[0] and "{}" not in shape[1]:
            yield Problem(
                f"{path}.sk_template",
                "both keys are constant, so every row gets the same key; "
                "put a {field} in pk_template or sk_template",
            )
        if shape in seen:
            yield Problem(
                f"{path}.sk_template",
                f"entity {entity.entity_type!r} makes keys of the same shape as "
                f"entities[{seen[shape]}], so their items can overwrite each other; "
                "give it a distinct constant prefix",
            )
        seen.setdefault(shape, ei)


def check_templates(table: Table, ti: int, schema: SourceSchema | None) -> Iterator[Problem]:
    """A ``{field}`` is an attribute of the entity or, failing that, a source column."""
    for ei, entity in enumerate(table.entities or []):
        path = f"tables[{ti}].entities[{ei}]"
        names = {a.name for a in entity.attributes}
        for field, key in (("pk_template", table.pk), ("sk_template", table.sk)):
            if key in names:
                continue  # the attribute named after the key makes it; the template is prose
            for name in template_fields(getattr(entity, field)):
                if not name:
                    yield Problem(f"{path}.{field}", "empty {} in the template; name an attribute")
                elif name in names:
                    continue
                elif schema is None:
                    yield _warn(
                        f"{path}.{field}",
                        f"{{{name}}} names no attribute of entity {entity.entity_type!r}; it "
                        f"must be a column of {entity.source_table!r} (lint --db checks)",
                    )
                elif schema.has_table(entity.source_table) and not schema.column(
                    entity.source_table, name
                ):
                    yield Problem(
                        f"{path}.{field}",
                        f"{{{name}}} is neither an attribute of entity {entity.entity_type!r} "
                        f"nor a column of {entity.source_table!r}; add an attribute named "
                        f"{name!r} or fix the template",
                    )


def check_attribute_types_agree(table: Table, ti: int) -> Iterator[Problem]:
    """One attribute name has one type across entities (the view has one column)."""
    first: dict[str, tuple[str, str]] = {}
    for path, attr, source in _attributes(table, ti):
        if attr.name not in first:
            first[attr.name] = (attr.type, source.entity_type)
            continue
        type_, entity = first[attr.name]
        if attr.type != type_:
            yield Problem(
                f"{path}.type",
                f"attribute {attr.name!r} is {type_} in entity {entity!r} but {attr.type} "
                "here; one attribute name must have one type across entities",
            )


# --- GSIs ----------------------------------------------------------------------------------


def check_gsi_count_and_names(table: Table, ti: int) -> Iterator[Problem]:
    if len(table.gsis) > MAX_GSIS:
        yield Problem(
            f"tables[{ti}].gsis",
            f"{len(table.gsis)} GSIs; DynamoDB allows at most {MAX_GSIS} per table",
        )
    for gi, name, first in _repeats(g.index_name for g in table.gsis):
        yield Problem(
            f"tables[{ti}].gsis[{gi}].index_name",
            f"index name {name!r} is already used by gsis[{first}]; rename one",
        )


def check_gsi_keys(table: Table, ti: int) -> Iterator[Problem]:
    types = _types_by_name(table)
    if table.type == "multi-entity":  # the template keys are strings
        for key in (table.pk, table.sk):
            if key:
                types.setdefault(key, {"S"})
    for gi, gsi in enumerate(table.gsis):
        for field in ("pk", "sk"):
            name = getattr(gsi, field)
            path = f"tables[{ti}].gsis[{gi}].{field}"
            if name is None:
                continue
            if name not in types:
                where = "any entity of" if table.type == "multi-entity" else "any attribute of"
                yield Problem(
                    path,
                    f"{name!r} is not produced by {where} table {table.table!r}; add an "
                    f"attribute named {name!r} or change the GSI key",
                )
            elif not types[name] <= set(KEY_TYPES):
                yield Problem(
                    path,
                    f"index key {name!r} has type {'/'.join(sorted(types[name]))}; "
                    "a key must be S, N or B",
                )


def check_gsi_projection(table: Table, ti: int) -> Iterator[Problem]:
    for gi, gsi in enumerate(table.gsis):
        path = f"tables[{ti}].gsis[{gi}].projected_attributes"
        if gsi.projection == "INCLUDE" and not gsi.projected_attributes:
            yield Problem(path, "an INCLUDE projection needs projected_attributes")
        if gsi.projection != "INCLUDE" and gsi.projected_attributes:
            yield Problem(
                path,
                f"projected_attributes only apply to an INCLUDE projection, not "
                f"{gsi.projection}; drop them or set projection to INCLUDE",
            )


# --- attribute names -------------------------------------------------------------------------


def check_attribute_names(table: Table, ti: int) -> Iterator[Problem]:
    for base, source in _sources(table, ti):
        for ai, name, first in _repeats(a.name for a in source.attributes):
            yield Problem(
                f"{base}.attributes[{ai}].name",
                f"attribute {name!r} is already defined by attributes[{first}]; rename one",
            )
        for ai, attr in enumerate(source.attributes):
            yield from _check_name(attr.name, f"{base}.attributes[{ai}].name")


def _check_name(name: str, path: str) -> Iterator[Problem]:
    if name.startswith("__"):
        yield Problem(
            path,
            f"names starting with '__' are reserved for cutover's view columns; rename {name!r}",
        )
    elif name == VERSION_ATTRIBUTE:
        yield Problem(
            path, f"{name!r} is reserved for the row version cutover stores; rename the attribute"
        )
    elif name.upper() in DYNAMODB_RESERVED_WORDS:
        yield _warn(
            path,
            f"{name!r} is a DynamoDB reserved word; expressions must refer to it through "
            "ExpressionAttributeNames",
        )


# --- one attribute: source, joins, calculations, types --------------------------------------


def check_attribute_source(attr: Attribute, source: Source, path: str) -> Iterator[Problem]:
    derived = attr.join is not None or isinstance(attr.calculation, AggregateCalculation)
    if attr.source_table != source.source_table and not derived:
        yield Problem(
            f"{path}.source_table",
            f"attribute reads from {attr.source_table!r} but its source table is "
            f"{source.source_table!r}; add a join or an aggregate calculation, or read "
            f"from {source.source_table!r}",
        )


def _join_tables(attr: Attribute) -> set[str]:
    """The names a join's select columns may be qualified with."""
    join = attr.join
    if isinstance(join, SelfJoin):
        return {join.join_alias}
    if isinstance(join, ChainJoin):
        return {s.target_table for s in join.joins}
    if join is not None:
        return {join.target_table}
    return set()


def _join_conditions(attr: Attribute) -> list[tuple[str, str]]:
    """(relative path, SQL) of the conditions that tie a join to the outer row."""
    join = attr.join
    if isinstance(join, MultiColumnJoin):
        return [("join.join_conditions", " AND ".join(join.join_conditions))]
    if isinstance(join, ChainJoin):
        return [("join.joins[0].join_condition", join.joins[0].join_condition)]
    if isinstance(join, ForeignKeyJoin | LookupTableJoin | ConditionalJoin | JsonConstructionJoin):
        return [("join.join_condition", join.join_condition)]
    if isinstance(attr.calculation, AggregateCalculation):
        return [("calculation.join_condition", attr.calculation.join_condition)]
    return []


def _names(sql: str) -> set[str] | None:
    """Table qualifiers a fragment uses; None when it does not parse (reported apart)."""
    tree = _tree(sql)
    return None if tree is None else qualifiers(tree)


def check_fragments(attr: Attribute, source: Source, path: str) -> Iterator[Problem]:
    """Each SQL fragment is one allow-listed expression naming only its attribute's tables."""
    for use in attribute_fragments(attr, source):
        try:
            tree = parse(use.sql, use.kind)
        except FragmentError as exc:
            yield Problem(f"{path}.{use.rel}", exc.message)
            continue
        for message in qualifier_problems(tree, use.sql, use.scope):
            yield Problem(f"{path}.{use.rel}", message)


def check_join_conditions(attr: Attribute, source: Source, path: str) -> Iterator[Problem]:
    src = source.source_table
    join = attr.join
    if isinstance(join, SelfJoin):
        names = _names(join.join_condition)
        if names is not None and not {src, join.join_alias} <= names:
            yield Problem(
                f"{path}.join.join_condition",
                f"a self-join condition must compare {join.join_alias!r} with {src!r} "
                f"(e.g. {join.join_alias}.id = {src}.parent_id); as written it would match "
                "every row",
            )
    for rel, cond in _join_conditions(attr):
        names = _names(cond)
        if names is not None and src not in names:
            yield Problem(
                f"{path}.{rel}",
                f"the condition never refers to the source table {src!r}, so it would match "
                f"every row; compare a column of {src!r} (e.g. {src}.<column>)",
            )
    if isinstance(join, ConditionalJoin):
        names = _names(join.condition)
        if names is not None and src not in names:
            # bare column names are valid SQL, so this cannot be proven wrong: a warning
            yield _warn(
                f"{path}.join.condition",
                f"the condition never names the source table {src!r}; unless its bare "
                f"columns are columns of {src!r}, it is the same for every row (write "
                f"{src}.<column>)",
            )


def _raw_derivations(attr: Attribute) -> dict[str, Any]:
    return {
        field: getattr(attr, field).model_dump(by_alias=True, exclude_none=True)
        for field in ("join", "calculation")
        if getattr(attr, field) is not None
    }


def check_join_targets(attr: Attribute, source: Source, path: str) -> Iterator[Problem]:
    """A correlated subquery over the source table itself, with no alias, hides the outer
    row, unless its condition equates a column with itself (it then reads the same row)."""
    src = source.source_table
    join = attr.join
    if isinstance(join, SelfJoin):
        if join.join_alias == src:
            yield Problem(
                f"{path}.join.join_alias",
                f"the alias must differ from the source table {src!r}; e.g. 'parent'",
            )
        return
    if isinstance(join, ChainJoin):
        for i, step in enumerate(join.joins):
            if step.target_table == src:
                yield Problem(
                    f"{path}.join.joins[{i}].target_table",
                    f"a chain step over the source table {src!r} itself cannot tell the outer "
                    "row from the inner ones; start the chain at another table or use a "
                    "self-join",
                )
        return
    target = target_of(attr)
    if target is None or target[0] != src or target[1]:
        return
    found = rewrite_self_reference(attr, source, _raw_derivations(attr))
    if found is None:
        return  # same-row read (t.id = t.id)
    field, new = found
    yield Problem(
        f"{path}.{field}.target_table",
        f"target_table is the source table {src!r} itself and has no alias, so inside the "
        f"subquery both sides of the condition are the inner row and it never reaches the "
        f"outer one; rewrite {field} as {json.dumps(new, ensure_ascii=False)} "
        "(`cutover contract fix` writes it)",
    )


def check_else_value(attr: Attribute, source: Source, path: str) -> Iterator[Problem]:
    """A dotted ``else_value`` is a column of the joined row (the workshop's rule); it must
    name the join's own table or alias."""
    join = attr.join
    if not isinstance(join, ConditionalJoin) or else_reads_target(join):
        return
    tree = _tree(join.else_value)
    ref = as_column(tree) if tree is not None else None
    if ref is None or ref[0] is None:
        return  # a literal text
    found = rewrite_self_reference(attr, source, _raw_derivations(attr))
    if found is not None:
        return  # the self-reference rewrite names this alias; reported once, there
    name = join.join_alias or join.target_table
    yield Problem(
        f"{path}.join.else_value",
        f"{join.else_value!r} reads like a column of {ref[0]!r}, but this join names its "
        f'table {name!r}; write {name}.{ref[1]}, add "join_alias": "{ref[0]}", or quote '
        "it as text",
    )


def _select_tables(attr: Attribute, source: Source) -> set[str]:
    """The names a join's select columns may be qualified with."""
    tables = _join_tables(attr)
    target = target_of(attr)
    if target is not None:
        tables = {target[1] or target[0]}
        if reads_same_row(target[0], target[1], _join_conditions(attr)[0][1], source):
            tables.add(source.source_table)
    return tables


def check_select_qualifiers(attr: Attribute, source: Source, path: str) -> Iterator[Problem]:
    allowed = _select_tables(attr, source)
    for use in attribute_fragments(attr, source):
        tree = _tree(use.sql, use.kind)
        if tree is None or not (_is_select(use.rel) or use.kind == "order_by"):
            continue
        stray = (qualifiers(tree) & set(use.scope.tables)) - allowed
        if stray:
            yield Problem(
                f"{path}.{use.rel}",
                f"{use.sql!r} names {', '.join(sorted(stray))}, which is not "
                f"{' or '.join(repr(t) for t in sorted(allowed))}; select from the joined "
                "table",
            )


def check_join_values(attr: Attribute, path: str) -> Iterator[Problem]:
    """Literal fallbacks (null_value, else_value) must fit a numeric attribute."""
    join = attr.join
    if join is None or attr.type != "N":
        return
    for field in ("null_value", "else_value"):
        value = getattr(join, field, None)
        if value is not None and not _is_number(value):
            yield Problem(
                f"{path}.join.{field}",
                f"{value!r} is not a number, but the attribute is N; use a number or type S",
            )


def check_calculation(attr: Attribute, path: str) -> Iterator[Problem]:
    calc = attr.calculation
    if isinstance(calc, ConcatCalculation) and len(attr.columns) < 2:
        yield Problem(
            f"{path}.source_column",
            'concat needs a list of at least 2 columns, e.g. ["first_name", "last_name"]',
        )
    if isinstance(calc, DateMathCalculation):
        count = len(attr.columns)
        if calc.operation == "diff-days" and count > 2:
            yield Problem(f"{path}.source_column", f"diff-days takes 1 or 2 columns, not {count}")
        if calc.operation != "diff-days" and count != 1:
            yield Problem(f"{path}.source_column", f"date-math {calc.operation} takes one column")


def check_column_list(attr: Attribute, path: str) -> Iterator[Problem]:
    """A list of source columns without a derivation becomes S, L or M; a transformation
    reads a single column."""
    if len(attr.columns) < 2 or attr.join is not None or attr.calculation is not None:
        return
    if attr.transformation is not None:
        yield Problem(
            f"{path}.source_column",
            f"a {attr.transformation.type} transformation reads one column; give "
            "source_column as a string",
        )
    elif attr.type not in ("S", "L", "M"):
        yield Problem(
            f"{path}.type",
            f"a list of source columns makes S (joined with '#'), L or M, not {attr.type}",
        )


def _derivation_types(attr: Attribute) -> tuple[str, tuple[str, ...]] | None:
    """(what the derivation is, the attribute types it can make)."""
    join, calc, t = attr.join, attr.calculation, attr.transformation
    if isinstance(join, JsonConstructionJoin):
        kind = join.construction.type
        return f"a json-construction {kind}", ("M", "S") if kind == "object" else ("L", "S")
    if isinstance(calc, AggregateCalculation) and calc.operation in ("COUNT", "SUM", "AVG"):
        return f"aggregate {calc.operation}", ("N",)
    if isinstance(calc, CaseCalculation):
        return "a case calculation", ("S", "N", "BOOL")
    if isinstance(calc, ConcatCalculation):
        return "concat", ("S",)
    if isinstance(calc, DateMathCalculation):
        return (
            ("date-math diff-days", ("N",))
            if calc.operation == "diff-days"
            else (f"date-math {calc.operation}", ("S",))
        )
    if t is not None:
        return f"a {t.type} transformation", TRANSFORMATION_TYPES[t.type]
    return None


def check_derivation_type(attr: Attribute, path: str) -> Iterator[Problem]:
    found = _derivation_types(attr)
    if found and attr.type not in found[1]:
        what, allowed = found
        yield Problem(
            f"{path}.type",
            f"{what} makes {' or '.join(allowed)}, not {attr.type}; set type to {allowed[0]}",
        )


def check_transformation_format(attr: Attribute, path: str) -> Iterator[Problem]:
    t = attr.transformation
    if t is None or t.type != "date-format" or not t.source_format:
        return
    src = t.source_format
    if src not in DATE_SOURCE_FORMATS and not src.startswith("string:"):
        yield Problem(
            f"{path}.transformation.source_format",
            f"{src!r} is not timestamp, datetime, date, unix or string:<format>",
        )


def _default_fits(type_: str, value: object) -> bool:
    """Whether the JSON ``value`` becomes an AttributeValue of ``type_`` (the transform
    stage converts defaults by their JSON kind)."""
    if type_ == "N":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if type_ == "BOOL":
        return isinstance(value, bool)
    if type_ == "M":
        return isinstance(value, dict)
    if type_ == "L":
        return isinstance(value, list)
    if type_ == "S":
        return isinstance(value, str)
    return False  # B, SS, NS, BS have no JSON form; NULL needs no default


def check_on_null_default(attr: Attribute, path: str) -> Iterator[Problem]:
    options = attr.cutover
    if options.on_null != "default" or _default_fits(attr.type, options.default):
        return
    if attr.type in ("S", "N", "BOOL", "M", "L"):
        fix = "give a JSON value of that type"
    else:
        fix = "a JSON default can only make S, N, BOOL, M or L"
    yield Problem(
        f"{path}.cutover.default",
        f"default {options.default!r} does not fit type {attr.type}; {fix}, or use on_null "
        "'omit' or 'null'",
    )


ATTRIBUTE_CHECKS = (
    check_attribute_source,
    check_fragments,
    check_join_conditions,
    check_join_targets,
    check_else_value,
    check_select_qualifiers,
)
ATTRIBUTE_SHAPE_CHECKS = (
    check_join_values,
    check_calculation,
    check_column_list,
    check_derivation_type,
    check_transformation_format,
    check_on_null_default,
)


def check_attributes(table: Table, ti: int) -> Iterator[Problem]:
    for path, attr, source in _attributes(table, ti):
        for check in ATTRIBUTE_CHECKS:
            yield from check(attr, source, path)
        for shape_check in ATTRIBUTE_SHAPE_CHECKS:
            yield from shape_check(attr, path)


# --- against the source database -------------------------------------------------------------


def _describe(column: Column) -> str:
    return "json" if column.data_type == "json" else column.column_type


def _unknown_table(schema: SourceSchema, table: str, path: str) -> Problem:
    close = difflib.get_close_matches(table, list(schema.tables), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return Problem(path, f"table {table!r} does not exist in the source database{hint}")


def _unknown_column(schema: SourceSchema, table: str, column: str, path: str) -> Problem:
    close = difflib.get_close_matches(column, list(schema.tables.get(table, {})), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return Problem(path, f"column {column!r} does not exist in table {table!r}{hint}")


def _plain_fit(type_: str, data_type: str) -> str | None:
    """Why a column of ``data_type`` cannot become ``type_`` as it is, or None."""
    if type_ == "N" and data_type not in NUMERIC:
        return "type N needs a numeric column (int, decimal, float, double, bit, year)"
    if type_ == "BOOL" and data_type not in BOOLEAN:
        return "type BOOL needs a TINYINT(1), BIT or BOOLEAN column"
    if type_ in ("B", "BS") and data_type not in BINARY:
        return f"type {type_} needs a binary or blob column"
    if type_ in ("M", "L") and data_type != "json":
        return (
            f"type {type_} needs a JSON column (or a text column with a json-parse transformation)"
        )
    if type_ in ("SS", "NS") and data_type != "json":
        return f"type {type_} needs a JSON array column (or a lookup-table join)"
    return None


def _transformation_fit(t: Transformation, data_type: str) -> str | None:
    if t.type == "number-format" and data_type not in NUMERIC:
        return "number-format needs a numeric column"
    if t.type == "date-format":
        src = t.source_format or "date"
        if src == "unix":
            ok, needs = data_type in NUMERIC, "an integer column of epoch seconds"
        elif src.startswith("string:"):
            ok, needs = data_type in TEXT, "a text column"
        else:
            ok, needs = data_type in TEMPORAL, "a date, datetime or timestamp column"
        return None if ok else f"date-format with source_format {src!r} needs {needs}"
    if t.type == "json-parse" and data_type != "json" and data_type not in TEXT:
        return "json-parse needs a JSON or text column"
    return None


def _column_fit(attr: Attribute, data_type: str) -> str | None:
    """Why a source column of ``data_type`` cannot feed ``attr``, or None."""
    if attr.transformation is not None:
        return _transformation_fit(attr.transformation, data_type)
    if isinstance(attr.calculation, DateMathCalculation) and data_type not in TEMPORAL:
        return "date-math needs date, datetime or timestamp columns"
    if attr.join is not None or attr.calculation is not None:
        return None  # the derivation makes the value; its select column is checked apart
    if len(attr.columns) > 1 and attr.type in ("S", "L", "M"):
        return None  # CONCAT_WS / JSON_ARRAY / JSON_OBJECT take any column
    return _plain_fit(attr.type, data_type)


def check_source_columns(
    schema: SourceSchema, attr: Attribute, source: Source, path: str
) -> Iterator[Problem]:
    if not schema.has_table(attr.source_table):
        yield _unknown_table(schema, attr.source_table, f"{path}.source_table")
        return
    for column in attr.columns:
        col = schema.column(attr.source_table, column)
        if col is None:
            yield _unknown_column(schema, attr.source_table, column, f"{path}.source_column")
        elif (why := _column_fit(attr, col.data_type)) is not None:
            yield Problem(
                f"{path}.type",
                f"{attr.type} cannot hold {attr.source_table}.{column} ({_describe(col)}): {why}",
            )


def check_string_format_fields(
    schema: SourceSchema, attr: Attribute, source: Source, path: str
) -> Iterator[Problem]:
    t = attr.transformation
    if t is None or t.type != "string-format" or not schema.has_table(source.source_table):
        return
    for name in template_fields(t.format or ""):
        if name and schema.column(source.source_table, name) is None:
            yield _unknown_column(
                schema, source.source_table, name, f"{path}.transformation.format"
            )


def check_join_tables_exist(
    schema: SourceSchema, attr: Attribute, source: Source, path: str
) -> Iterator[Problem]:
    join = attr.join
    tables: list[tuple[str, str]] = []
    if isinstance(join, ChainJoin):
        tables = [
            (s.target_table, f"{path}.join.joins[{i}].target_table")
            for i, s in enumerate(join.joins)
        ]
    elif join is not None and not isinstance(join, SelfJoin):
        tables = [(join.target_table, f"{path}.join.target_table")]
    elif isinstance(attr.calculation, AggregateCalculation):
        tables = [(attr.calculation.target_table, f"{path}.calculation.target_table")]
    for table, tpath in tables:
        if not schema.has_table(table):
            yield _unknown_table(schema, table, tpath)


def _selected_columns(attr: Attribute, source: Source) -> list[tuple[str, str, str, bool]]:
    """(relative path, SQL, default table, whether it is the attribute's value) of the
    columns a join or aggregate selects."""
    join, calc = attr.join, attr.calculation
    if isinstance(join, SelfJoin):
        return [("join.select_column", join.select_column, source.source_table, True)]
    if isinstance(join, ChainJoin):
        last = len(join.joins) - 1
        scalar = join.chain_separator is None
        return [
            (
                f"join.joins[{i}].select_column",
                s.select_column,
                s.target_table,
                scalar and i == last,
            )
            for i, s in enumerate(join.joins)
        ]
    if isinstance(join, JsonConstructionJoin):
        return [
            (key_path("join.construction.select_columns", k), v, join.target_table, False)
            for k, v in join.construction.select_columns.items()
        ]
    if isinstance(join, ConditionalJoin):
        return [("join.select_column", join.select_column, join.target_table, False)]
    if join is not None:
        collecting = isinstance(join, LookupTableJoin) and attr.type in _COLLECTING
        return [("join.select_column", join.select_column, join.target_table, not collecting)]
    if isinstance(calc, AggregateCalculation):
        value = calc.operation in ("MIN", "MAX")
        return [("calculation.select_column", calc.select_column, calc.target_table, value)]
    return []


def _aliases(attr: Attribute, source: Source) -> dict[str, str]:
    """Qualifier -> real table, for the names a join's select columns may use."""
    join = attr.join
    if isinstance(join, SelfJoin):
        return {join.join_alias: source.source_table}
    target = target_of(attr)
    if target is not None:
        return {target[1] or target[0]: target[0], source.source_table: source.source_table}
    return {name: name for name in _join_tables(attr)}


def _is_select(rel: str) -> bool:
    return rel.endswith("select_column") or ".select_columns" in rel


def check_fragment_columns(
    schema: SourceSchema, attr: Attribute, source: Source, path: str
) -> Iterator[Problem]:
    """Columns of conditions and expressions must exist in the tables they name (a select
    that is one column is judged, with its type, by check_selected_columns)."""
    for use in attribute_fragments(attr, source):
        tree = _tree(use.sql, use.kind)
        if tree is None or (_is_select(use.rel) and as_column(tree) is not None):
            continue
        for message in column_problems(tree, use.sql, use.scope, schema):
            yield Problem(f"{path}.{use.rel}", message)


def check_selected_columns(
    schema: SourceSchema, attr: Attribute, source: Source, path: str
) -> Iterator[Problem]:
    aliases = _aliases(attr, source)
    for rel, sql, default_table, is_value in _selected_columns(attr, source):
        tree = _tree(sql)
        ref = as_column(tree) if tree is not None else None
        if ref is None:
            continue  # an expression: MySQL judges it when the view is created
        qualifier, column = ref
        table = aliases.get(qualifier, qualifier) if qualifier else default_table
        if table is None or not schema.has_table(table):
            continue  # reported as an unknown table or a stray qualifier
        col = schema.column(table, column)
        if col is None:
            if qualifier is None and schema.column(source.source_table, column):
                continue  # a bare name MySQL resolves to the outer row
            yield _unknown_column(schema, table, column, f"{path}.{rel}")
            continue
        why = _selected_fit(attr, col.data_type, is_value)
        if why is not None:
            yield Problem(
                f"{path}.type",
                f"{attr.type} cannot hold {table}.{column} ({_describe(col)}): {why}",
            )


def _selected_fit(attr: Attribute, data_type: str, is_value: bool) -> str | None:
    calc = attr.calculation
    if isinstance(calc, AggregateCalculation) and calc.operation in ("SUM", "AVG"):
        return None if data_type in NUMERIC else f"{calc.operation} needs a numeric column"
    if isinstance(attr.join, LookupTableJoin) and attr.type == "NS" and data_type not in NUMERIC:
        return "a lookup-table NS collects numbers, so it needs a numeric select_column"
    if is_value and attr.type in ("N", "BOOL", "B"):
        return _plain_fit(attr.type, data_type)
    return None


def check_source_tables(schema: SourceSchema, table: Table, ti: int) -> Iterator[Problem]:
    for base, source in _sources(table, ti):
        if not schema.has_table(source.source_table):
            yield _unknown_table(schema, source.source_table, f"{base}.source_table")


SCHEMA_ATTRIBUTE_CHECKS = (
    check_source_columns,
    check_string_format_fields,
    check_join_tables_exist,
    check_selected_columns,
    check_fragment_columns,
)


def check_attributes_against_schema(
    schema: SourceSchema, table: Table, ti: int
) -> Iterator[Problem]:
    for path, attr, source in _attributes(table, ti):
        if not schema.has_table(source.source_table):
            continue
        for check in SCHEMA_ATTRIBUTE_CHECKS:
            yield from check(schema, attr, source, path)


def check_source_options(schema: SourceSchema, table: Table, ti: int) -> Iterator[Problem]:
    for base, source in _sources(table, ti):
        if schema.has_table(source.source_table):
            yield from _check_partition_and_version(schema, source, base)
            yield from _check_source_key(schema, source, base)


def _check_partition_and_version(
    schema: SourceSchema, source: Source, base: str
) -> Iterator[Problem]:
    src, opts = source.source_table, source.options
    if opts.partition_column is not None and schema.column(src, opts.partition_column) is None:
        yield _unknown_column(
            schema, src, opts.partition_column, f"{base}.cutover.partition_column"
        )
    if opts.version_column is None:
        return
    col = schema.column(src, opts.version_column)
    if col is None:
        yield _unknown_column(schema, src, opts.version_column, f"{base}.cutover.version_column")
    elif col.data_type not in TEMPORAL | INTEGER:
        yield Problem(
            f"{base}.cutover.version_column",
            f"{opts.version_column!r} is {_describe(col)}; a version column must be a "
            "date, datetime, timestamp or integer that grows with every change",
        )


def _check_source_key(schema: SourceSchema, source: Source, base: str) -> Iterator[Problem]:
    src, path = source.source_table, f"{base}.cutover.source_key"
    actual = schema.primary_key(src)
    missing = [c for c in source.source_key if schema.column(src, c) is None]
    if missing and source.options.source_key is None:
        yield Problem(
            path,
            f"source_key defaults to ['id'], but {src!r} has no column 'id'; set "
            f'"source_key": {actual or ["<unique columns>"]}',
        )
        return
    for column in missing:
        yield _unknown_column(schema, src, column, path)
    if not actual:
        yield _warn(
            path,
            f"{src!r} has no primary key; make sure source_key {source.source_key} is unique",
        )
    elif not missing and actual != source.source_key:
        yield _warn(
            path,
            f"the primary key of {src!r} is {actual}, not {source.source_key}; set "
            f'"source_key": {actual}',
        )


# --- entry points ----------------------------------------------------------------------------

TABLE_CHECKS = (
    check_item_size,
    check_single_entity_keys,
    check_entity_types,
    check_key_attributes,
    check_key_shapes,
    check_attribute_types_agree,
    check_gsi_count_and_names,
    check_gsi_keys,
    check_gsi_projection,
    check_attribute_names,
    check_attributes,
)


def check_constraints_dynamodb_does_not_enforce(
    schema: SourceSchema, table: Table, ti: int
) -> Iterator[Problem]:
    """Warnings: from phase 4 DynamoDB takes writes first, and it enforces neither a unique
    key nor a foreign key, so a write MySQL would refuse is acknowledged and MySQL refuses
    it only when it follows (the change is quarantined, the stores differ)."""
    seen: set[str] = set()
    for base, source in _sources(table, ti):
        src = source.source_table
        if src in seen:
            continue
        seen.add(src)
        for key in schema.unique_keys.get(src, []):
            yield _warn(
                f"{base}.source_table",
                f"{src}({', '.join(key.columns)}) is unique in MySQL (key {key.name!r}); "
                "DynamoDB does not enforce it: from phase 4 two items can take one value "
                "and MySQL refuses the second when it follows. Check it in the application, "
                "or write a uniqueness item with a condition in the same transaction",
            )
        for fk in schema.foreign_keys.get(src, []):
            yield _warn(
                f"{base}.source_table",
                f"{src}({', '.join(fk.columns)}) references {fk.references} (foreign key "
                f"{fk.name!r}); DynamoDB does not enforce it: from phase 4 an item can name "
                f"a {fk.references} row that does not exist, and MySQL refuses it when it "
                "follows",
            )


SCHEMA_TABLE_CHECKS = (
    check_source_tables,
    check_attributes_against_schema,
    check_source_options,
    check_constraints_dynamodb_does_not_enforce,
)


def lint(contract: Contract, schema: SourceSchema | None = None) -> list[Problem]:
    """Every problem of a structurally valid contract; with ``schema``, also those against
    the source database."""
    problems = list(check_table_names(contract))
    for ti, table in enumerate(contract.tables):
        for check in TABLE_CHECKS:
            problems.extend(check(table, ti))
        problems.extend(check_templates(table, ti, schema))
        if schema is not None:
            for schema_check in SCHEMA_TABLE_CHECKS:
                problems.extend(schema_check(schema, table, ti))
    return problems


def lint_file(
    path: str | Path, schema: SourceSchema | None = None
) -> tuple[Contract | None, list[Problem]]:
    """Load and lint ``path``; structural problems come back as errors and stop the lint."""
    try:
        contract = load_contract(path)
    except ContractError as exc:
        return None, [Problem(p, m) for p, m in exc.problems]
    return contract, lint(contract, schema)
