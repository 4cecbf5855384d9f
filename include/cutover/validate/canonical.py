"""Comparing DynamoDB items: their canonical form (``cutover.transform.canonical``, which the
item builder writes too), key texts, the entity of a key, and the attribute-level
differences of two items."""

from __future__ import annotations

import json
from typing import Any

from cutover.contract.model import Table, template_fields
from cutover.transform.canonical import canonical_item, canonical_number, canonical_value

__all__ = ["EntityClassifier", "canonical_item", "canonical_value", "differences", "key_text"]

AV = dict[str, Any]


def key_text(av: AV | None) -> str | None:
    if av is None:
        return None
    ((kind, value),) = av.items()
    return canonical_number(value) if kind == "N" else str(value)


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
