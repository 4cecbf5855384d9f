"""Rewrites for contract faults that have one clear repair, for lint to show and for
``cutover contract fix`` to write.

The one known today: a join or aggregate whose target is its own source table without an
alias (``categories.id = categories.parent_id`` inside ``categories``). Inside the subquery
both names mean the inner row, so the condition never reaches the outer one. The workshop's
patterns always put the target on the left of ``=`` and the source row on the right
(``categories.id = products.category_id``), so the left side is given an alias: the joined
row is the parent when its key is compared (``parent.id = categories.parent_id``), a child
when its foreign key is (``child.parent_id = categories.id``). A foreign-key join becomes the
workshop's ``self-join``; other kinds get cutover's ``join_alias``.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from typing import Any

from sqlglot import exp

from cutover.contract.fragments import (
    DIALECT,
    FragmentError,
    as_column,
    equalities,
    is_constant,
    parse,
)
from cutover.contract.model import (
    AggregateCalculation,
    Attribute,
    ChainJoin,
    ConditionalJoin,
    Contract,
    ForeignKeyJoin,
    MultiColumnJoin,
    SelfJoin,
    Source,
)
from cutover.contract.views import reads_same_row

_PATH_PART = re.compile(r"\.?([A-Za-z_]\w*)|\[(\d+)\]")


@dataclass(frozen=True)
class Fix:
    path: str  # JSON path of the field replaced, e.g. tables[2].attributes[0].join
    before: dict[str, Any]
    after: dict[str, Any]
    why: str

    def describe(self) -> str:
        return _compact(self.after)


def _compact(value: dict[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False)


def self_reference(attr: Attribute, source: Source) -> tuple[str, str] | None:
    """(field, condition) when ``attr`` joins or aggregates its own source table with no
    alias and not as a same-row read."""
    src = source.source_table
    join, calc = attr.join, attr.calculation
    if join is not None and not isinstance(join, SelfJoin | ChainJoin):
        conds = join.join_conditions if isinstance(join, MultiColumnJoin) else [join.join_condition]
        alone = join.target_table == src and not join.join_alias
        if alone and not all(reads_same_row(src, None, c, source) for c in conds):
            return "join", " AND ".join(conds)
    if isinstance(calc, AggregateCalculation) and calc.target_table == src and not calc.join_alias:
        return "calculation", calc.join_condition
    return None


def choose_alias(attr: Attribute, source: Source, condition: str) -> str:
    """The name of the joined row: what ``else_value`` already calls it, else parent/child by
    which side of the first equality is a key of the source table."""
    join = attr.join
    taken = {source.source_table}
    if isinstance(join, ConditionalJoin):
        try:
            ref = as_column(parse(join.else_value))
        except FragmentError:
            ref = None
        if ref is not None and ref[0] and ref[0] not in taken:
            return ref[0]
    try:
        pairs = equalities(parse(condition))
    except FragmentError:
        pairs = []
    for left, right in pairs:
        inner, outer = as_column(left), as_column(right)
        if inner is None or outer is None:
            continue
        if inner[1] in source.source_key:
            stem = re.sub(r"_id$", "", outer[1])
            return stem if stem != outer[1] and stem not in taken else "parent"
        return "child"
    return "joined"


def _rename(sql: str, columns: Any, table: str) -> str:
    """``sql`` with the columns ``columns(tree)`` yields qualified by ``table``."""
    tree = parse(sql).copy()
    for col in list(columns(tree)):
        col.set("table", exp.to_identifier(table))
    return tree.sql(dialect=DIALECT)


def _realias(sql: str, src: str, alias: str, *, left_only: bool) -> str:
    """``sql`` with the inner row's references renamed to ``alias``: in a condition only the
    left side of each ``=`` (the target's side), elsewhere every column of ``src`` and every
    bare column."""

    def inner(tree: exp.Expression) -> Any:
        cols = (
            (eq.this for eq in tree.find_all(exp.EQ) if isinstance(eq.this, exp.Column))
            if left_only
            else tree.find_all(exp.Column)
        )
        return (c for c in cols if c.table in ("", src))

    return _rename(sql, inner, alias)


def _qualify_bare(sql: str, table: str) -> str:
    return _rename(sql, lambda tree: (c for c in tree.find_all(exp.Column) if not c.table), table)


def rewrite_self_reference(
    attr: Attribute, source: Source, raw: dict[str, Any]
) -> tuple[str, dict[str, Any]] | None:
    """(field, its new value) repairing a self-reference of ``attr`` (``raw`` is the
    attribute as written in the file), or None when there is nothing to repair."""
    found = self_reference(attr, source)
    if found is None:
        return None
    field, condition = found
    src = source.source_table
    alias = choose_alias(attr, source, condition)
    new = copy.deepcopy(raw[field])
    try:
        if "join_conditions" in new:
            new["join_conditions"] = [
                _realias(c, src, alias, left_only=True) for c in new["join_conditions"]
            ]
        else:
            new["join_condition"] = _realias(new["join_condition"], src, alias, left_only=True)
        if "condition" in new:  # evaluated on the outer row: say so
            new["condition"] = _qualify_bare(new["condition"], src)
        if "select_column" in new and not is_constant(parse(new["select_column"])):
            new["select_column"] = _realias(new["select_column"], src, alias, left_only=False)
    except FragmentError:
        return None  # a fragment that does not parse is reported by lint; no guessing
    if isinstance(attr.join, ForeignKeyJoin) and field == "join":
        new = {"type": "self-join", "join_alias": alias,
               **{k: new[k] for k in ("join_condition", "select_column", "null_value")
                  if k in new}}  # fmt: skip
    else:
        new = {"type": new["type"], **({"condition": new["condition"]} if "condition" in new
                                       else {}),
               "target_table": new["target_table"], "join_alias": alias,
               **{k: v for k, v in new.items()
                  if k not in ("type", "condition", "target_table", "join_alias")}}  # fmt: skip
    return field, new


def _attributes(contract: Contract) -> list[tuple[str, Attribute, Source]]:
    out = []
    for ti, table in enumerate(contract.tables):
        for source in table.sources:
            for ai, attr in enumerate(source.attributes):
                out.append((f"tables[{ti}]{source.path_prefix}.attributes[{ai}]", attr, source))
    return out


def at_path(data: Any, path: str) -> Any:
    """The value at a JSON path such as ``tables[2].entities[0].attributes[3]``."""
    node = data
    for name, index in _PATH_PART.findall(path):
        node = node[name] if name else node[int(index)]
    return node


def find_fixes(contract: Contract, data: dict[str, Any]) -> list[Fix]:
    """Every repair cutover knows for ``contract`` (``data`` is its JSON as loaded)."""
    fixes = []
    for path, attr, source in _attributes(contract):
        raw = at_path(data, path)
        found = rewrite_self_reference(attr, source, raw)
        if found is None:
            continue
        field, new = found
        fixes.append(
            Fix(
                f"{path}.{field}",
                raw[field],
                new,
                f"{field} reads {source.source_table!r} from inside {source.source_table!r} "
                "without an alias",
            )
        )
    return fixes


def apply_fixes(data: dict[str, Any], fixes: list[Fix]) -> dict[str, Any]:
    out = copy.deepcopy(data)
    for fix in fixes:
        parent, _, field = fix.path.rpartition(".")
        at_path(out, parent)[field] = fix.after
    return out
