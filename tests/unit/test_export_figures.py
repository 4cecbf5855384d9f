"""The independent checks' figures over DynamoDB's side, from Parquet files the test writes
in the side's schema, each expected figure worked out by hand."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from cutover.validate.export import SIDE_SCHEMA
from cutover.validate.independent import Check, export_figures


def _write(path: Path, items: list[tuple[str, dict[str, Any]]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = {
        "pk": [str(n) for n in range(len(items))],
        "sk": [None] * len(items),
        "entity": [entity for entity, _ in items],
        "canon": [json.dumps(item, sort_keys=True) for _, item in items],
        "source_pk": [None] * len(items),
    }
    pq.write_table(pa.table(rows, schema=SIDE_SCHEMA), path)


def _checks(entity: str, attribute: str, kinds: list[str]) -> list[Check]:
    return [Check(entity, f"{k}({attribute})", "", attribute, k) for k in kinds]


def test_figures_over_two_files_by_entity(tmp_path: Path) -> None:
    _write(tmp_path / "part-00.parquet", [
        ("A", {"price": {"N": "1.5"}, "day": {"S": "2024-03-01"}}),
        ("A", {"price": {"N": "-3"}, "day": {"S": "2023-12-31"}}),
        ("B", {"price": {"N": "1000"}}),  # another entity's: never counted for A
    ])  # fmt: skip
    _write(tmp_path / "part-01.parquet", [
        ("A", {"price": {"N": "2.25"}}),
        ("A", {"price": {"NULL": True}, "day": {"S": "2025-01-09"}}),
        ("A", {"day": {"NULL": True}}),
    ])  # fmt: skip
    checks = [
        Check("A", "count", "", None, "count"),
        *_checks("A", "price", ["non_null", "sum", "min", "max"]),
        *_checks("A", "day", ["non_null", "min_text", "max_text"]),
        Check("B", "count", "", None, "count"),
    ]
    got = export_figures(tmp_path, checks)
    assert got == {
        ("A", "count"): "5",
        ("A", "non_null(price)"): "3",
        ("A", "sum(price)"): "0.75",
        ("A", "min(price)"): "-3",
        ("A", "max(price)"): "2.25",
        ("A", "non_null(day)"): "3",
        ("A", "min_text(day)"): "2023-12-31",
        ("A", "max_text(day)"): "2025-01-09",
        ("B", "count"): "1",
    }


def test_sums_are_exact_beyond_38_digits(tmp_path: Path) -> None:
    big = "9" * 38 + "0" * 40  # 78 digits: no DECIMAL holds it
    tiny = "0." + "0" * 29 + "1"
    _write(tmp_path / "part-00.parquet", [("A", {"n": {"N": v}}) for v in (big, big, tiny)])
    got = export_figures(tmp_path, _checks("A", "n", ["sum"]))
    assert got[("A", "sum(n)")] == str(2 * int(big)) + ".000000000000000000000000000001"


def test_a_value_that_is_not_a_number_is_named(tmp_path: Path) -> None:
    _write(tmp_path / "part-00.parquet", [("A", {"n": {"N": "1"}}), ("A", {"n": {"S": "one"}})])
    got = export_figures(tmp_path, _checks("A", "n", ["sum", "min", "max"]))
    assert set(got.values()) == {"non-number S value"}


def test_attribute_names_with_pointer_and_quote_characters(tmp_path: Path) -> None:
    names = ["a/b", "x~1", "it's", 'say "hi"']
    _write(tmp_path / "part-00.parquet", [("A", {n: {"N": "2"} for n in names})] * 2)
    checks = [c for n in names for c in _checks("A", n, ["non_null", "sum"])]
    got = export_figures(tmp_path, checks)
    assert got == {key: {"non_null": "2", "sum": "4"}[key[1].split("(")[0]] for key in got}
    assert len(got) == 8


def test_no_items_at_all(tmp_path: Path) -> None:
    (tmp_path / "actual").mkdir()
    checks = [Check("A", "count", "", None, "count"), *_checks("A", "n", ["sum", "max"])]
    assert export_figures(tmp_path / "actual", checks) == {
        ("A", "count"): "0", ("A", "sum(n)"): "0", ("A", "max(n)"): None,
    }  # fmt: skip
