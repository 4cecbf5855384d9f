"""The phase-history test's judge (tests/history.py) finds what it must: histories written
by hand, each with one known violation, and the concurrent cases it must allow."""

from __future__ import annotations

from typing import Any

import pytest
from tests.history import read_violations, violations

pytestmark = pytest.mark.unit

INITIAL = {1: {"bio": "b0", "username": "u0"}}


def op(kind: str, start: float, end: float, value: str | None = None, col: str = "bio",
       outcome: str = "ok", key: int = 1) -> dict[str, Any]:  # fmt: skip
    return {"proc": 1, "thread": 0, "op": kind, "keys": [key], "col": col, "value": value,
            "start": start, "end": end, "outcome": outcome}  # fmt: skip


def test_a_write_superseded_by_a_later_acknowledged_one_may_not_be_the_final_value() -> None:
    ops = [op("update", 1, 2, "a"), op("update", 3, 4, "b")]
    assert violations(ops, INITIAL, {1: {"bio": "b", "username": "u0"}}) == []
    found = violations(ops, INITIAL, {1: {"bio": "a", "username": "u0"}})
    assert len(found) == 1 and "user 1.bio = 'a'" in found[0]


def test_overlapping_writes_may_end_either_way() -> None:
    ops = [op("update", 1, 3, "a"), op("update", 2, 4, "b")]
    for value in ("a", "b"):
        assert violations(ops, INITIAL, {1: {"bio": value, "username": "u0"}}) == []
    assert violations(ops, INITIAL, {1: {"bio": "b0", "username": "u0"}}) != []  # both lost


def test_a_row_deleted_after_its_last_put_must_stay_deleted() -> None:
    ops = [op("put", 1, 2, "p"), op("delete", 3, 4)]
    assert violations(ops, INITIAL, {1: None}) == []
    found = violations(ops, INITIAL, {1: {"bio": "p", "username": "p"}})
    assert len(found) == 1 and "present at the end" in found[0]


def test_a_write_of_unknown_outcome_may_or_may_not_have_landed() -> None:
    ops = [op("update", 1, 2, "a"), op("update", 3, 4, "b", outcome="unknown")]
    for value in ("a", "b"):
        assert violations(ops, INITIAL, {1: {"bio": value, "username": "u0"}}) == []
    refused = [op("update", 1, 2, "a"), op("update", 3, 4, "b", outcome="refused")]
    assert violations(refused, INITIAL, {1: {"bio": "b", "username": "u0"}}) != []


def test_a_read_after_a_write_may_not_return_what_came_before_it() -> None:
    write = op("update", 3, 4, "mine")
    before = op("update", 1, 2, "older")
    read = {**op("read", 5, 6, "older"), "after": {"value": "mine", "start": 3}}
    assert read_violations([before, write, read]) != []
    newer = op("update", 4.5, 5.5, "theirs")
    fine = {**op("read", 6, 7, "theirs"), "after": {"value": "mine", "start": 3}}
    assert read_violations([before, write, newer, fine]) == []
