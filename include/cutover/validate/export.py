"""Read a whole DynamoDB table with a parallel Scan (Segment/TotalSegments) into Parquet
files, one per worker thread, a page at a time: memory is bounded by the page size times the
number of workers, never by the table's size.

A Scan can be slow (DynamoDB Local answers a page of a table of millions of items in tens
of seconds), so a page may take long (``SCAN_TIMEOUT``) and a page that fails transiently
(timeout, reset connection, throttling, 5xx) is asked again from the same
``ExclusiveStartKey``: the segment resumes where it was, it never restarts. A page is written
to its worker's file only once it has been read whole, and the segment's key moves on only
after that, so no item is written twice and none is skipped. A segment gives up only after
``MAX_PAGE_ATTEMPTS`` failures in a row of the same page; an error that retrying cannot fix
(no such table, access denied, a malformed request) stops every segment at once."""

from __future__ import annotations

import json
import logging
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from cutover.contract.model import Table
from cutover.errors import TerminalError, TransientError
from cutover.load.batch_writer import Backoff
from cutover.load.dynamo_http import RETRYABLE_CODES, DynamoHttp
from cutover.progress import Progress
from cutover.validate.canonical import EntityClassifier, canonical_item, key_text

log = logging.getLogger("cutover.validate")

SIDE_SCHEMA = pa.schema(
    [
        ("pk", pa.string()),
        ("sk", pa.string()),
        ("entity", pa.string()),
        ("canon", pa.large_string()),
        ("source_pk", pa.string()),
    ]
)

# Seconds one Scan page may take before it counts as failed: sized for a slow server (a page
# of a 250,000-item segment took DynamoDB Local 15-54 s). A page given up on keeps the server
# busy, so a short timeout only adds load.
SCAN_TIMEOUT = 300.0
# TotalSegments is sized from the table's item count, a few thousand items per segment:
# DynamoDB Local's Scan costs time in proportion to the size of the segment it serves a page
# of, so with a fixed number of segments a page slows down as the table grows. At 1,000,000
# items, 4 segments read 1,000 items/s with pages of 15-54 s (the old 30 s timeout failed
# most of them); 100 segments 7,000 items/s (slowest page 4 s); 400 segments 7,400 items/s
# (slowest page 1.9 s), where the client's parsing is the limit. On AWS more segments only
# spread the reads. ``DEFAULT_WORKERS`` threads scan them, each segment whole, into one
# Parquet file per thread.
ITEMS_PER_SEGMENT = 2_500
MIN_SEGMENTS = 4
MAX_SEGMENTS = 1_000_000  # DynamoDB's limit
DEFAULT_WORKERS = 4
# Failures in a row of one page before its segment, and so the export, gives up. The count
# starts again after every page read, so a long export survives any number of isolated
# failures.
MAX_PAGE_ATTEMPTS = 8
PAGE_BACKOFF = Backoff(base=0.5, cap=30.0, max_attempts=MAX_PAGE_ATTEMPTS)


def segments_for(item_count: int | None) -> int:
    """TotalSegments for a table of about ``item_count`` items."""
    wanted = -(-(item_count or 0) // ITEMS_PER_SEGMENT)
    return max(MIN_SEGMENTS, min(MAX_SEGMENTS, wanted))


@dataclass
class ExportStats:
    """What one export read: items, Scan pages read, pages asked again after a transient
    failure, how long it took, and the longest a page took (retries included)."""

    table: str
    segments: int
    items: int = 0
    pages: int = 0
    retried_pages: int = 0
    seconds: float = 0.0
    slowest_page_s: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def items_per_s(self) -> float:
        return self.items / self.seconds if self.seconds > 0 else 0.0

    def page_read(self, items: int, seconds: float) -> int:
        with self._lock:
            self.items += items
            self.pages += 1
            self.slowest_page_s = max(self.slowest_page_s, seconds)
            return self.items

    def page_retried(self) -> None:
        with self._lock:
            self.retried_pages += 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "items": self.items,
            "pages": self.pages,
            "retried_pages": self.retried_pages,
            "segments": self.segments,
            "seconds": round(self.seconds, 2),
            "items_per_s": round(self.items_per_s, 1),
            "slowest_page_s": round(self.slowest_page_s, 2),
        }


class _Stopped(Exception):
    """Another segment failed: this one stops between pages."""


def _item_count(http: DynamoHttp, table_name: str) -> int | None:
    """DynamoDB's item count (refreshed about every six hours on AWS, exact on DynamoDB
    Local), for the progress line's ETA only; None when unknown."""
    try:
        reply = http.post("DescribeTable", json.dumps({"TableName": table_name}))
    except TransientError:
        return None
    if reply.status != 200:
        return None
    count = reply.json().get("Table", {}).get("ItemCount")
    return int(count) if count else None


