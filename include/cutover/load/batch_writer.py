"""Parallel BatchWriteItem of pre-serialized items.

Items arrive as JSON text of DynamoDB AttributeValue maps (``{"PK":{"S":"USER#1"},…}``),
so a request body is string concatenation. Workers retry UnprocessedItems and throttling
with exponential backoff and full jitter; anything else a batch is refused for is terminal.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from cutover.errors import TerminalError, TransientError
from cutover.load.dynamo_http import RETRYABLE_CODES, DynamoHttp
from cutover.load.rate_limit import RateLimiter

BATCH_ITEMS = 25  # BatchWriteItem limit; 25 x 400 KB stays under the 16 MB request limit
_ALL_PROCESSED = b'{"UnprocessedItems":{}}'


@dataclass
class LoadStats:
    items: int = 0
    requests: int = 0
    retried_items: int = 0
    throttles: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def items_per_s(self) -> float:
        return self.items / self.seconds if self.seconds else 0.0

    @property
    def cpu_us_per_item(self) -> float:
        return self.cpu_seconds / self.items * 1e6 if self.items else 0.0

    def add(self, items: int = 0, requests: int = 0, retried: int = 0, throttles: int = 0) -> None:
        with self._lock:
            self.items += items
            self.requests += requests
            self.retried_items += retried
            self.throttles += throttles

    def merge(self, other: LoadStats) -> None:
        self.add(other.items, other.requests, other.retried_items, other.throttles)
        self.seconds += other.seconds
        self.cpu_seconds += other.cpu_seconds

    def to_dict(self) -> dict[str, float]:
        return {
            "items": self.items,
            "requests": self.requests,
            "retried_items": self.retried_items,
            "throttles": self.throttles,
            "seconds": round(self.seconds, 3),
            "items_per_s": round(self.items_per_s, 1),
            "cpu_seconds": round(self.cpu_seconds, 3),
            "cpu_us_per_item": round(self.cpu_us_per_item, 2),
        }


@dataclass(frozen=True)
class Backoff:
    base: float = 0.05
    cap: float = 5.0
    max_attempts: int = 12

    def delay(self, attempt: int) -> float:
        return random.uniform(0, min(self.cap, self.base * 2**attempt))


DEFAULT_BACKOFF = Backoff()


def batch_body(table: str, items: list[str]) -> str:
    puts = ",".join('{"PutRequest":{"Item":' + item + "}}" for item in items)
    return '{"RequestItems":{' + json.dumps(table) + ":[" + puts + "]}}"


def _batches(items: Iterable[str], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class BatchWriter:
    """Writes items to one table from ``workers`` threads; memory holds at most
    ``2 * workers`` batches in flight."""

    def __init__(
        self,
        http: DynamoHttp,
        *,
        workers: int = 4,
        rate: float | None = None,
        backoff: Backoff = DEFAULT_BACKOFF,
        progress: Callable[[LoadStats], None] | None = None,
        progress_every: float = 5.0,
    ) -> None:
        self.http = http
        self.workers = workers
        self.limiter = RateLimiter(rate)
        self.backoff = backoff
        self.progress = progress
        self.progress_every = progress_every

    def write(self, table: str, items: Iterable[str]) -> LoadStats:
        stats = LoadStats()
        started, cpu_started = time.perf_counter(), time.process_time()
        last_report = started
        in_flight: set[Future[None]] = set()
        with ThreadPoolExecutor(self.workers, thread_name_prefix="cutover-load") as pool:
            try:
                for batch in _batches(items, BATCH_ITEMS):
                    if len(in_flight) >= 2 * self.workers:
                        done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                        for future in done:
                            future.result()
                    in_flight.add(pool.submit(self._send, table, batch, stats))
                    now = time.perf_counter()
                    if self.progress and now - last_report >= self.progress_every:
                        stats.seconds = now - started
                        self.progress(stats)
                        last_report = now
                for future in in_flight:
                    future.result()
            except BaseException:
                for future in in_flight:
                    future.cancel()
                raise
        stats.seconds = time.perf_counter() - started
        stats.cpu_seconds = time.process_time() - cpu_started
        return stats

    def _send(self, table: str, batch: list[str], stats: LoadStats) -> None:
        pending = batch
        attempt = 0
        last = "UnprocessedItems in every reply"  # why the last attempt did not finish
        while pending:
            self.limiter.acquire(len(pending))
            try:
                reply = self.http.post("BatchWriteItem", batch_body(table, pending))
            except TransientError as exc:
                reply, last = None, str(exc)
            if reply is None:
                stats.add(requests=1, throttles=1)  # dropped or throttled: back off, again
            elif reply.status == 200:
                if reply.body == _ALL_PROCESSED:  # the usual answer: no need to parse it
                    stats.add(items=len(pending), requests=1)
                    return
                unprocessed = reply.json().get("UnprocessedItems", {}).get(table, [])
                if not unprocessed:
                    stats.add(items=len(pending), requests=1)
                    return
                stats.add(items=len(pending) - len(unprocessed), requests=1)
                pending = [json.dumps(r["PutRequest"]["Item"]) for r in unprocessed]
                stats.add(retried=len(pending))
            elif reply.error_code in RETRYABLE_CODES or reply.status >= 500:
                stats.add(requests=1, throttles=1)
                last = f"HTTP {reply.status} {reply.error_code}".rstrip()
            else:
                stats.add(requests=1)
                raise TerminalError(
                    f"DynamoDB refused a batch of {len(pending)} items for table {table!r}: "
                    f"{reply.error_code or reply.status} "
                    f"{reply.json().get('message', reply.body[:200])}"
                )
            attempt += 1
            if attempt >= self.backoff.max_attempts:
                raise TransientError(
                    f"{len(pending)} items for table {table!r} still unprocessed after "
                    f"{attempt} attempts at {self.http.endpoint} (last: {last}); if DynamoDB "
                    "throttled, the table may be under-provisioned: retry later"
                )
            time.sleep(self.backoff.delay(attempt))
