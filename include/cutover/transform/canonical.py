"""The canonical form of a DynamoDB item, so that 1.50 and 1.5, key order in maps, or set
order never count as differences: JSON text with sorted keys, canonical numbers and sorted
sets, without the version attribute. The item builder writes it with each item (and sends
the same text, with the version, as the item's body), so a validation reads it rather than
computing it again; what DynamoDB holds is put in the same form by ``canonical_item``."""

from __future__ import annotations

import json
import re
from decimal import Context, Decimal
from typing import Any

VERSION_ATTRIBUTE = "cutover_version"
AV = dict[str, Any]
_EXACT = Context(prec=200)
_PLAIN_INTEGER = re.compile(r"-?[1-9][0-9]*|0")  # already canonical: most numbers


def canonical_number(text: str) -> str:
    """A number's text in its one form: no exponent, no leading or trailing zeroes."""
    if _PLAIN_INTEGER.fullmatch(text):
        return text
    value = Decimal(text).normalize(_EXACT)
    return "0" if value.is_zero() else format(value, "f")


_AS_IS = frozenset(("S", "B", "BOOL", "NULL"))
# json.dumps with options builds an encoder per call; one built once encodes the same text
_CANON_JSON = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode


def canonical_value(av: AV) -> AV:
    ((kind, value),) = av.items()
    if kind in _AS_IS:
        return av
    if kind == "N":
        text = canonical_number(value)
        return av if text is value else {"N": text}
    if kind == "NS":
        return {"NS": sorted({canonical_number(v) for v in value}, key=Decimal)}
    if kind in ("SS", "BS"):
        return {kind: sorted(set(value))}
    if kind == "L":
        return {"L": [canonical_value(v) for v in value]}
    if kind == "M":
        return {"M": {k: canonical_value(v) for k, v in sorted(value.items())}}
    return av


def canonical_item(item: dict[str, AV]) -> str:
    """JSON text with sorted keys and canonical numbers and sets. The version attribute is
    left out: it is the binlog position the item was written at, not data of the row."""
    return _CANON_JSON(
        {name: canonical_value(av) for name, av in item.items() if name != VERSION_ATTRIBUTE}
    )


def item_body(canonical: str, version: AV | None) -> str:
    """The JSON an item is sent as: its canonical text, with its version attribute."""
    if version is None:
        return canonical
    tail = f'"{VERSION_ATTRIBUTE}":{_CANON_JSON(version)}'
    return "{" + tail + "}" if canonical == "{}" else canonical[:-1] + "," + tail + "}"
