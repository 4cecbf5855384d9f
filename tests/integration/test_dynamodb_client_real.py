"""The loader's own DynamoDB client against the real DynamoDB Local, through a loopback proxy
(``tests/fault_proxy.py``) for what DynamoDB Local never does by itself: an endpoint with a
path prefix (the proxy serves it and forwards to "/"), a load balancer answering 503 with an
HTML page for the first calls. And the routing layer's DynamoDB store used from 50
short-lived threads: the sockets this process keeps open to DynamoDB, counted from /proc
(not from the client's own counters), are no more than the threads still alive."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from tests.fault_proxy import DynamoProxy

from cutover.bench.ceiling import fresh_table
from cutover.load.batch_writer import BatchWriter
from cutover.load.dynamo_http import DynamoHttp
from cutover.routing.dynamo_store import DynamoStore
from cutover.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.dynamodb]

HTML_503 = b"<html><head><title>503 Service Temporarily Unavailable</title></head></html>"


class FirstCallsFail(DynamoProxy):
    """Answers the first ``failures`` calls with a load balancer's 503 page, then forwards."""

    def __init__(self, upstream: str, failures: int) -> None:
        super().__init__(upstream)
        self.left = failures
        self.refused = 0

    def answer(self, target: str, headers: Mapping[str, str], body: bytes) -> tuple[int, bytes]:
        with self.lock:
            if self.left > 0:
                self.left -= 1
                self.refused += 1
                return 503, HTML_503
        return self.forward(headers, body)


@pytest.fixture
def table(settings: Settings, ddb: Any) -> Iterator[str]:
    name = f"{settings.table_prefix}client_real"
    fresh_table(ddb, name)
    yield name
    ddb.delete_table(TableName=name)


def _bodies(n: int) -> list[str]:
    return [json.dumps({"item_id": {"N": str(i)}, "v": {"S": "x"}}) for i in range(n)]


def _count(ddb: Any, table: str) -> int:
    return int(ddb.scan(TableName=table, Select="COUNT", ConsistentRead=True)["Count"])


def test_an_endpoint_with_a_path_is_posted_to_at_that_path(
    settings: Settings, ddb: Any, table: str
) -> None:
    assert settings.dynamodb_endpoint
    with DynamoProxy(settings.dynamodb_endpoint) as proxy:
        http = DynamoHttp(replace(settings, dynamodb_endpoint=f"{proxy.url}/dynamodb/v1"))
        try:
            stats = BatchWriter(http, workers=2).write(table, _bodies(80))
        finally:
            http.close()
    assert stats.items == 80 and _count(ddb, table) == 80
    assert proxy.paths and set(proxy.paths) == {"/dynamodb/v1"}, set(proxy.paths)


def test_a_load_completes_through_503_pages_from_a_load_balancer(
    settings: Settings, ddb: Any, table: str
) -> None:
    assert settings.dynamodb_endpoint
    with FirstCallsFail(settings.dynamodb_endpoint, failures=3) as proxy:
        http = DynamoHttp(replace(settings, dynamodb_endpoint=proxy.url))
        try:
            stats = BatchWriter(http, workers=1).write(table, _bodies(60))
        finally:
            http.close()
    assert proxy.refused == 3
    assert stats.items == 60 and _count(ddb, table) == 60


def _sockets_to(port: int) -> int:
    """Established TCP sockets of this process whose remote port is ``port``."""
    mine = set()
    for fd in Path("/proc/self/fd").iterdir():
        try:
            link = os.readlink(fd)
        except OSError:
            continue
        if link.startswith("socket:["):
            mine.add(link[8:-1])
    found = 0
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if remote_port == port and fields[3] == "01" and fields[9] in mine:
                found += 1
    return found


def test_fifty_short_lived_threads_leave_no_socket_behind(
    settings: Settings, ddb: Any, table: str
) -> None:
    assert settings.dynamodb_endpoint
    port = urlsplit(settings.dynamodb_endpoint).port or 80
    http = DynamoHttp(settings)
    store = DynamoStore(http, settings.table_prefix)  # the routing layer's DynamoDB store
    before = _sockets_to(port)
    errors: list[BaseException] = []

    def one_request() -> None:
        try:
            reply = store.call("GetItem", {"TableName": table, "Key": {"item_id": {"N": "1"}}})
            assert reply.status == 200, reply.body[:200]
        except BaseException as exc:  # reported below
            errors.append(exc)

    try:
        for _ in range(5):  # 5 waves of 10 threads, each thread gone before the next wave
            wave = [threading.Thread(target=one_request) for _ in range(10)]
            for t in wave:
                t.start()
            for t in wave:
                t.join()
        assert not errors, errors[:3]
        alive = sum(1 for t in threading.enumerate() if t.name.startswith("Thread-"))
        assert _sockets_to(port) - before <= alive, (_sockets_to(port), before, alive)
    finally:
        http.close()
