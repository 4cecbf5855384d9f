"""The bucketed parity's figures: on clean data (both sides equal), comparing every bucket by
its signature against comparing it item by item, and the peak memory of one bucket's
comparison (what a mapped bucket task needs).

Both sides are the same synthetic items, written by ``BucketWriter`` to a local storage
folder; each bucket is then compared in this process, once each way, and the peak of Python's
allocations during one bucket's comparison is taken with ``tracemalloc`` (Arrow's buffers are
outside it: the peak is of the comparison's Python objects, which grow with the bucket)."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from cutover.extract.staging import Staging
from cutover.validate.buckets import BucketWriter, choose_buckets, compare_bucket

BASE = "bench"


def _items(rows: int) -> list[tuple[str, str, str]]:
    out = []
    for i in range(rows):
        pk, sk = f"USER#{i // 4}", f"ORDER#{i:09d}"
        item = {"PK": {"S": pk}, "SK": {"S": sk}, "total": {"N": f"{i % 997}.{i % 100:02d}"},
                "status": {"S": ("paid", "shipped", "delivered")[i % 3]}}  # fmt: skip
        out.append((pk, sk, json.dumps(item, sort_keys=True, separators=(",", ":"))))
    return out


def run_bucket_bench(rows: int, per_bucket: int = 200_000) -> dict[str, Any]:
    """Figures for ``rows`` clean items in buckets of about ``per_bucket`` (at least 4)."""
    buckets = max(4, choose_buckets(rows, per_bucket))
    folder = Path(tempfile.mkdtemp(prefix="cutover-bench-buckets-"))
    try:
        staging = Staging(folder.as_uri())
        items = _items(rows)
        for side in ("expected", "actual"):
            with BucketWriter(staging, BASE, side, "w0", buckets) as writer:
                writer.write_rows(items)
        del items
        figures: dict[str, float] = {}
        for name, by_items in (("signature", False), ("items", True)):
            started = time.perf_counter()
            for bucket in range(buckets):
                result = compare_bucket(staging, BASE, bucket, items=by_items)
                if not result.equal:
                    raise AssertionError(f"bench bucket {bucket} differs on clean data")
            figures[name] = rows / (time.perf_counter() - started)
        tracemalloc.start()
        compare_bucket(staging, BASE, 0, items=True)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {
        "bucket_count": buckets,
        "bucket_signature_rows_per_s": figures["signature"],
        "bucket_items_rows_per_s": figures["items"],
        "bucket_signature_vs_items": figures["signature"] / figures["items"],
        "bucket_task_peak_mib": peak / (1 << 20),
    }
