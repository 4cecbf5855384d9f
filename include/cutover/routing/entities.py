"""What the routing layer knows of a contract: its entities (one per source of a DynamoDB
table), how an entity's row maps to its item, and which items a change to a source table
touches (the entity's own item, and items that join or aggregate the changed table)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cutover.contract.attribute_fragments import attribute_fragments
from cutover.contract.fragments import as_column, equalities, parse
from cutover.contract.model import Attribute, Contract, Source, Table, template_fields
from cutover.contract.views import key_attribute
from cutover.errors import TerminalError

log = logging.getLogger("cutover.routing")


class RoutingError(TerminalError):
    """A request the routing layer cannot carry out as asked (unknown entity, missing key
    column); nothing was written."""


def is_plain(attr: Attribute) -> bool:
    """An attribute that is one column of its own row, unchanged."""
    return (
        isinstance(attr.source_column, str)
        and attr.join is None
        and attr.calculation is None
        and attr.transformation is None
    )


@dataclass(frozen=True)
class Dependent:
    """Items of ``entity`` whose source rows satisfy ``its_column = changed.column`` for one
    of ``pairs`` read a changed row of another table (a join or an aggregate)."""

    entity: Entity
    pairs: tuple[tuple[str, str], ...]  # (column of the entity's table, column of the changed)


@dataclass(frozen=True)
class Entity:
    name: str
    table: Table
    source: Source

    @property
    def source_table(self) -> str:
        return self.source.source_table

    @property
    def source_key(self) -> list[str]:
        return self.source.source_key

    @property
    def version_column(self) -> str | None:
        return self.source.options.version_column

    @property
    def plain(self) -> dict[str, str]:
        """attribute name -> source column, for plain attributes."""
        return {a.name: str(a.source_column) for a in self.source.attributes if is_plain(a)}

    def key_fields(self) -> dict[str, tuple[str | None, str]]:
        """For the table's PK and SK: (template or None, attribute) pairs are flattened to
        key -> (template, text) where a template's fields are attributes."""
        out: dict[str, tuple[str | None, str]] = {}
        for key, template in ((self.table.pk, self.source.pk_template),
                              (self.table.sk, self.source.sk_template)):  # fmt: skip
            if not key:
                continue
            attr = key_attribute(self.source, key)
            if attr is not None or self.table.type == "single-entity":
                out[key] = (None, key)
            else:
                out[key] = (template or "", key)
        return out

    def key_columns(self) -> dict[str, str]:
        """Source columns that determine the item's key, by attribute name; raises when the
        key is derived in a way the row alone cannot give (a join or a transformation)."""
        plain = self.plain
        needed: dict[str, str] = {}
        for key, (template, _) in self.key_fields().items():
            names = template_fields(template) if template is not None else [key]
            for name in names:
                if name not in plain:
                    raise RoutingError(
                        f"entity {self.name}: key {key!r} uses attribute {name!r}, which is not "
                        "a plain column of the row; the routing layer addresses items by "
                        "plain key columns"
                    )
                needed[name] = plain[name]
        return needed

    def item_key(self, values: Mapping[str, Any]) -> dict[str, str]:
        """The item's key text (PK, SK) from the row's key columns, as the view makes it."""
        columns = self.key_columns()
        text = {name: _text(values.get(col)) for name, col in columns.items()}
        for _name, col in columns.items():
            if values.get(col) is None:
                raise RoutingError(
                    f"entity {self.name}: the row has no value for column "
                    f"{self.source_table}.{col}, which the item's key needs"
                )
        out: dict[str, str] = {}
        for key, (template, attr) in self.key_fields().items():
            out[key] = text[attr] if template is None else template.format(**text)
        return out


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return "" if value is None else str(value)


class Entities:
    """The entities of a contract, by name (the entity type; a single-entity table's entity
    is the table name in capitals, as the view labels it)."""

    def __init__(self, contract: Contract) -> None:
        self.contract = contract
        self.by_name: dict[str, Entity] = {}
        for table in contract.tables:
            for source in table.sources:
                self.by_name[source.entity_type] = Entity(source.entity_type, table, source)
        self._dependents: dict[str, list[Dependent]] = {}
        self._tables: set[str] | None = None

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.by_name.values())

    def get(self, name: str) -> Entity:
        entity = self.by_name.get(name) or self.by_name.get(name.upper())
        if entity is None:
            known = ", ".join(sorted(self.by_name))
            raise RoutingError(f"contract {self.contract.name!r} has no entity {name!r}; "
                               f"its entities are {known}")  # fmt: skip
        return entity

    def of_table(self, source_table: str) -> list[Entity]:
        return [e for e in self if e.source_table == source_table]

    def table(self, name: str) -> Table:
        for table in self.contract.tables:
            if table.table == name:
                return table
        known = ", ".join(t.table for t in self.contract.tables)
        raise RoutingError(f"contract {self.contract.name!r} has no table {name!r}; its tables "
                           f"are {known}")  # fmt: skip

    def source_tables(self) -> set[str]:
        """Every MySQL table the contract reads: the layer accepts writes to each."""
        if self._tables is None:
            self._tables = self._find_source_tables()
        return self._tables

    def _find_source_tables(self) -> set[str]:
        out = {e.source_table for e in self}
        for entity in self:
            for attr in entity.source.attributes:
                for use in attribute_fragments(attr, entity.source):
                    out.update(use.scope.tables.values())
        return out

    def dependents(self, changed: str) -> list[Dependent]:
        """Items of other rows that read rows of ``changed``, found from the equalities of
        the join and aggregate conditions (``orders.user_id = users.id``: a change to an
        order touches the user whose id is the order's user_id). A table reached only through
        a chain's later step or a subquery has no such equality and is not followed; the
        nightly reconcile repairs what that leaves behind."""
        if changed not in self._dependents:
            self._dependents[changed] = _find_dependents(self, changed)
        return self._dependents[changed]


def _find_dependents(entities: Entities, changed: str) -> list[Dependent]:
    out: list[Dependent] = []
    for entity in entities:
        src = entity.source_table
        pairs: set[tuple[str, str]] = set()
        for attr in entity.source.attributes:
            for use in attribute_fragments(attr, entity.source):
                if not use.rel.endswith(("join_condition", "]")) or "select" in use.rel:
                    continue
                try:
                    tree = parse(use.sql)
                except Exception:  # lint refused it already; nothing to follow
                    continue
                for left, right in equalities(tree):
                    for a, b in ((left, right), (right, left)):
                        mine, theirs = as_column(a), as_column(b)
                        if mine is None or theirs is None or mine[0] != src:
                            continue
                        qualifier = theirs[0]
                        if qualifier is None or qualifier == src:
                            continue
                        if use.scope.tables.get(qualifier) == changed:
                            pairs.add((mine[1], theirs[1]))
        if pairs:
            out.append(Dependent(entity, tuple(sorted(pairs))))
    return out
