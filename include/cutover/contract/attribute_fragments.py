"""Every SQL fragment an attribute carries, with its JSON path and the tables it may name.

Lint judges these (parse, allow-list, scope, columns); the view renderer turns the same
fragments into SQL, so what lint accepts is exactly what runs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from cutover.contract.fragments import Kind, Scope
from cutover.contract.model import (
    AggregateCalculation,
    Attribute,
    CaseCalculation,
    ChainJoin,
    ConditionalJoin,
    JsonConstructionJoin,
    MultiColumnJoin,
    SelfJoin,
    Source,
)


@dataclass(frozen=True)
class FragmentUse:
    rel: str  # JSON path relative to the attribute, e.g. "join.join_condition"
    sql: str
    kind: Kind
    scope: Scope


def key_path(base: str, key: str) -> str:
    return f"{base}.{key}" if re.fullmatch(r"[A-Za-z_]\w*", key) else f'{base}["{key}"]'


def target_of(attr: Attribute) -> tuple[str, str | None] | None:
    """(target table, alias) of a join or aggregate with one target; a self-join's target is
    its source table under its alias (set by the caller)."""
    join = attr.join
    if join is not None and not isinstance(join, SelfJoin | ChainJoin):
        return join.target_table, join.join_alias
    if isinstance(attr.calculation, AggregateCalculation):
        return attr.calculation.target_table, attr.calculation.join_alias
    return None


def attribute_fragments(attr: Attribute, source: Source) -> Iterator[FragmentUse]:
    src = source.source_table
    outer = Scope({src: src}, (src,))
    join, calc = attr.join, attr.calculation
    if isinstance(join, SelfJoin):
        inner = Scope({src: src, join.join_alias: src}, (src,))
        yield FragmentUse("join.join_condition", join.join_condition, "expression", inner)
        yield FragmentUse("join.select_column", join.select_column, "expression", inner)
        return
    if isinstance(join, ChainJoin):
        tables = {s.target_table: s.target_table for s in join.joins}
        inner = Scope({src: src, **tables}, (*tables, src))
        for i, step in enumerate(join.joins):
            yield FragmentUse(f"join.joins[{i}].join_condition", step.join_condition,
                              "expression", inner)  # fmt: skip
            yield FragmentUse(f"join.joins[{i}].select_column", step.select_column,
                              "expression", inner)  # fmt: skip
        return
    target = target_of(attr)
    if target is not None:
        table, alias = target
        name = alias or table
        inner = Scope({src: src, name: table}, (table, src))
        if isinstance(join, MultiColumnJoin):
            for i, cond in enumerate(join.join_conditions):
                yield FragmentUse(f"join.join_conditions[{i}]", cond, "expression", inner)
        elif join is not None:
            yield FragmentUse("join.join_condition", join.join_condition, "expression", inner)
        if isinstance(join, JsonConstructionJoin):
            c = join.construction
            for k, v in c.select_columns.items():
                yield FragmentUse(key_path("join.construction.select_columns", k), v,
                                  "expression", inner)  # fmt: skip
            if c.order_by:
                yield FragmentUse("join.construction.order_by", c.order_by, "order_by", inner)
        elif join is not None:
            yield FragmentUse("join.select_column", join.select_column, "expression", inner)
        if isinstance(join, ConditionalJoin):
            yield FragmentUse("join.condition", join.condition, "expression", outer)
        if isinstance(calc, AggregateCalculation):
            yield FragmentUse("calculation.join_condition", calc.join_condition, "expression",
                              inner)  # fmt: skip
            yield FragmentUse("calculation.select_column", calc.select_column, "expression",
                              inner)  # fmt: skip
    if isinstance(calc, CaseCalculation):
        for i, case in enumerate(calc.cases):
            yield FragmentUse(f"calculation.cases[{i}].when", case.when, "expression", outer)
            yield FragmentUse(f"calculation.cases[{i}].then", case.then, "expression", outer)
        if calc.else_ is not None:
            yield FragmentUse("calculation.else", calc.else_, "expression", outer)