def _scan_page(
    http: DynamoHttp,
    body: dict[str, Any],
    stats: ExportStats,
    stop: threading.Event,
    backoff: Backoff = PAGE_BACKOFF,
) -> dict[str, Any]:
    """One page of one segment, asked again (same ``ExclusiveStartKey``) after a transient
    failure."""
    where = f"segment {body['Segment']}/{body['TotalSegments']}"
    problem = ""
    for attempt in range(1, backoff.max_attempts + 1):
        if stop.is_set():
            raise _Stopped
        try:
            reply = http.post("Scan", json.dumps(body))
        except TransientError as exc:
            problem = str(exc)
        else:
            if reply.status == 200:
                try:
                    return reply.json()
                except ValueError:
                    problem = "a reply that is not JSON"
            else:
                try:
                    code = reply.error_code
                    answer = reply.json()
                    message = str(answer.get("message") or answer.get("Message") or "")
                except ValueError:  # not DynamoDB's JSON: a proxy's or a load balancer's page
                    code, message = "", ""
                if code not in RETRYABLE_CODES and reply.status < 500:
                    raise TerminalError(
                        f"cannot export DynamoDB table {stats.table}: Scan failed with "
                        f"HTTP {reply.status} {code} {message}".rstrip()
                    )
                problem = f"HTTP {reply.status} {code}".rstrip()
        if attempt == backoff.max_attempts:
            break
        stats.page_retried()
        delay = backoff.delay(attempt)
        log.warning(
            "Scan of %s, %s: %s; asking the same page again in %.1f s (attempt %d of %d)",
            stats.table, where, problem, delay, attempt + 1, backoff.max_attempts,
        )  # fmt: skip
        if stop.wait(delay):
            raise _Stopped
    raise TransientError(
        f"Scan of DynamoDB table {stats.table}, {where}, failed {backoff.max_attempts} times "
        f"in a row ({problem}) after {stats.items:,} items; retry later"
    )


def side_rows(
    items: list[dict[str, Any]], table: Table, classify: EntityClassifier
) -> dict[str, list[Any]]:
    """The actual side's columns (SIDE_SCHEMA) for ``items`` in DynamoDB JSON."""
    rows: dict[str, list[Any]] = {k: [] for k in SIDE_SCHEMA.names}
    for item in items:
        pk = key_text(item.get(table.pk))
        sk = key_text(item.get(table.sk)) if table.sk else None
        rows["pk"].append(pk)
        rows["sk"].append(sk)
        rows["entity"].append(classify(pk, sk))
        rows["canon"].append(canonical_item(item))
        rows["source_pk"].append(None)
    return rows


def export_segments(
    http: DynamoHttp,
    table: Table,
    table_name: str,
    out_dir: Path,
    segments: int | None = None,
    *,
    workers: int = DEFAULT_WORKERS,
    page_limit: int | None = None,
    backoff: Backoff = PAGE_BACKOFF,
) -> ExportStats:
    """Writes ``out_dir/part-NN.parquet``, one file per worker thread and one row group per
    Scan page; returns what was read. ``segments`` defaults to ``segments_for`` the table's
    item count; ``workers`` threads scan them, each segment whole, one after another.
    ``page_limit`` caps the items of a page (the default is DynamoDB's 1 MB page)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    classify = EntityClassifier(table)
    count = _item_count(http, table_name)
    total = segments or segments_for(count)
    stats = ExportStats(table_name, total)
    progress = Progress(f"export {table_name}", count, unit="items")
    stop = threading.Event()
    todo = iter(range(total))
    todo_lock = threading.Lock()
    started = time.perf_counter()

    def next_segment() -> int | None:
        with todo_lock:
            return next(todo, None)

    def scan_segment(segment: int, writer: pq.ParquetWriter) -> None:
        body: dict[str, Any] = {
            "TableName": table_name,
            "Segment": segment,
            "TotalSegments": total,
            "ConsistentRead": True,
        }
        if page_limit:
            body["Limit"] = page_limit
        while True:
            asked = time.perf_counter()
            page = _scan_page(http, body, stats, stop, backoff)
            took = time.perf_counter() - asked
            items = page.get("Items", [])
            if items:
                writer.write_table(pa.table(side_rows(items, table, classify), schema=SIDE_SCHEMA))
            progress.update(stats.page_read(len(items), took))
            last = page.get("LastEvaluatedKey")
            if not last:
                return
            body["ExclusiveStartKey"] = last  # only once the page is written

    def run(worker: int) -> None:
        with pq.ParquetWriter(out_dir / f"part-{worker:02d}.parquet", SIDE_SCHEMA) as writer:
            while (segment := next_segment()) is not None:
                scan_segment(segment, writer)

    with ThreadPoolExecutor(workers, thread_name_prefix="cutover-scan") as pool:
        futures = [pool.submit(run, w) for w in range(min(workers, total))]
        wait(futures, return_when=FIRST_EXCEPTION)
        stop.set()  # after a failure, the other workers stop before their next page
    errors = [e for f in futures if (e := f.exception()) and not isinstance(e, _Stopped)]
    if errors:
        raise errors[0]
    stats.seconds = time.perf_counter() - started
    progress.done(stats.items)
    log.info(
        "export %s: %s items in %d pages (%d asked again, slowest %.1f s) over %d segments, "
        "%.0f s, %.0f items/s",
        table_name, f"{stats.items:,}", stats.pages, stats.retried_pages, stats.slowest_page_s,
        total, stats.seconds, stats.items_per_s,
    )  # fmt: skip
    return stats
