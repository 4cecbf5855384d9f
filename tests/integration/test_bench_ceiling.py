"""What makes the bench's ceiling a ceiling, against the real DynamoDB Local: every body is
serialized and signed before the clock starts, the timed part only posts them over the
connections the untimed warm-up opened, and every item is written (the same work as the
loader's). Never a wall-clock limit: the figures belong to the bench."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.credentials import Credentials

from cutover.bench import ceiling
from cutover.load.batch_writer import BATCH_ITEMS, BatchWriter
from cutover.load.dynamo_http import DynamoHttp, Prepared
from cutover.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.dynamodb]

ITEMS = 1_000  # 40 batches


def _items(n: int = ITEMS) -> list[str]:
    return [json.dumps({"item_id": {"N": str(i)}, "name": {"S": f"item {i}"}}) for i in range(n)]


@pytest.fixture
def table(ddb: Any, settings: Settings) -> Iterator[str]:
    name = f"{settings.table_prefix}ceiling"
    yield name
    with contextlib.suppress(ddb.exceptions.ResourceNotFoundException):
        ddb.delete_table(TableName=name)


def _count(ddb: Any, table: str) -> int:
    return sum(p["Count"] for p in ddb.get_paginator("scan").paginate(TableName=table))


def test_bodies_are_signed_before_the_clock_starts_and_only_posted_after(
    settings: Settings, ddb: Any, table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    sign, send = DynamoHttp.request, DynamoHttp.send

    def signing(self: DynamoHttp, target: str, body: str | bytes) -> Prepared:
        events.append(f"sign {target}")
        return sign(self, target, body)

    def sending(self: DynamoHttp, request: Prepared) -> Any:
        batch = request.headers["X-Amz-Target"].endswith(".BatchWriteItem")
        events.append("send " + ("batch" if batch else "warm-up"))
        return send(self, request)

    real_clock = ceiling.time.perf_counter

    def clock() -> float:
        events.append("clock")
        return real_clock()

    monkeypatch.setattr(DynamoHttp, "request", signing)
    monkeypatch.setattr(DynamoHttp, "send", sending)
    monkeypatch.setattr(ceiling.time, "perf_counter", clock)
    attempt = ceiling.attempt(settings, ddb, table, _items(), threads=3)

    started = events.index("clock")
    before, after = events[:started], events[started + 1 : -1]
    assert events[-1] == "clock"  # the clock stops once, after the last reply
    batches = -(-ITEMS // BATCH_ITEMS)
    assert before.count("sign BatchWriteItem") == batches  # every body signed before
    assert before.count("send warm-up") == 3 and "send batch" not in before
    assert after == ["send batch"] * batches  # timed: posting only, nothing signed
    assert attempt.items == ITEMS and attempt.requests == batches
    assert _count(ddb, table) == ITEMS


@pytest.mark.parametrize("threads", [1, 4])
def test_the_timed_part_reuses_the_warm_up_connections(
    settings: Settings, ddb: Any, table: str, threads: int
) -> None:
    attempt = ceiling.attempt(settings, ddb, table, _items(), threads=threads)
    assert attempt.warmup_connections == threads and attempt.warmup_requests == threads
    assert attempt.connections == 0  # no connection opened while timed
    assert attempt.requests == -(-ITEMS // BATCH_ITEMS)
    assert _count(ddb, table) == ITEMS  # a fresh table, every item written


def test_each_attempt_starts_from_a_fresh_table(settings: Settings, ddb: Any, table: str) -> None:
    ceiling.attempt(settings, ddb, table, _items(), threads=2)
    ceiling.attempt(settings, ddb, table, _items(300), threads=2)
    assert _count(ddb, table) == 300


def test_the_loader_keeps_one_connection_per_worker(
    settings: Settings, ddb: Any, table: str
) -> None:
    ceiling.fresh_table(ddb, table)
    http = DynamoHttp(settings)
    stats = BatchWriter(http, workers=3).write(table, _items())
    assert stats.items == ITEMS and stats.requests == http.requests_sent == ITEMS // BATCH_ITEMS
    assert 1 <= http.connections_opened <= 3
    http.close()
    assert _count(ddb, table) == ITEMS


def test_requests_are_signed_by_botocore_with_the_current_credentials() -> None:
    """One signer per thread, built again when the credentials change (a rotated key)."""
    http = DynamoHttp(Settings.from_env({"CUTOVER_DYNAMODB_ENDPOINT": "http://127.0.0.1:8001"}))
    http._credentials = Credentials("AKIDFIRST", "secret")
    first = http.request("DescribeTable", '{"TableName":"t"}')
    again = http.request("DescribeTable", b'{"TableName":"t"}')
    http._credentials = Credentials("AKIDSECOND", "secret", "session/token+=")
    rotated = http.request("DescribeTable", '{"TableName":"t"}')
    assert first.body == again.body == b'{"TableName":"t"}'
    assert first.headers["X-Amz-Target"] == "DynamoDB_20120810.DescribeTable"
    assert "Credential=AKIDFIRST/" in again.headers["Authorization"]
    assert "X-Amz-Security-Token" not in again.headers
    assert "Credential=AKIDSECOND/" in rotated.headers["Authorization"]
    assert rotated.headers["X-Amz-Security-Token"] == "session/token+="
    assert "x-amz-security-token" in rotated.headers["Authorization"]
