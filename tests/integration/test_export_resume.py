"""The validation's export resumes a segment from its last evaluated key after a failed page,
against the real DynamoDB Local.

A slow server cannot be produced on demand (DynamoDB Local's Scan slows down only at millions
of items), so the slowness is injected, but the timeout is real: a proxy on loopback forwards
every call to the real DynamoDB Local, and for chosen Scan calls holds the real reply back
longer than the client's read timeout, so the export's own client times out exactly as it
does on a page that takes longer than ``SCAN_TIMEOUT``. The proxy counts the Scan calls of
each segment, with the ``ExclusiveStartKey`` each was asked from, to tell a resume (the failed
page asked again from the same key) from a restart (a segment asked again from its start).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from tests.fault_proxy import DynamoProxy

from cutover.bench.synthetic import bench_contract
from cutover.contract.model import Table
from cutover.errors import TerminalError, TransientError
from cutover.load.batch_writer import Backoff
from cutover.load.dynamo_http import DynamoHttp
from cutover.settings import Settings
from cutover.validate.export import ExportStats, export_segments

pytestmark = [pytest.mark.integration, pytest.mark.dynamodb]

ITEMS = 600
SEGMENTS = 2
PAGE_LIMIT = 40
CLIENT_TIMEOUT = 1.0  # the export's read timeout in these tests
HOLD = 2.5  # how long the proxy holds back the reply of a "slow" page
FAST_BACKOFF = Backoff(base=0.01, cap=0.05, max_attempts=4)


class SlowDynamo(DynamoProxy):
    """The ``slow`` Scan calls ((segment, nth call of that segment)) are served by DynamoDB
    Local but answered only after ``HOLD`` seconds. ``calls`` records every Scan call as
    (segment, its ExclusiveStartKey or None)."""

    def __init__(self, upstream: str, slow: set[tuple[int, int]]) -> None:
        super().__init__(upstream)
        self.slow = set(slow)
        self.calls: list[tuple[int, str | None]] = []
        self.held: list[tuple[int, str | None]] = []

    def answer(self, target: str, headers: Mapping[str, str], body: bytes) -> tuple[int, bytes]:
        hold = False
        if target == "Scan":
            request = json.loads(body)
            segment = request["Segment"]
            start = request.get("ExclusiveStartKey")
            call = (segment, json.dumps(start, sort_keys=True) if start else None)
            with self.lock:
                self.calls.append(call)
                nth = sum(1 for s, _ in self.calls if s == segment)
                hold = (segment, nth) in self.slow
                if hold:
                    self.held.append(call)
        status, payload = self.forward(headers, body)
        if hold:
            time.sleep(HOLD)  # the client has given up on this page by now
        return status, payload

    def segment_calls(self, segment: int) -> list[str | None]:
        return [start for s, start in self.calls if s == segment]


@pytest.fixture(scope="module")
def table() -> Table:
    return bench_contract().tables[0]


@pytest.fixture(scope="module")
def table_name(settings: Settings, ddb: Any, table: Table) -> Iterator[str]:
    name = f"{settings.table_prefix}ExportResume"
    ddb.create_table(
        TableName=name,
        AttributeDefinitions=[{"AttributeName": table.pk, "AttributeType": "N"}],
        KeySchema=[{"AttributeName": table.pk, "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    ddb.get_waiter("table_exists").wait(TableName=name)
    for start in range(0, ITEMS, 25):
        ddb.batch_write_item(
            RequestItems={
                name: [
                    {
                        "PutRequest": {
                            "Item": {
                                table.pk: {"N": str(n)},
                                "name": {"S": f"item {n}"},
                                "price": {"N": f"{n}.5"},
                                "quantity": {"N": str(n % 7)},
                                "created_at": {"S": "2026-01-01T00:00:00"},
                                "active": {"BOOL": n % 2 == 0},
                            }
                        }
                    }
                    for n in range(start, min(start + 25, ITEMS))
                ]
            }
        )
    yield name
    ddb.delete_table(TableName=name)


def _exported_keys(out_dir: Path) -> list[str]:
    keys: list[str] = []
    for file in sorted(out_dir.glob("*.parquet")):
        keys += pq.read_table(file, columns=["pk"]).column("pk").to_pylist()
    return keys


def _table_keys(ddb: Any, name: str, pk: str) -> set[str]:
    keys: set[str] = set()
    for page in ddb.get_paginator("scan").paginate(TableName=name, ConsistentRead=True):
        keys.update(item[pk]["N"] for item in page["Items"])
    return keys


def _export(
    settings: Settings, table: Table, name: str, out_dir: Path, slow: set[tuple[int, int]]
) -> tuple[ExportStats, SlowDynamo]:
    with SlowDynamo(settings.dynamodb_endpoint or "", slow) as proxy:
        client = DynamoHttp(replace(settings, dynamodb_endpoint=proxy.url), timeout=CLIENT_TIMEOUT)
        try:
            stats = export_segments(
                client, table, name, out_dir, SEGMENTS, page_limit=PAGE_LIMIT, backoff=FAST_BACKOFF
            )
        finally:
            client.close()
    return stats, proxy


def test_a_segment_resumes_from_its_last_key_after_a_read_timeout(
    settings: Settings, ddb: Any, table: Table, table_name: str, tmp_path: Path
) -> None:
    clean, clean_proxy = _export(settings, table, table_name, tmp_path / "clean", set())
    assert clean.retried_pages == 0
    pages = {s: len(clean_proxy.segment_calls(s)) for s in range(SEGMENTS)}
    assert all(n >= 4 for n in pages.values()), pages  # several pages in each segment

    # the 3rd page of segment 0 is too slow twice in a row, the last page of segment 1 once
    slow = {(0, 3), (0, 4), (1, pages[1])}
    stats, proxy = _export(settings, table, table_name, tmp_path / "faulty", slow)

    assert len(proxy.held) == 3
    exported = _exported_keys(tmp_path / "faulty")
    assert len(exported) == len(set(exported)), "an item was exported twice"
    assert set(exported) == _table_keys(ddb, table_name, table.pk)
    assert len(exported) == ITEMS == stats.items
    # resumed, not restarted: each segment asked exactly its pages plus one per timeout...
    assert len(proxy.segment_calls(0)) == pages[0] + 2
    assert len(proxy.segment_calls(1)) == pages[1] + 1
    assert stats.pages == clean.pages and stats.retried_pages == 3
    # ...and the failed page again from the same, mid-segment, key; never from the start
    zero = proxy.segment_calls(0)
    assert zero[2] is not None and zero[2] == zero[3] == zero[4]
    assert zero.count(None) == 1
    one = proxy.segment_calls(1)
    assert one[-1] is not None and one[-1] == one[-2]
    assert one.count(None) == 1
    assert stats.to_dict()["items_per_s"] > 0


def test_a_missing_table_fails_fast_naming_it(
    settings: Settings, table: Table, tmp_path: Path
) -> None:
    name = f"{settings.table_prefix}NoSuchTable"
    with pytest.raises(TerminalError, match=name) as raised:
        _export(settings, table, name, tmp_path, set())
    assert "ResourceNotFoundException" in str(raised.value)


def test_a_page_that_keeps_timing_out_gives_up_naming_the_table(
    settings: Settings, table: Table, table_name: str, tmp_path: Path
) -> None:
    # every attempt at the 2nd page of segment 0 is too slow
    slow = {(0, n) for n in range(2, 2 + FAST_BACKOFF.max_attempts)}
    with pytest.raises(TransientError, match=f"{table_name}, segment 0/2, failed 4 times"):
        _export(settings, table, table_name, tmp_path, slow)
