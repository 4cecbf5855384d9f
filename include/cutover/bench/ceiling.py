"""The load ceiling: the fastest this client can have DynamoDB write the bench's items.

The same items as cutover's loader, in the same BatchWriteItem bodies of 25, into a fresh
table each time, so DynamoDB does the same work; everything the loader does per request
besides posting is done before the clock starts: bodies serialized and signed (by the
loader's own signer, ``DynamoHttp.request``), one keep-alive connection per thread opened
and used once (a DescribeTable) untimed. Timed is only: each thread takes the next request's
bytes and posts them. The thread count is the best of a few tried in the same run.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cutover.errors import CutoverError
from cutover.load.batch_writer import BATCH_ITEMS, batch_body
from cutover.load.dynamo_http import DynamoHttp, Prepared, Reply
from cutover.settings import Settings

log = logging.getLogger("cutover.bench")

THREAD_COUNTS = (2, 4, 8, 16)
TRIAL_ITEMS = 20_000  # items per thread-count trial
_ALL_PROCESSED = b'{"UnprocessedItems":{}}'


class CeilingFailed(CutoverError):
    """A ceiling request was not fully written: a ceiling with failures is no ceiling."""


@dataclass(frozen=True)
class Attempt:
    """One timed run of the ceiling: ``connections`` and ``requests`` are what the timed part
    opened and sent (a ceiling reuses the connections the warm-up opened: 0 new ones)."""

    threads: int
    items: int
    requests: int
    connections: int
    seconds: float
    warmup_connections: int
    warmup_requests: int

    @property
    def items_per_s(self) -> float:
        return self.items / self.seconds if self.seconds else 0.0


@dataclass
class Ceiling:
    """Every attempt of a run; the ceiling is the best full-size one."""

    trials: list[Attempt] = field(default_factory=list)
    full: list[Attempt] = field(default_factory=list)

    @property
    def threads(self) -> int:
        return max(self.trials, key=lambda a: a.items_per_s).threads

    @property
    def items_per_s(self) -> float:
        return max(a.items_per_s for a in self.full)


def fresh_table(client: Any, name: str) -> None:
    """Deletes ``name`` if it exists and creates it again, empty (the bench's key schema)."""
    try:
        client.delete_table(TableName=name)
        client.get_waiter("table_not_exists").wait(TableName=name)
    except client.exceptions.ResourceNotFoundException:
        pass
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "item_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "item_id", "AttributeType": "N"}],
        BillingMode="PAY_PER_REQUEST",
    )
    client.get_waiter("table_exists").wait(TableName=name)


def signed_requests(http: DynamoHttp, table: str, items: Sequence[str]) -> list[Prepared]:
    """Each BatchWriteItem of ``items`` (as the loader batches them) signed (headers and
    body's bytes), ready to post."""
    return [
        http.request("BatchWriteItem", batch_body(table, list(items[i : i + BATCH_ITEMS])))
        for i in range(0, len(items), BATCH_ITEMS)
    ]


def post_all(
    http: DynamoHttp, table: str, requests: Sequence[Prepared], items: int, threads: int
) -> Attempt:
    """Posts ``requests`` (``items`` items in all) from ``threads`` threads, each on its own
    keep-alive connection, and times it; raises CeilingFailed unless every item was written."""
    warmup = http.request("DescribeTable", json.dumps({"TableName": table}))
    opened, sent = http.connections_opened, http.requests_sent
    warmed = threading.Barrier(threads + 1)  # every connection open and used once
    go = threading.Barrier(threads + 1)  # the clock has started
    position = itertools.count()  # next() on a count is atomic
    failures: list[str] = []

    def worker() -> None:
        try:
            reply = http.send(warmup)  # opens this thread's connection, untimed
            if reply.status != 200:
                failures.append(f"warm-up DescribeTable: {reply.status} {reply.body[:200]!r}")
        except Exception as exc:  # reported by the caller's thread
            failures.append(f"warm-up: {exc}")
        warmed.wait()
        go.wait()
        total = len(requests)
        send = http.send
        try:
            while (i := next(position)) < total:
                reply: Reply = send(requests[i])
                if reply.body != _ALL_PROCESSED:
                    failures.append(f"{reply.status} {reply.body[:200]!r}")
                    return
        except Exception as exc:  # reported by the caller's thread
            failures.append(str(exc))

    pool = [threading.Thread(target=worker, name=f"ceiling-{n}") for n in range(threads)]
    for t in pool:
        t.start()
    warmed.wait()
    opened_warm, sent_warm = http.connections_opened, http.requests_sent
    started = time.perf_counter()
    go.wait()
    for t in pool:
        t.join()
    seconds = time.perf_counter() - started
    if failures:
        raise CeilingFailed(f"the ceiling's requests failed: {failures[0]}")
    return Attempt(
        threads=threads,
        items=items,
        requests=http.requests_sent - sent_warm,
        connections=http.connections_opened - opened_warm,
        seconds=seconds,
        warmup_connections=opened_warm - opened,
        warmup_requests=sent_warm - sent,
    )


def attempt(
    settings: Settings, client: Any, table: str, items: Sequence[str], threads: int
) -> Attempt:
    """One ceiling run of ``items`` into a fresh ``table``, signed before it starts."""
    fresh_table(client, table)
    http = DynamoHttp(settings)
    try:
        requests = signed_requests(http, table, items)
        done = post_all(http, table, requests, len(items), threads)
    finally:
        http.close()
    log.info(
        "ceiling: %d threads, %d items in %.1f s, %.0f items/s",
        threads,
        done.items,
        done.seconds,
        done.items_per_s,
    )
    return done


def choose_threads(
    settings: Settings,
    client: Any,
    table: str,
    items: Sequence[str],
    ceiling: Ceiling,
    counts: Sequence[int] = THREAD_COUNTS,
    trial_items: int = TRIAL_ITEMS,
) -> int:
    """Tries each thread count on the first ``trial_items`` items (a fresh table each time)
    and returns the best; the trials are added to ``ceiling``."""
    sample = items[:trial_items]
    for threads in counts:
        ceiling.trials.append(attempt(settings, client, table, sample, threads))
    return ceiling.threads
