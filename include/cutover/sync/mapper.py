"""Which items a changed row feeds: the reverse dependency index of a contract.

Built once from the parsed contract. For each table the binlog may change it knows:

* the entities whose own rows live in it (the row's item is derived again; the item the row
  had before is removed when its key moved or the row went);
* the entities that read it through a join, chain, self-join, aggregate or json-construction
  whose condition equates a column of their own row with a column of the changed table
  (``orders.user_id = users.id``): the rows whose column takes the changed row's value,
  before or after the change, are derived again; when such an entity's item key itself
  reads the changed table (a key made from ``users.email``), the keys its items had before
  the change are computed from the row's before image and removed when they moved;
* the entities that read it in a way no equality follows (a chain's later step, a condition
  without an equality on the outer row, a table read by every row): the documented fallback,
  every item of the entity derived again and its orphans removed (``Everything``).

A ``Ref`` is what one change asks of the applier, without SQL: the applier resolves the refs
of a batch of transactions against MySQL as it stands after them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlglot import exp

from cutover.contract.attribute_fragments import attribute_fragments, target_of
from cutover.contract.fragments import FragmentError, as_column, equalities, parse
from cutover.contract.model import Attribute, ChainJoin, Contract, SelfJoin, template_fields
from cutover.contract.views import key_attribute, reads_same_row
from cutover.routing.entities import Entities, Entity, RoutingError


def _frozen(values: Mapping[str, Any]) -> str:
    return json.dumps(dict(sorted(values.items())), default=_json_default, sort_keys=True)


@dataclass(frozen=True)
class Derive:
    """Derive the item of ``entity``'s row with this source key again."""

    entity: str
    source_key: str  # JSON of {column: value}


@dataclass(frozen=True)
class Remove:
    """Remove the item of ``entity`` at ``key`` unless the batch derives an item there."""

    entity: str
    key: str  # JSON of {key attribute: text}


@dataclass(frozen=True)
class RemoveBefore:
    """The item ``entity``'s row had before the change, whose key the row alone cannot give
    (a key made by a join or a transformation): derive it from the before image."""

    entity: str
    before: str  # JSON of the row before the change


@dataclass(frozen=True)
class DependentsOf:
    """Derive again the items of ``entity``'s rows whose ``column`` equals ``value``."""

    entity: str
    column: str
    value: str  # JSON of the value


@dataclass(frozen=True)
class KeysBefore:
    """Keys the items of ``entity``'s rows (``column`` = ``value``) had while ``table``'s
    row was ``before``: removed where the derivation now puts them elsewhere."""

    entity: str
    column: str
    value: str
    table: str
    before: str


@dataclass(frozen=True)
class Everything:
    """The fallback: derive every item of ``entity`` again and remove its orphans."""

    entity: str
    reason: str = field(compare=False, default="")


Ref = Derive | Remove | RemoveBefore | DependentsOf | KeysBefore | Everything


