"""DynamoDB's item size, and what one write of an item costs in the table and its GSIs.

The one implementation of the rules of "DynamoDB item sizes and formats" (DynamoDB developer
guide), shared by the item builder (the 400 KB limit), the loader (its rate in write units)
and ``cutover estimate``. It imports nothing else of cutover but its errors, so any of them
may import it without pulling in the others.

* an item is the sum of its attribute names (UTF-8 bytes) and their values;
* a string is its UTF-8 bytes;
* a binary value is its raw bytes: in a low-level AttributeValue ``B`` is base64 text (or
  bytes, as boto3 also takes them), and the decoded length counts, not the text's;
* a number is about one byte per two significant digits (rounded up) plus one, leading and
  trailing zeroes trimmed;
* a Boolean or a null is 1 byte;
* a list or map is 3 bytes of overhead plus its elements, each 1 byte more (a map element
  also counts its name);
* a set is the sum of its elements.

One write of an item of up to 1 KB (1,024 bytes) takes one write capacity unit (provisioned)
or one write request unit (on-demand); larger items take one more for each further KB or
part of one. A write also writes the item's entry into each GSI whose key attributes it has
(a sparse index skips items without them), costed the same way on the entry's size: the
table's key attributes, the index's key attributes and the projected attributes (all of them
for ALL, the listed ones for INCLUDE, none for KEYS_ONLY).
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from cutover.errors import TerminalError

if TYPE_CHECKING:
    from cutover.contract.model import Gsi, Table

KB = 1024
MAX_ITEM_BYTES = 400 * KB
AV = Mapping[str, Any]
TYPES = ("S", "N", "B", "BOOL", "NULL", "SS", "NS", "BS", "L", "M")


class ItemSizeError(TerminalError, ValueError):
    """An AttributeValue that is not one DynamoDB could store, so it has no size."""


def _digits(number: Any) -> int:
    """Significant digits of a number's text, leading and trailing zeroes trimmed."""
    text = str(number).strip().lower().lstrip("+-")
    mantissa = text.split("e", 1)[0]
    return len(mantissa.replace(".", "").strip("0")) or 1


def number_size(number: Any) -> int:
    """Bytes of a DynamoDB number: one per two significant digits (rounded up), plus one."""
    return math.ceil(_digits(number) / 2) + 1


def binary_size(value: Any) -> int:
    """Raw bytes of a binary value given as bytes or as base64 text."""
    if isinstance(value, memoryview):
        return value.nbytes
    if isinstance(value, bytes | bytearray):
        return len(value)
    try:
        return len(base64.b64decode(str(value), validate=True))
    except (binascii.Error, ValueError):
        shown = str(value)[:40]
        raise ItemSizeError(
            f"binary value {shown!r} is neither bytes nor base64 text: a low-level "
            "AttributeValue's B (and each BS element) must be base64-encoded, as DynamoDB "
            "requires; encode the raw bytes with base64 first"
        ) from None


def value_size(av: AV) -> int:
    """Bytes of one AttributeValue (``{"S": "x"}``, ``{"N": "12"}``, ``{"M": {...}}``, ...)."""
    if len(av) != 1:
        raise ItemSizeError(
            f"an AttributeValue has exactly one type key ({' '.join(TYPES)}), not "
            f"{sorted(av)!r}: give each attribute as {{type: value}}"
        )
    ((kind, value),) = av.items()
    if kind == "S":
        return len(str(value).encode("utf-8"))
    if kind == "N":
        return number_size(value)
    if kind == "B":
        return binary_size(value)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(str(s).encode("utf-8")) for s in value)
    if kind == "NS":
        return sum(number_size(n) for n in value)
    if kind == "BS":
        return sum(binary_size(b) for b in value)
    if kind == "L":
        return 3 + sum(1 + value_size(element) for element in value)
    if kind == "M":
        return 3 + sum(
            1 + len(str(name).encode("utf-8")) + value_size(element)
            for name, element in value.items()
        )
    raise ItemSizeError(
        f"{kind!r} is not a DynamoDB type ({' '.join(TYPES)}): give the attribute's value "
        "under one of these keys"
    )


def item_size_bytes(item: Mapping[str, AV]) -> int:
    """DynamoDB's size of an item given as a map of attribute name to AttributeValue (the
    JSON a PutRequest carries, as the item builder makes it): names plus values."""
    return sum(len(name.encode("utf-8")) + value_size(av) for name, av in item.items())


def write_units(size_bytes: float) -> int:
    """WCUs (or on-demand WRUs) of one write of an item of ``size_bytes``: one per KB begun."""
    return max(1, math.ceil(size_bytes / KB))


def index_entry(item: Mapping[str, AV], table: Table, gsi: Gsi) -> dict[str, AV] | None:
    """The part of ``item`` written into ``gsi``; None when the item lacks one of the index's
    key attributes (the index is sparse: no write to it)."""
    index_keys = [k for k in (gsi.pk, gsi.sk) if k]
    if any(k not in item or "NULL" in item[k] for k in index_keys):
        return None
    if gsi.projection == "ALL":
        return dict(item)
    names = {k for k in (table.pk, table.sk) if k} | set(index_keys)
    if gsi.projection == "INCLUDE":
        names |= set(gsi.projected_attributes or [])
    return {name: av for name, av in item.items() if name in names}


def gsi_write_units(item: Mapping[str, AV], table: Table, gsi: Gsi) -> int:
    """Write units one put of ``item`` takes in ``gsi`` (0 when the item is not indexed)."""
    entry = index_entry(item, table, gsi)
    return 0 if entry is None else write_units(item_size_bytes(entry))
