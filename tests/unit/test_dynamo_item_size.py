"""The one DynamoDB item size function, which the item builder, the loader and the estimator
share. Every expected figure is worked out by hand from the rules of "DynamoDB item sizes
and formats", written next to it."""

from __future__ import annotations

import base64
from typing import Any

import pytest

import cutover.estimate.sizing as estimate_sizing
import cutover.load.rate_limit as rate_limit
import cutover.transform.items as items
from cutover.dynamo_item_size import (
    MAX_ITEM_BYTES,
    ItemSizeError,
    binary_size,
    item_size_bytes,
    value_size,
)
from cutover.errors import TerminalError

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        # "title" 5 + "Crème brûlée": 12 characters, three of them (è û é) 2 bytes = 15
        ({"title": {"S": "Crème brûlée"}}, 5 + 15),
        # "price" 5 + "-0012.3400": digits 00123400, zeroes trimmed 1234 = 4 -> 4/2 + 1 = 3
        ({"price": {"N": "-0012.3400"}}, 5 + 3),
        # "qty" 3 + "7": 1 digit -> ceil(1/2) + 1 = 2
        ({"qty": {"N": "7"}}, 3 + 2),
        # "big" 3 + "1.23E+10": the mantissa's 3 digits -> ceil(3/2) + 1 = 3
        ({"big": {"N": "1.23E+10"}}, 3 + 3),
        # "blob" 4 + b"hello": 5 raw bytes, whether given as base64 text "aGVsbG8=" (8
        # characters) or as the bytes themselves
        ({"blob": {"B": "aGVsbG8="}}, 4 + 5),
        ({"blob": {"B": b"hello"}}, 4 + 5),
        ({"blob": {"B": bytearray(b"hello")}}, 4 + 5),
        # "b" 1 + "YQ==": one raw byte (b"a"); 3/4 of the text's length would say 3
        ({"b": {"B": "YQ=="}}, 1 + 1),
        # "ok" 2 + 1, "gone" 4 + 1
        ({"ok": {"BOOL": True}, "gone": {"NULL": True}}, 3 + 5),
        # "addr" 4 + map: 3
        #   + "city": 1 + 4 + "Oslo" 4 = 9
        #   + "tags": 1 + 4 + list: 3 + (1 + "a" 1) + (1 + "10": digit 1 -> 2) + (1 + null 1)
        #                          = 3 + 2 + 3 + 2 = 10, so 1 + 4 + 10 = 15
        #   = 3 + 9 + 15 = 27
        (
            {
                "addr": {
                    "M": {
                        "city": {"S": "Oslo"},
                        "tags": {"L": [{"S": "a"}, {"N": "10"}, {"NULL": True}]},
                    }
                }
            },
            4 + 27,
        ),
        # "colors" 6 + "red" 3 + "grün" 5 (ü is 2 bytes)
        ({"colors": {"SS": ["red", "grün"]}}, 6 + 3 + 5),
        # "ns" 2 + "1" (2) + "12345" (5 digits: 3 + 1 = 4) + "100" (trimmed to 1: 2)
        ({"ns": {"NS": ["1", "12345", "100"]}}, 2 + 2 + 4 + 2),
        # "bs" 2 + "AAE=" (b"\x00\x01": 2) + b"\x00\x01\x02" (3): base64 text and bytes mix
        ({"bs": {"BS": ["AAE=", b"\x00\x01\x02"]}}, 2 + 2 + 3),
        # an item is the sum of its attributes: 20 + 8 + 9
        (
            {"title": {"S": "Crème brûlée"}, "price": {"N": "-0012.3400"}, "blob": {"B": b"hello"}},
            20 + 8 + 9,
        ),
    ],
)
def test_item_sizes_worked_by_hand(item: dict[str, Any], expected: int) -> None:
    assert item_size_bytes(item) == expected


def test_binary_counts_the_decoded_bytes_for_any_length() -> None:
    for n in range(0, 9):
        raw = bytes(range(n))
        assert binary_size(base64.b64encode(raw).decode("ascii")) == n
        assert binary_size(raw) == n
        assert value_size({"B": memoryview(raw)}) == n


@pytest.mark.parametrize(
    ("av", "message"),
    [
        ({"B": "not base64!"}, "neither bytes nor base64 text"),
        ({"BS": ["AAE=", "***"]}, "neither bytes nor base64 text"),
        ({"X": 1}, "'X' is not a DynamoDB type"),
        ({"S": "a", "N": "1"}, "exactly one type key"),
    ],
)
def test_a_value_dynamodb_could_not_store_is_refused(av: dict[str, Any], message: str) -> None:
    with pytest.raises(ItemSizeError, match=message) as err:
        item_size_bytes({"a": av})
    assert isinstance(err.value, TerminalError) and isinstance(err.value, ValueError)


def test_the_builder_the_loader_and_the_estimator_share_it() -> None:
    assert estimate_sizing.item_size_bytes is item_size_bytes
    assert rate_limit.item_size_bytes is item_size_bytes
    assert items.item_size is item_size_bytes
    assert items.MAX_ITEM_BYTES == MAX_ITEM_BYTES == 400 * 1024