@dataclass(frozen=True)
class Cascade:
    """A foreign key of ``child`` onto ``parent`` whose ON DELETE / ON UPDATE rule changes the
    child rows (CASCADE or SET NULL)."""

    name: str
    child: str
    parent: str
    parent_columns: tuple[str, ...]
    on_delete: bool
    on_update: bool

    def fires(self, before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> bool:
        if before is None:
            return False
        if after is None:
            return self.on_delete
        return self.on_update and any(before.get(c) != after.get(c) for c in self.parent_columns)


def cascades_of(conn: Any) -> list[Cascade]:
    """The foreign keys of the connection's database whose rules change child rows."""
    acting = ("CASCADE", "SET NULL", "SET DEFAULT")
    with conn.cursor() as cur:
        cur.execute(
            "SELECT rc.CONSTRAINT_NAME, rc.TABLE_NAME, rc.REFERENCED_TABLE_NAME, "
            "rc.DELETE_RULE, rc.UPDATE_RULE, k.REFERENCED_COLUMN_NAME "
            "FROM information_schema.REFERENTIAL_CONSTRAINTS rc "
            "JOIN information_schema.KEY_COLUMN_USAGE k ON k.CONSTRAINT_SCHEMA = "
            "rc.CONSTRAINT_SCHEMA AND k.CONSTRAINT_NAME = rc.CONSTRAINT_NAME "
            "AND k.TABLE_NAME = rc.TABLE_NAME "
            "WHERE rc.CONSTRAINT_SCHEMA = DATABASE() ORDER BY k.ORDINAL_POSITION"
        )
        rows = cur.fetchall()
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for name, child, parent, on_delete, on_update, column in rows:
        entry = found.setdefault((str(name), str(child)), {
            "parent": str(parent), "columns": [], "delete": str(on_delete) in acting,
            "update": str(on_update) in acting})  # fmt: skip
        entry["columns"].append(str(column))
    return [Cascade(name, child, e["parent"], tuple(e["columns"]), e["delete"], e["update"])
            for (name, child), e in found.items() if e["delete"] or e["update"]]  # fmt: skip


@dataclass(frozen=True)
class Reader:
    """``entity`` reads ``table``: by ``pairs`` (its column, the table's column), or, when
    ``pairs`` is empty, in a way no key follows (the fallback)."""

    entity: Entity
    table: str
    pairs: tuple[tuple[str, str], ...]
    key_reads: bool  # the item key itself is made from the table's rows
    why: str = ""
    # the table's columns the entity's SQL names (lower case); None: it may read any
    columns: frozenset[str] | None = None

    def reads_change(self, before: Mapping[str, Any] | None,
                     after: Mapping[str, Any] | None) -> bool:  # fmt: skip
        """Whether the change can move what the entity reads: an insert or a delete always;
        an update only when it changes a column the entity's SQL names."""
        if before is None or after is None or self.columns is None:
            return True
        lower_before = {k.lower(): v for k, v in before.items()}
        lower_after = {k.lower(): v for k, v in after.items()}
        return any(lower_before.get(c) != lower_after.get(c) for c in self.columns)


def _condition_fragments(attr: Attribute, entity: Entity) -> list[tuple[str, Any]]:
    """(fragment SQL, scope) of the attribute's join and aggregate conditions."""
    out = []
    for use in attribute_fragments(attr, entity.source):
        rel = use.rel
        if "select" in rel or "order_by" in rel or rel.endswith(".condition"):
            continue
        if rel.endswith("join_condition") or rel.startswith("join.join_conditions["):
            out.append((use.sql, use.scope))
    return out


def _tables_read(attr: Attribute, entity: Entity) -> dict[str, str]:
    """qualifier -> table of the other rows the attribute reads (none for a same-row read)."""
    src = entity.source_table
    join = attr.join
    if isinstance(join, SelfJoin):
        return {join.join_alias: src}
    if isinstance(join, ChainJoin):
        return {s.target_table: s.target_table for s in join.joins}
    target = target_of(attr)
    if target is None:
        return {}
    table, alias = target
    conditions = getattr(join, "join_conditions", None) or [
        getattr(join, "join_condition", None) or getattr(attr.calculation, "join_condition", "")
    ]
    if join is not None and all(reads_same_row(table, alias, c, entity.source) for c in conditions):
        return {}
    return {alias or table: table}


def _parsed_fragments(attr: Attribute, entity: Entity) -> list[exp.Expression | None]:
    """The parsed tree of each of the attribute's fragments (None: it does not parse)."""
    out: list[exp.Expression | None] = []
    for use in attribute_fragments(attr, entity.source):
        kind = "order_by" if "order_by" in use.rel else "expression"
        try:
            out.append(parse(use.sql, kind))
        except FragmentError:
            out.append(None)
    return out


def _subquery_tables(attr: Attribute, entity: Entity) -> set[str]:
    """Tables named inside the attribute's fragments (a subquery in a select column, a case
    or a condition): rows no equality with the outer row selects."""
    out: set[str] = set()
    for tree in _parsed_fragments(attr, entity):
        if tree is not None:
            out.update(t.name for t in tree.find_all(exp.Table) if t.name)
    return out


def _columns_read(attr: Attribute, entity: Entity, table: str,
                  qualifier: str) -> frozenset[str] | None:  # fmt: skip
    """The columns of ``table`` the attribute's fragments name, qualified by ``qualifier``,
    the table's name or an alias a subquery gives it, or unqualified (they may be the
    table's); None when a fragment reads every column (``*``) or cannot be parsed."""
    names: set[str] = set()
    for tree in _parsed_fragments(attr, entity):
        if tree is None or any(True for _ in tree.find_all(exp.Star)):
            return None
        qualifiers = {qualifier.lower(), table.lower()}
        qualifiers.update(t.alias_or_name.lower() for t in tree.find_all(exp.Table)
                          if t.name.lower() == table.lower())  # fmt: skip
        for column in tree.find_all(exp.Column):
            if not column.table or column.table.lower() in qualifiers:
                names.add(column.name.lower())
    return frozenset(names)


def _pairs(attr: Attribute, entity: Entity, qualifier: str) -> set[tuple[str, str]]:
    src = entity.source_table
    pairs: set[tuple[str, str]] = set()
    if qualifier == src:
        return pairs  # an unaliased read of its own table: the outer row cannot be told apart
    for sql, _scope in _condition_fragments(attr, entity):
        try:
            tree = parse(sql)
        except FragmentError:
            continue
        for left, right in equalities(tree):
            for a, b in ((left, right), (right, left)):
                mine, theirs = as_column(a), as_column(b)
                if mine is None or theirs is None:
                    continue
                if mine[0] in (src, None) and theirs[0] == qualifier:
                    pairs.add((mine[1], theirs[1]))
    return pairs


def _key_attributes(entity: Entity) -> list[Attribute]:
    names: set[str] = set()
    for key, template in ((entity.table.pk, entity.source.pk_template),
                          (entity.table.sk, entity.source.sk_template)):  # fmt: skip
        if not key:
            continue
        if key_attribute(entity.source, key) is not None or entity.table.type == "single-entity":
            names.add(key)
        else:
            names.update(template_fields(template or ""))
    return [a for a in entity.source.attributes if a.name in names]


class DependencyIndex:
    """The reverse dependency index of a contract (see the module's docstring)."""

    def __init__(self, contract: Contract) -> None:
        self.contract = contract
        self.entities = Entities(contract)
        self.readers: dict[str, list[Reader]] = {}
        self.own: dict[str, list[Entity]] = {}
        for entity in self.entities:
            self.own.setdefault(entity.source_table, []).append(entity)
            self._index(entity)

    def _index(self, entity: Entity) -> None:
        key_attrs = {a.name for a in _key_attributes(entity)}
        found: dict[str, Reader] = {}
        for attr in entity.source.attributes:
            for table in sorted(_subquery_tables(attr, entity)):
                why = f"attribute {attr.name!r} reads {table} in a subquery"
                columns = _columns_read(attr, entity, table, table)
                self._add(found, Reader(entity, table, (), attr.name in key_attrs, why, columns))
            for qualifier, table in _tables_read(attr, entity).items():
                pairs = _pairs(attr, entity, qualifier)
                if isinstance(attr.join, ChainJoin) and table != attr.join.joins[0].target_table:
                    pairs = set()  # a later step of a chain: no equality with the outer row
                key_reads = attr.name in key_attrs
                why = (
                    ""
                    if pairs
                    else f"attribute {attr.name!r} reads {table} without an "
                    f"equality on a column of {entity.source_table}"
                )
                columns = _columns_read(attr, entity, table, qualifier)
                self._add(found, Reader(entity, table, tuple(sorted(pairs)), key_reads, why,
                                        columns))  # fmt: skip
        for table, reader in found.items():
            self.readers.setdefault(table, []).append(reader)

    @staticmethod
    def _add(found: dict[str, Reader], reader: Reader) -> None:
        """Merge ``reader`` into what the entity reads of its table: pairs add up, and one
        read no key follows makes the whole table's changes take the fallback."""
        old = found.get(reader.table)
        if old is None:
            found[reader.table] = reader
            return
        key_reads = old.key_reads or reader.key_reads
        columns = (None if old.columns is None or reader.columns is None
                   else old.columns | reader.columns)  # fmt: skip
        if not old.pairs or not reader.pairs:
            why = old.why if not old.pairs else reader.why
            found[reader.table] = Reader(reader.entity, reader.table, (), key_reads, why,
                                         columns)  # fmt: skip
        else:
            pairs = tuple(sorted({*old.pairs, *reader.pairs}))
            found[reader.table] = Reader(reader.entity, reader.table, pairs, key_reads, "",
                                         columns)  # fmt: skip

    def set_cascades(self, cascades: Iterable[Cascade]) -> None:
        """The database's foreign keys that change child rows on their own (ON DELETE or ON
        UPDATE CASCADE / SET NULL). InnoDB does not write those changes to the binlog, so a
        delete (or a key update) of a parent row takes the fallback for every entity that
        owns or reads a table the cascade reaches."""
        self.cascades: dict[str, list[Cascade]] = {}
        for c in cascades:
            self.cascades.setdefault(c.parent, []).append(c)

    def _cascaded(self, table: str, before: Mapping[str, Any] | None,
                  after: Mapping[str, Any] | None) -> Iterable[Ref]:  # fmt: skip
        seen: set[str] = set()
        todo = [c for c in getattr(self, "cascades", {}).get(table, ())
                if c.fires(before, after)]  # fmt: skip
        while todo:
            c = todo.pop()
            if c.child in seen:
                continue
            seen.add(c.child)
            why = f"{c.child} rows changed by the foreign key {c.name} (not in the binlog)"
            for entity in self.own.get(c.child, ()):
                yield Everything(entity.name, why)
            for reader in self.readers.get(c.child, ()):
                yield Everything(reader.entity.name, why)
            todo.extend(self.cascades.get(c.child, ()))  # what the cascade's own deletes fire

    def tables(self) -> set[str]:
        """Every table whose changes the sync must read."""
        return set(self.own) | set(self.readers)

    def fallbacks(self) -> list[Reader]:
        return [r for readers in self.readers.values() for r in readers if not r.pairs]

    # --- one change --------------------------------------------------------------------

    def refs(self, table: str, before: Mapping[str, Any] | None,
             after: Mapping[str, Any] | None) -> Iterable[Ref]:  # fmt: skip
        for entity in self.own.get(table, ()):
            yield from self._own_refs(entity, before, after)
        for reader in self.readers.get(table, ()):
            yield from self._reader_refs(reader, before, after)
        yield from self._cascaded(table, before, after)

    def _own_refs(self, entity: Entity, before: Mapping[str, Any] | None,
                  after: Mapping[str, Any] | None) -> Iterable[Ref]:  # fmt: skip
        row = after if after is not None else before
        assert row is not None
        if after is not None:
            yield Derive(entity.name, _frozen({k: after.get(k) for k in entity.source_key}))
        if before is None:
            return
        try:
            old = entity.item_key(before)
        except RoutingError:
            yield RemoveBefore(entity.name, json.dumps(dict(before), default=_json_default))
            return
        if after is not None:
            try:
                if entity.item_key(after) == old:
                    return
            except RoutingError:
                pass
        yield Remove(entity.name, _frozen(old))

    def _reader_refs(self, reader: Reader, before: Mapping[str, Any] | None,
                     after: Mapping[str, Any] | None) -> Iterable[Ref]:  # fmt: skip
        entity = reader.entity
        if not reader.reads_change(before, after):
            return  # an update of columns the entity does not read
        if not reader.pairs:
            yield Everything(entity.name, reader.why)
            return
        for mine, theirs in reader.pairs:
            values = {_value_json(r.get(theirs)) for r in (before, after) if r is not None}
            values.discard("null")
            for value in values:
                yield DependentsOf(entity.name, mine, value)
            moved = before is not None and (after is None or dict(before) != dict(after))
            if reader.key_reads and moved and before is not None:
                value = _value_json(before.get(theirs))
                if value != "null":
                    yield KeysBefore(entity.name, mine, value, reader.table,
                                     json.dumps(dict(before), default=_json_default))  # fmt: skip


def _json_default(value: Any) -> Any:
    import base64
    import datetime as dt
    from decimal import Decimal

    if isinstance(value, Decimal):
        return {"$dec": str(value)}
    if isinstance(value, dt.datetime):
        return {"$dt": value.isoformat()}
    if isinstance(value, dt.date):
        return {"$d": value.isoformat()}
    if isinstance(value, dt.timedelta):
        return {"$td": value.total_seconds()}
    if isinstance(value, bytes):
        return {"$b": base64.b64encode(value).decode()}
    if isinstance(value, set):
        return sorted(value, key=str)
    return str(value)


def _decode_hook(obj: dict[str, Any]) -> Any:
    import base64
    import datetime as dt
    from decimal import Decimal

    if len(obj) == 1:
        ((tag, v),) = obj.items()
        if tag == "$dec":
            return Decimal(v)
        if tag == "$dt":
            return dt.datetime.fromisoformat(v)
        if tag == "$d":
            return dt.date.fromisoformat(v)
        if tag == "$td":
            return dt.timedelta(seconds=v)
        if tag == "$b":
            return base64.b64decode(v)
    return obj


def _value_json(value: Any) -> str:
    return json.dumps(value, default=_json_default)


def decode(text: str) -> Any:
    """A row or value a ref carries, back to Python values (Decimal, datetime, bytes)."""
    return json.loads(text, object_hook=_decode_hook)
