"""The loader under faults that DynamoDB Local never produces by itself.

A faulty endpoint (``tests.fault_proxy``: a real HTTP server on loopback, in front of the
real DynamoDB Local) answers some BatchWriteItem calls with ThrottlingException and forwards
only part of others, returning the rest as UnprocessedItems — exactly what DynamoDB does under
load. Throttling cannot be produced for real on DynamoDB Local, hence the injector; every item
that arrives is written by DynamoDB Local.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any

import pytest
from tests.fault_proxy import DynamoProxy

from cutover.load.batch_writer import Backoff, BatchWriter
from cutover.load.dynamo_http import DynamoHttp
from cutover.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.dynamodb]


class FaultyDynamo(DynamoProxy):
    """Of the BatchWriteItem bodies it has not seen before, every 3rd is throttled and, of the
    others, every 2nd keeps back the last third of its items as UnprocessedItems. A body seen
    before is forwarded whole, so every batch gets through within a few attempts whatever the
    threads' interleaving: the test cannot fail on the loader's attempt limit by chance."""

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream)
        self.throttled = 0
        self.held_back = 0
        self._calls = itertools.count(1)
        self._seen: set[bytes] = set()

    def answer(self, target: str, headers: Mapping[str, str], body: bytes) -> tuple[int, bytes]:
        if target != "BatchWriteItem":
            return self.forward(headers, body)
        digest = hashlib.sha256(json.dumps(_keys(body)).encode()).digest()
        with self.lock:
            fresh = digest not in self._seen
            self._seen.add(digest)
            call = next(self._calls) if fresh else 1
            if fresh and call % 3 == 0:
                self.throttled += 1
                code = "com.amazonaws.dynamodb.v20120810#ThrottlingException"
                return 400, json.dumps({"__type": code, "message": "Rate exceeded"}).encode()
        held: dict[str, list[Any]] = {}
        if fresh and call % 2 == 0:
            request = json.loads(body)
            for table, writes in request["RequestItems"].items():
                keep = len(writes) - len(writes) // 3
                if keep < len(writes):
                    held[table] = writes[keep:]
                    request["RequestItems"][table] = writes[:keep]
                    with self.lock:
                        self.held_back += len(writes) - keep
            body = json.dumps(request).encode()
        status, payload = self.forward(headers, body)
        if held and status == 200:
            answer = json.loads(payload)
            answer.setdefault("UnprocessedItems", {}).update(held)
            payload = json.dumps(answer).encode()
        return status, payload


def _keys(body: bytes) -> list[Any]:
    """The items a BatchWriteItem body asks to write, as the fault injector tells bodies apart."""
    try:
        request = json.loads(body)
    except ValueError:
        return []
    return sorted(
        json.dumps(w["PutRequest"]["Item"], sort_keys=True)
        for writes in request.get("RequestItems", {}).values()
        for w in writes
    )


@pytest.fixture
def faulty(settings: Settings) -> Iterator[FaultyDynamo]:
    with FaultyDynamo(settings.dynamodb_endpoint or "") as proxy:
        yield proxy


@pytest.fixture
def table(ddb: Any, settings: Settings) -> Iterator[str]:
    name = f"{settings.table_prefix}faults"
    ddb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "PK", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    ddb.get_waiter("table_exists").wait(TableName=name)
    yield name
    ddb.delete_table(TableName=name)


def _scan_keys(ddb: Any, table: str) -> set[str]:
    keys: set[str] = set()
    for page in ddb.get_paginator("scan").paginate(TableName=table):
        keys.update(item["PK"]["S"] for item in page["Items"])
    return keys


def test_every_item_arrives_through_throttling_and_unprocessed_items(
    faulty: FaultyDynamo, table: str, settings: Settings, ddb: Any
) -> None:
    items = [json.dumps({"PK": {"S": f"K#{i}"}, "n": {"N": str(i)}}) for i in range(1_000)]
    http_client = DynamoHttp(replace(settings, dynamodb_endpoint=faulty.url))
    writer = BatchWriter(http_client, workers=4, backoff=Backoff(base=0.001, cap=0.02))
    stats = writer.write(table, items)
    http_client.close()

    assert faulty.throttled > 0 and faulty.held_back > 0
    assert stats.throttles == faulty.throttled
    assert stats.retried_items == faulty.held_back
    assert stats.items == 1_000
    assert _scan_keys(ddb, table) == {f"K#{i}" for i in range(1_000)}


def test_a_refused_batch_is_a_terminal_error_naming_the_table(
    table: str, settings: Settings
) -> None:
    from cutover.errors import TerminalError

    http_client = DynamoHttp(settings)
    bad = [json.dumps({"PK": {"N": "1"}})]  # key type mismatch: DynamoDB says ValidationException
    with pytest.raises(TerminalError, match=table):
        BatchWriter(http_client, workers=1).write(table, bad)
    http_client.close()
