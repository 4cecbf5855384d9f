"""A history of operations the test records itself (start, end, outcome and values of each),
and the checks the phase-history test runs on it. Nothing here asks cutover what it did:
the final state is read from the stores, and judged against this record.

An operation is a dict: ``proc``, ``thread``, ``op`` (update, put, delete, multi, violate,
read, bypass), ``keys`` (user ids), ``col`` and ``value`` (the column it set; ``put`` sets
both ``bio`` and ``username`` to ``value``), ``start`` and ``end`` (``time.time()``, one
clock for all processes of one machine) and ``outcome``: ``ok`` (acknowledged), or a
definite refusal that changed nothing (``failed`` with a constraint error, ``notfound``,
``refused``), or ``unknown`` (the request failed in a way that may have taken effect).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

COLUMNS = ("bio", "username")
NO_EFFECT = ("notfound", "refused", "failed")


def read_log(paths: Iterable[Path]) -> list[dict[str, Any]]:
    ops: list[dict[str, Any]] = []
    for path in paths:
        if path.exists():
            ops.extend(json.loads(line) for line in path.read_text().splitlines() if line)
    return ops


def _writes_of(ops: list[dict[str, Any]], key: int) -> list[dict[str, Any]]:
    return [o for o in ops if o["op"] != "read" and key in o["keys"]]


def _sets(op: dict[str, Any], col: str) -> bool:
    return op["op"] == "put" or (op["op"] in ("update", "multi", "bypass") and op["col"] == col)


def _latest(candidates: list[dict[str, Any]], superseding: list[dict[str, Any]]) -> list[dict]:
    """The candidates no acknowledged superseding operation started after the end of."""
    return [
        c
        for c in candidates
        if not any(s["outcome"] == "ok" and s["start"] > c["end"] for s in superseding)
    ]


def violations(
    ops: list[dict[str, Any]],
    initial: dict[int, dict[str, Any] | None],
    final: dict[int, dict[str, Any] | None],
) -> list[str]:
    """For each key: it exists at the end only if an acknowledged put (or its initial row)
    is not superseded by an acknowledged delete that started after it ended, and is absent
    only if such a delete is not superseded by a put; each column's final value is one an
    operation wrote (or the initial one) that no acknowledged write of the column starting
    after it ended superseded. Operations of unknown outcome may or may not have applied."""
    out: list[str] = []
    for key, row in final.items():
        writes = _writes_of(ops, key)
        may = [w for w in writes if w["outcome"] in ("ok", "unknown")]
        existence = [w for w in may if w["op"] in ("put", "delete")]
        if initial.get(key) is not None:
            existence.append(
                {
                    "op": "put",
                    "outcome": "ok",
                    "start": 0.0,
                    "end": 0.0,
                    "value": None,
                    "initial": True,
                }
            )
        else:
            existence.append({"op": "delete", "outcome": "ok", "start": 0.0, "end": 0.0})
        kind = "put" if row is not None else "delete"
        live = _latest(existence, existence)
        if not any(e["op"] == kind for e in live):
            out.append(
                f"user {key}: {'present' if row else 'absent'} at the end, but the last "
                f"acknowledged puts/deletes say otherwise: "
                f"{[(e['op'], e.get('proc'), e.get('thread'), e['start']) for e in live]}"
            )
            continue
        if row is None:
            continue
        for col in COLUMNS:
            setters = [w for w in may if _sets(w, col)]
            first = {
                "value": row_value(initial.get(key), col),
                "start": 0.0,
                "end": 0.0,
                "outcome": "ok",
            }
            values = [first, *setters]
            allowed = {v["value"] for v in _latest(values, setters)}
            if row.get(col) not in allowed:
                out.append(
                    f"user {key}.{col} = {row.get(col)!r} at the end; the writes not "
                    f"superseded wrote {sorted(map(str, allowed))}"
                )
    return out


def row_value(row: dict[str, Any] | None, col: str) -> Any:
    return None if row is None else row.get(col)


def read_violations(ops: list[dict[str, Any]]) -> list[str]:
    """A read that follows its own thread's acknowledged write returns that value or one
    written by an operation that did not end before that write started."""
    out = []
    for r in (o for o in ops if o["op"] == "read"):
        w = r["after"]
        if r["value"] == w["value"]:
            continue
        others = [
            o
            for o in _writes_of(ops, r["keys"][0])
            if _sets(o, r["col"])
            and o["outcome"] in ("ok", "unknown")
            and o["end"] >= w["start"]
            and o["start"] <= r["end"]
        ]
        deleted = [
            o
            for o in _writes_of(ops, r["keys"][0])
            if o["op"] == "delete" and o["outcome"] in ("ok", "unknown") and o["end"] >= w["start"]
        ]
        if r["value"] not in {o["value"] for o in others} and not (r["value"] is None and deleted):
            out.append(
                f"proc {r['proc']} thread {r['thread']} wrote user {r['keys'][0]}."
                f"{r['col']} = {w['value']!r} and read back {r['value']!r}"
            )
    return out
