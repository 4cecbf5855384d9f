"""Python values (as read from a view) to DynamoDB AttributeValues, exactly.

Numbers never pass through float: DECIMAL columns arrive as strings, JSON numbers are parsed
as ``Decimal``. A value that cannot be represented raises ``BadValue`` with a reason code the
quarantine records.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Callable
from decimal import Context, Decimal, InvalidOperation
from typing import Any

AV = dict[str, Any]
MAX_DIGITS = 38
_EXACT = Context(prec=200)  # normalize() must not round to the default 28 digits


class BadValue(ValueError):
    """``reason`` is a short code (``number_too_precise``, ``bad_json``, ``bad_value``)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def number(value: Any) -> str:
    """Canonical DynamoDB number text; raises BadValue beyond 38 significant digits or out
    of DynamoDB's range."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        text = str(value)
        digits = len(text.lstrip("-").rstrip("0")) or 1
        if digits > MAX_DIGITS:
            raise BadValue("number_too_precise", f"{text} has {digits} significant digits")
        return text
    try:
        dec = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except InvalidOperation:
        raise BadValue("bad_value", f"{value!r} is not a number") from None
    if not dec.is_finite():
        raise BadValue("bad_value", f"{value!r} is not a finite number")
    if dec.is_zero():
        return "0"
    normal = dec.normalize(_EXACT)
    _, digits, exponent = normal.as_tuple()
    if len(digits) > MAX_DIGITS:
        raise BadValue(
            "number_too_precise", f"{value} has {len(digits)} significant digits (max 38)"
        )
    magnitude = len(digits) + int(exponent) - 1
    if magnitude > 125 or magnitude < -130:
        raise BadValue("bad_value", f"{value} is outside DynamoDB's number range")
    return format(normal, "f")


def _string(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise BadValue("bad_value", "binary value is not UTF-8 text") from None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal | int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    return json.dumps(value, default=str, ensure_ascii=False)


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "y", "t"):
        return True
    if text in ("0", "false", "no", "n", "f"):
        return False
    raise BadValue("bad_value", f"{value!r} is not a boolean")


def _binary(value: Any) -> str:
    raw = value.encode("utf-8") if isinstance(value, str) else bytes(value)
    return base64.b64encode(raw).decode("ascii")


def _json(value: Any) -> Any:
    if isinstance(value, str | bytes | bytearray):
        try:
            return json.loads(value, parse_float=Decimal)
        except ValueError as exc:
            raise BadValue("bad_json", f"not valid JSON: {exc}") from None
    return value


def from_json_value(value: Any) -> AV:
    """A decoded JSON value to an AttributeValue (dict -> M, list -> L, …)."""
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | Decimal | float):
        return {"N": number(value)}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, dict):
        return {"M": {str(k): from_json_value(v) for k, v in value.items()}}
    if isinstance(value, list | tuple):
        return {"L": [from_json_value(v) for v in value]}
    return {"S": _string(value)}


def _set(value: Any, element: Callable[[Any], str]) -> list[str]:
    decoded = _json(value)
    if not isinstance(decoded, list):
        decoded = [decoded]
    out: dict[str, None] = {}
    for v in decoded:
        if v is not None:
            out[element(v)] = None
    return list(out)


def _map(value: Any) -> AV:
    decoded = _json(value)
    if not isinstance(decoded, dict):
        raise BadValue(
            "bad_value", f"expected a JSON object for type M, got {type(decoded).__name__}"
        )
    return from_json_value(decoded)


def _list(value: Any) -> AV:
    decoded = _json(value)
    if not isinstance(decoded, list):
        raise BadValue(
            "bad_value", f"expected a JSON array for type L, got {type(decoded).__name__}"
        )
    return from_json_value(decoded)


CONVERTERS: dict[str, Callable[[Any], AV | None]] = {
    "S": lambda v: {"S": _string(v)},
    "N": lambda v: {"N": number(v)},
    "BOOL": lambda v: {"BOOL": _bool(v)},
    "B": lambda v: {"B": _binary(v)},
    "M": _map,
    "L": _list,
    "SS": lambda v: {"SS": s} if (s := _set(v, _string)) else None,
    "NS": lambda v: {"NS": s} if (s := _set(v, number)) else None,
    "BS": lambda v: {"BS": s} if (s := _set(v, _binary)) else None,
    "NULL": lambda v: {"NULL": True},
}


def convert(type_: str, value: Any) -> AV | None:
    """The AttributeValue of ``value`` as DynamoDB type ``type_``; None for an empty set."""
    return CONVERTERS[type_](value)
