"""Rows of a view to items: keys, null handling, versions and every rejection reason."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from cutover.contract.load import parse_contract
from cutover.transform.items import VERSION_ATTRIBUTE, Item, ItemBuilder, Rejection, with_version

pytestmark = pytest.mark.unit


def _attr(name: str, type_: str, column: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, "source_table": "t", "source_column": column, **extra}


CONTRACT = parse_contract(
    {
        "tables": [
            {
                "table": "Things",
                "type": "single-entity",
                "source_table": "t",
                "pk": "thing_id",
                "gsis": [{"index_name": "ByName", "pk": "name"}],
                "attributes": [
                    _attr("thing_id", "N", "id"),
                    _attr("name", "S", "name"),
                    _attr("price", "N", "price", cutover={"on_null": "default", "default": 0}),
                    _attr("note", "S", "note"),
                    _attr("owner", "S", "owner", cutover={"on_null": "reject"}),
                    _attr("doc", "M", "doc"),
                ],
                "cutover": {"version_column": "updated_at"},
            },
            {
                "table": "Multi",
                "type": "multi-entity",
                "pk": "PK",
                "sk": "SK",
                "entities": [
                    {
                        "entity_type": "A",
                        "source_table": "t",
                        "pk_template": "A#{id}",
                        "sk_template": "META",
                        "attributes": [_attr("label", "S", "name")],
                    }
                ],
            },
        ]
    }
)


def _row(**values: Any) -> dict[str, Any]:
    base = {
        "thing_id": 7,
        "name": "seven",
        "price": "12.50",
        "note": None,
        "owner": "ann",
        "doc": '{"a": [1, 2.5]}',
        "__entity": "THINGS",
        "__source_pk": '{"id": 7}',
        "__version": dt.datetime(2024, 1, 1, 0, 0, 1, 5),
    }
    return {**base, **values}


def _build(row: dict[str, Any], table: str = "Things") -> Item | Rejection:
    return ItemBuilder(CONTRACT, CONTRACT.table(table)).build(row)


def test_a_clean_row_becomes_an_item_with_its_version() -> None:
    item = _build(_row())
    assert isinstance(item, Item)
    body = json.loads(item.body)
    assert body["thing_id"] == {"N": "7"}
    assert body["price"] == {"N": "12.5"}
    assert "note" not in body  # on_null omit is the default
    assert body["doc"] == {"M": {"a": {"L": [{"N": "1"}, {"N": "2.5"}]}}}
    assert body[VERSION_ATTRIBUTE] == {"N": str(1704067201000005)}
    assert (item.pk, item.sk, item.source_pk) == ("7", None, '{"id": 7}')


def test_null_default_and_null_reject() -> None:
    item = _build(_row(price=None))
    assert isinstance(item, Item) and json.loads(item.body)["price"] == {"N": "0"}
    rejected = _build(_row(owner=None))
    assert isinstance(rejected, Rejection)
    assert rejected.reason == "null_rejected" and "owner" in rejected.detail


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"thing_id": None}, "empty_key"),
        ({"name": ""}, "empty_key"),  # GSI key may not be an empty string
        ({"price": "1" * 39}, "number_too_precise"),
        ({"note": "x" * 410_000}, "item_too_large"),
        ({"doc": "{broken"}, "bad_json"),
    ],
)
def test_rejections_name_the_reason_and_the_source_row(change: dict[str, Any], reason: str) -> None:
    rejected = _build(_row(**change))
    assert isinstance(rejected, Rejection)
    assert rejected.reason == reason
    assert rejected.source_pk == '{"id": 7}'
    assert rejected.source_table == "t" and rejected.table == "Things"


@pytest.mark.parametrize(
    ("note", "fits"),
    [
        ("x" * 399_000, True),  # a body of 399,000 characters: its exact size decides
        ("\U0001f600" * 102_000, True),  # 408,000 bytes in 102,000 characters
        ("\U0001f600" * 103_000, False),  # 412,000 bytes (the limit is 409,600)
        ("\u00e9" * 205_000, False),  # 410,000 bytes of two-byte characters
    ],
)
def test_the_400_kb_limit_counts_utf8_bytes_not_characters(note: str, fits: bool) -> None:
    result = _build(_row(note=note))
    assert isinstance(result, Item) is fits
    if not fits:
        assert isinstance(result, Rejection) and result.reason == "item_too_large"


def test_the_item_map_is_the_body() -> None:
    item = _build(_row())
    assert isinstance(item, Item) and item.attributes == json.loads(item.body)
    assert item.canonical == (
        '{"doc":{"M":{"a":{"L":[{"N":"1"},{"N":"2.5"}]}}},"name":{"S":"seven"},'
        '"owner":{"S":"ann"},"price":{"N":"12.5"},"thing_id":{"N":"7"}}'
    )
    stamped = with_version(item, 42)
    assert stamped.attributes == json.loads(stamped.body)
    assert stamped.attributes[VERSION_ATTRIBUTE] == {"N": "42"}
    assert stamped.canonical == item.canonical  # the version is not the row's data


def test_multi_entity_keys_come_from_the_view_columns() -> None:
    row = {"PK": "A#1", "SK": "META", "label": "one", "__entity": "A", "__source_pk": "{}"}
    item = _build(row, "Multi")
    assert isinstance(item, Item) and (item.pk, item.sk) == ("A#1", "META")
    missing = _build({**row, "PK": None}, "Multi")
    assert isinstance(missing, Rejection) and missing.reason == "empty_key"
