"""View rows to DynamoDB items, per contract; rows that cannot become an item are rejected
with the reason and the source primary key, never dropped."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from cutover.contract.model import Attribute, Contract, Source, Table
from cutover.dynamo_item_size import MAX_ITEM_BYTES
from cutover.dynamo_item_size import item_size_bytes as item_size
from cutover.transform.attribute_values import AV, BadValue, convert
from cutover.transform.canonical import VERSION_ATTRIBUTE, canonical_item, item_body

# An item's version is (phase epoch, order within it): epoch * EPOCH_SPAN + a binlog ordinal
# (phases 1-3) or a clock in microseconds (phases 4-5), both below 10**16. Each change of
# phase bumps the epoch, so nothing written in an ended phase beats what the store that
# became authoritative wrote after the fence (cutover.phases.fence).
EPOCH_SPAN = 10**16
_EPOCH = dt.datetime(1970, 1, 1)


@dataclass(frozen=True)
class Item:
    pk: str
    sk: str | None
    body: str  # JSON of the AttributeValue map, ready for a PutRequest
    entity_type: str
    source_pk: str
    version: int | None
    # the item without its version as ``canonical_item`` writes it (what parity compares)
    canonical: str
    # the same item as a map of AttributeValues, for whoever reads it rather than sends it
    attributes: dict[str, AV] = field(compare=False, repr=False)


@dataclass(frozen=True)
class Rejection:
    table: str
    entity_type: str
    source_table: str
    source_pk: str
    reason: str
    detail: str
    row: str  # the view row as JSON, truncated

    def to_dict(self) -> dict[str, str]:
        return {
            "table": self.table,
            "entity_type": self.entity_type,
            "source_table": self.source_table,
            "source_pk": self.source_pk,
            "reason": self.reason,
            "detail": self.detail,
            "row": self.row,
        }


def version_number(value: Any) -> int | None:
    """The version column as an integer: microseconds since the epoch for date-times."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        delta = value - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    if isinstance(value, dt.date):
        return version_number(dt.datetime(value.year, value.month, value.day))
    if isinstance(value, str):
        try:
            return version_number(dt.datetime.fromisoformat(value))
        except ValueError:
            return int(Decimal(value))
    return int(value)


def item_version(epoch: int, order: int) -> int:
    """The version of an item written in phase epoch ``epoch`` at ``order`` within it."""
    return epoch * EPOCH_SPAN + order


def attribute_value(attr: Attribute, value: Any) -> AV | None:
    """The attribute's value as DynamoDB keeps it, its ``on_null`` option applied to a NULL
    (None: the item has no such attribute); ``BadValue`` when it cannot be one."""
    av = None if value is None else convert(attr.type, value)
    if av is not None:
        return av
    option = attr.cutover
    if option.on_null == "reject":
        raise BadValue("null_rejected", "it is NULL")
    if option.on_null == "null":
        return {"NULL": True}
    if option.on_null == "default":
        return convert(attr.type, option.default)  # lint checked it fits the type
    return None


