"""Value conversion to DynamoDB AttributeValues: exact numbers, JSON, sets, sizes."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from cutover.dynamo_item_size import item_size_bytes
from cutover.transform.attribute_values import BadValue, convert, number

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("12.50", "12.5"),
        ("0.000", "0"),
        (Decimal("1E+3"), "1000"),
        (42, "42"),
        ("-0.0010", "-0.001"),
        ("12345678901234567890123456789012345678", "12345678901234567890123456789012345678"),
        (True, "1"),
    ],
)
def test_numbers_are_exact_and_canonical(raw: object, expected: str) -> None:
    assert number(raw) == expected


def test_more_than_38_significant_digits_is_rejected() -> None:
    with pytest.raises(BadValue) as err:
        number("1234567890123456789012345678901234567890.1234567890")
    assert err.value.reason == "number_too_precise"
    with pytest.raises(BadValue) as err:
        number(10**40 + 1)
    assert err.value.reason == "number_too_precise"


def test_trailing_zeros_do_not_count_as_precision() -> None:
    assert number(10**40) == str(10**40)


def test_json_numbers_never_pass_through_float() -> None:
    av = convert("M", '{"price": 0.1, "qty": 3, "tags": ["a", null, true]}')
    assert av == {
        "M": {
            "price": {"N": "0.1"},
            "qty": {"N": "3"},
            "tags": {"L": [{"S": "a"}, {"NULL": True}, {"BOOL": True}]},
        }
    }


def test_wrong_json_shape_and_bad_json_are_reasons() -> None:
    with pytest.raises(BadValue) as err:
        convert("M", "[1, 2]")
    assert err.value.reason == "bad_value"
    with pytest.raises(BadValue) as err:
        convert("L", "{not json")
    assert err.value.reason == "bad_json"


def test_sets_dedupe_and_empty_sets_vanish() -> None:
    assert convert("SS", '["b", "a", "b"]') == {"SS": ["b", "a"]}
    assert convert("NS", "[1, 1.0, 2.50]") == {"NS": ["1", "2.5"]}
    assert convert("SS", "[]") is None


def test_scalars() -> None:
    assert convert("BOOL", 1) == {"BOOL": True}
    assert convert("BOOL", "false") == {"BOOL": False}
    assert convert("S", dt.datetime(2024, 1, 2, 3, 4, 5, 6)) == {"S": "2024-01-02T03:04:05.000006"}
    assert convert("B", b"\x00\xff") == {"B": "AP8="}
    assert convert("S", "héllo 😀") == {"S": "héllo 😀"}
    with pytest.raises(BadValue):
        convert("BOOL", "maybe")


def test_item_size_counts_utf8_bytes_of_names_and_values() -> None:
    assert item_size_bytes({"a": {"S": "😀"}}) == 1 + 4
    big = {"d": {"S": "x" * 410_000}}
    assert item_size_bytes(big) > 400 * 1024
