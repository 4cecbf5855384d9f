"""Read a whole DynamoDB table with a parallel Scan (Segment/TotalSegments) into Parquet
files, one per segment, a page at a time: memory is bounded by the page size."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from cutover.contract.model import Table
from cutover.errors import TerminalError, TransientError
from cutover.load.batch_writer import DEFAULT_BACKOFF
from cutover.load.dynamo_http import RETRYABLE_CODES, DynamoHttp
from cutover.progress import Progress
from cutover.validate.canonical import EntityClassifier, canonical_item, key_text

SIDE_SCHEMA = pa.schema(
    [
        ("pk", pa.string()),
        ("sk", pa.string()),
        ("entity", pa.string()),
        ("canon", pa.large_string()),
        ("source_pk", pa.string()),
    ]
)


def _scan_page(http: DynamoHttp, body: dict[str, object]) -> dict[str, object]:
    for attempt in range(DEFAULT_BACKOFF.max_attempts):
        try:
            reply = http.post("Scan", json.dumps(body))
        except TransientError:
            reply = None
        if reply is not None and reply.status == 200:
            return reply.json()
        if reply is not None and reply.error_code not in RETRYABLE_CODES and reply.status < 500:
            raise TerminalError(
                f"Scan of {body['TableName']} failed: {reply.error_code} "
                f"{reply.json().get('message', '')}"
            )
        time.sleep(DEFAULT_BACKOFF.delay(attempt + 1))
    raise TransientError(f"Scan of {body['TableName']} keeps failing; retry later")


def export_table(
    http: DynamoHttp, table: Table, table_name: str, out_dir: Path, segments: int = 4
) -> int:
    """Writes ``out_dir/segment-NN.parquet``; returns the number of items."""
    out_dir.mkdir(parents=True, exist_ok=True)
    classify = EntityClassifier(table)
    progress = Progress(f"export {table_name}", None, unit="items")
    counted: list[int] = [0] * segments

    def run(segment: int) -> None:
        body: dict[str, object] = {
            "TableName": table_name,
            "Segment": segment,
            "TotalSegments": segments,
            "ConsistentRead": True,
        }
        with pq.ParquetWriter(out_dir / f"segment-{segment:02d}.parquet", SIDE_SCHEMA) as writer:
            while True:
                page = _scan_page(http, body)
                items = page.get("Items", [])
                rows: dict[str, list[Any]] = {k: [] for k in SIDE_SCHEMA.names}
                for item in items:  # type: ignore[union-attr]
                    pk = key_text(item.get(table.pk))
                    sk = key_text(item.get(table.sk)) if table.sk else None
                    rows["pk"].append(pk)
                    rows["sk"].append(sk)
                    rows["entity"].append(classify(pk, sk))
                    rows["canon"].append(canonical_item(item))
                    rows["source_pk"].append(None)
                if items:
                    writer.write_table(pa.table(rows, schema=SIDE_SCHEMA))
                    counted[segment] += len(items)  # type: ignore[arg-type]
                    progress.update(sum(counted))
                last = page.get("LastEvaluatedKey")
                if not last:
                    break
                body["ExclusiveStartKey"] = last

    with ThreadPoolExecutor(segments, thread_name_prefix="cutover-scan") as pool:
        list(pool.map(run, range(segments)))
    progress.done(sum(counted))
    return sum(counted)