def _row_json(row: Mapping[str, Any], limit: int = 8192) -> str:
    text = json.dumps(dict(row), default=str, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + "…(truncated)"


def _key_text(av: AV) -> str:
    ((_, value),) = av.items()
    return str(value)


def with_version(item: Item, version: int) -> Item:
    """The item stamped with ``version`` (a binlog position's ordinal) instead of the one it
    was built with."""
    if item.version == version:
        return item
    stamp = {"N": str(version)}
    attributes = {**item.attributes, VERSION_ATTRIBUTE: stamp}
    body = item_body(item.canonical, stamp)  # the version is not part of the canonical text
    return replace(item, body=body, version=version, attributes=attributes)


class _SourceBuilder:
    def __init__(
        self, table: Table, source: Source, index_keys: dict[str, str], version: int | None
    ) -> None:
        self.table = table
        self.source = source
        self.multi = table.type == "multi-entity"
        key_names = [k for k in (table.pk, table.sk) if k]
        by_name = {a.name: a.type for a in source.attributes}
        self.attributes: list[Attribute] = list(source.attributes)
        # a key with no attribute of its name comes from the entity's template: text (S)
        self.template_keys = [k for k in key_names if self.multi and k not in by_name]
        self.key_types = {k: by_name.get(k, "S") for k in key_names if k in by_name or self.multi}
        self.index_keys = index_keys
        self.versioned = source.options.version_column is not None
        self.fixed_version = version

    def reject(self, row: Mapping[str, Any], reason: str, detail: str) -> Rejection:
        return Rejection(
            table=self.table.table,
            entity_type=self.source.entity_type,
            source_table=self.source.source_table,
            source_pk=str(row.get("__source_pk")),
            reason=reason,
            detail=detail,
            row=_row_json(row),
        )

    def build(self, row: Mapping[str, Any]) -> Item | Rejection:
        item: dict[str, AV] = {}
        for name in self.template_keys:
            value = row.get(name)
            if value is not None:
                item[name] = {"S": str(value)}
        for attr in self.attributes:
            try:
                av = attribute_value(attr, row.get(attr.name))
            except BadValue as exc:
                return self.reject(row, exc.reason, f"attribute {attr.name!r}: {exc.detail}")
            if av is not None:
                item[attr.name] = av
        for name, type_ in self.key_types.items():
            av = item.get(name)
            if av is None or _key_text(av) == "" or next(iter(av)) != type_:
                return self.reject(row, "empty_key", f"key attribute {name!r} is empty or missing")
        for name, type_ in self.index_keys.items():
            av = item.get(name)
            if av is not None and (next(iter(av)) != type_ or _key_text(av) == ""):
                return self.reject(
                    row, "empty_key", f"index key {name!r} must be a non-empty {type_}"
                )
        if self.fixed_version is not None:
            version: int | None = self.fixed_version
        else:
            version = version_number(row.get("__version")) if self.versioned else None
        if version is not None:
            item[VERSION_ATTRIBUTE] = {"N": str(version)}
        canonical = canonical_item(item)
        body = item_body(canonical, item.get(VERSION_ATTRIBUTE))
        # The body's UTF-8 bytes (at most 4 a character) are never fewer than the item's size:
        # every name and value is in it, numbers as their digits, binaries as base64. So only
        # a long body needs the exact size.
        if len(body) * 4 > MAX_ITEM_BYTES and (size := item_size(item)) > MAX_ITEM_BYTES:
            return self.reject(
                row, "item_too_large", f"item is {size:,} bytes, over DynamoDB's 400 KB"
            )
        return Item(
            pk=_key_text(item[self.table.pk]),
            sk=_key_text(item[self.table.sk]) if self.table.sk else None,
            body=body,
            entity_type=self.source.entity_type,
            source_pk=str(row.get("__source_pk")),
            version=version,
            canonical=canonical,
            attributes=item,
        )


class ItemBuilder:
    """Builds the items of one DynamoDB table from rows of its view. ``version`` stamps every
    item (the binlog position a backfill's snapshot starts from); without it an item carries
    its row's version column, when its source has one."""

    def __init__(self, contract: Contract, table: Table, version: int | None = None) -> None:
        self.table = table
        types: dict[str, str] = {}
        for source in table.sources:
            for attr in source.attributes:
                types.setdefault(attr.name, attr.type)
        index_keys = {
            k: types.get(k, "S") for g in table.gsis for k in (g.pk, g.sk) if k is not None
        }
        self._by_entity = {
            s.entity_type: _SourceBuilder(table, s, index_keys, version) for s in table.sources
        }
        self._single = next(iter(self._by_entity.values())) if len(self._by_entity) == 1 else None

    def build(self, row: Mapping[str, Any]) -> Item | Rejection:
        builder = self._single or self._by_entity.get(str(row.get("__entity")))
        if builder is None:
            raise KeyError(f"row of unknown entity {row.get('__entity')!r}")
        return builder.build(row)

    def build_all(self, rows: Iterable[Mapping[str, Any]]) -> tuple[list[Item], list[Rejection]]:
        items: list[Item] = []
        rejections: list[Rejection] = []
        for row in rows:
            result = self.build(row)
            (items if isinstance(result, Item) else rejections).append(result)
        return items, rejections
