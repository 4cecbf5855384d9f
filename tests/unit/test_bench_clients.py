"""The bench's clients comparison is printed in the figure table (as every figure, so the
table and the JSON list the same) and on a line of its own, both clients side by side."""

from __future__ import annotations

import json

import pytest

from cutover.bench.clients import format_clients, synthetic_bodies
from cutover.bench.runner import _rounded, format_table

pytestmark = pytest.mark.unit

FIGURES = {
    "clients_threads": 6,
    "loader_http_items_per_s": 21_000.0,
    "loader_http_items_per_cpu_s": 60_000.0,
    "botocore_items_per_s": 9_000.0,
    "botocore_items_per_cpu_s": 12_000.0,
    "http_vs_botocore_items_per_s": 21_000.0 / 9_000.0,
    "http_vs_botocore_per_cpu": 5.0,
}


def test_the_clients_line_shows_both_side_by_side() -> None:
    line = format_clients(FIGURES)
    assert line.startswith("clients at equal threads (6 threads, BatchWriteItem of 25): ")
    loader, botocore, ratio = line.split(": ", 1)[1].split(" | ")
    assert loader == "loader's DynamoHttp 21,000 items/s, 60,000 items/CPU-s"
    assert botocore == "botocore batch_write_item (pool 6) 9,000 items/s, 12,000 items/CPU-s"
    assert ratio == "DynamoHttp/botocore 2.33x items/s, 5.00x items/CPU-s"


def test_the_figures_are_in_the_table_and_the_line_below_it() -> None:
    result = _rounded({"rows": 1000, **FIGURES})
    lines = format_table(result).splitlines()
    table = lines[1 : lines.index("")]
    assert {row.split()[0] for row in table} == set(result)
    assert format_clients(result) in lines[lines.index("") + 1 :]


def test_synthetic_items_are_the_bench_contract_s_shape() -> None:
    bodies = synthetic_bodies(3)
    assert bodies == synthetic_bodies(3)  # the same items for every run
    item = json.loads(bodies[2])
    assert item["item_id"] == {"N": "2"} and set(item) == {
        "item_id", "name", "price", "quantity", "created_at", "active",
    }  # fmt: skip
