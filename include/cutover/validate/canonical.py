"""Canonical forms of DynamoDB items, so that 1.50 and 1.5, key order in maps, or set order
do not count as differences; and the attribute-level differences of two items."""

from __future__ import annotations

import json
import re
from decimal import Context, Decimal
from typing import Any

from cutover.contract.model import Table, template_fields
from cutover.transform.items import VERSION_ATTRIBUTE

AV = dict[str, Any]
_EXACT = Context(prec=200)
_PLAIN_INTEGER = re.compile(r"-?[1-9][0-9]*|0")  # already canonical: most numbers


def _number(text: str) -> str:
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
        text = _number(value)
        return av if text is value else {"N": text}
    if kind == "NS":
        return {"NS": sorted({_number(v) for v in value}, key=Decimal)}
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


def key_text(av: AV | None) -> str | None:
    if av is None:
        return None
    ((kind, value),) = av.items()
    return _number(value) if kind == "N" else str(value)


def differences(expected: str | None, actual: str | None) -> list[dict[str, Any]]:
    """One entry per attribute that differs: kind is value, type, missing_attribute (absent
    in DynamoDB) or extra_attribute (absent in MySQL's expected item)."""
    exp: dict[str, AV] = json.loads(expected) if expected else {}
    act: dict[str, AV] = json.loads(actual) if actual else {}
    out: list[dict[str, Any]] = []
    for name in sorted(set(exp) | set(act)):
        e, a = exp.get(name), act.get(name)
        if e == a:
            continue
        if a is None:
            kind = "missing_attribute"
        elif e is None:
            kind = "extra_attribute"
        elif next(iter(e)) != next(iter(a)):
            kind = "type"
        else:
            kind = "value"
        out.append({"attribute": name, "kind": kind, "expected": e, "actual": a})
    return out


class EntityClassifier:
    """Tells which entity of a table an item belongs to, from its key (multi-entity tables
    by the constant parts of their key templates)."""

    def __init__(self, table: Table) -> None:
        import re

        self.table = table
        self.single = table.sources[0].entity_type if table.type == "single-entity" else None
        self._patterns: list[tuple[str, Any, Any]] = []
        for source in table.sources:
            pk_re = _template_regex(source.pk_template or "", re)
            sk_re = _template_regex(source.sk_template or "", re)
            self._patterns.append((source.entity_type, pk_re, sk_re))
        # templates with more constant text first, so "ORDER#{id}" wins over "{id}"
        self._patterns.sort(key=lambda p: -len(p[1].pattern + p[2].pattern))

    def __call__(self, pk: str | None, sk: str | None) -> str:
        if self.single:
            return self.single
        for entity, pk_re, sk_re in self._patterns:
            if pk_re.fullmatch(pk or "") and sk_re.fullmatch(sk or ""):
                return entity
        return "UNKNOWN"


def _template_regex(template: str, re: Any) -> Any:
    pattern = ""
    rest = template
    for name in template_fields(template):
        before, rest = rest.split("{" + name + "}", 1)
        pattern += re.escape(before) + "(.+)"
    return re.compile(pattern + re.escape(rest), re.DOTALL)
