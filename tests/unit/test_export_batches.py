"""The export's structure, against an in-process stand-in for DynamoDB's Scan: it hands each
page to Parquet before it asks for the next (memory bounded by a page, not by the table), it
sizes TotalSegments from the item count, and it tells transient failures (asked again) from
terminal ones (no retry). The real Scan, and a real timeout, are in
tests/integration/test_export_resume.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from cutover.bench.synthetic import bench_contract
from cutover.errors import TerminalError, TransientError
from cutover.load.batch_writer import Backoff
from cutover.load.dynamo_http import Reply
from cutover.validate import export
from cutover.validate.export import export_segments, segments_for

NO_WAIT = Backoff(base=0.0, cap=0.0, max_attempts=3)


class FakeScan:
    """Items 0..n-1; item k is in segment k % TotalSegments; ``page`` items a page.
    ``replies`` are answered, one per Scan call, before the real pages."""

    def __init__(self, n: int, page: int, replies: list[Reply | Exception] | None = None):
        self.n = n
        self.page = page
        self.replies = list(replies or [])
        self.scans = 0
        self.on_scan: Any = None

    def post(self, target: str, body: str | bytes) -> Reply:
        request = json.loads(body)
        if target == "DescribeTable":
            return Reply(200, json.dumps({"Table": {"ItemCount": self.n}}).encode())
        self.scans += 1
        if self.on_scan:
            self.on_scan()
        if self.replies:
            reply = self.replies.pop(0)
            if isinstance(reply, Exception):
                raise reply
            return reply
        mine = [k for k in range(self.n) if k % request["TotalSegments"] == request["Segment"]]
        if "ExclusiveStartKey" in request:
            after = int(request["ExclusiveStartKey"]["item_id"]["N"])
            mine = [k for k in mine if k > after]
        chunk = mine[: self.page]
        answer: dict[str, Any] = {
            "Items": [{"item_id": {"N": str(k)}, "name": {"S": f"item {k}"}} for k in chunk]
        }
        if len(mine) > self.page:
            answer["LastEvaluatedKey"] = {"item_id": {"N": str(chunk[-1])}}
        return Reply(200, json.dumps(answer).encode())


def _error(status: int, code: str) -> Reply:
    body = {"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": "no"}
    return Reply(status, json.dumps(body).encode())


def test_each_page_is_written_before_the_next_is_asked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written: list[int] = []

    class RecordingWriter(pq.ParquetWriter):
        def write_table(self, table: Any, *args: Any, **kwargs: Any) -> None:
            written.append(table.num_rows)
            super().write_table(table, *args, **kwargs)

    monkeypatch.setattr(export.pq, "ParquetWriter", RecordingWriter)
    scan = FakeScan(95, page=10)
    held: list[int] = []  # items read but not yet written, each time a page is asked for
    scan.on_scan = lambda: held.append(10 * (scan.scans - 1) - sum(written))
    stats = export_segments(
        scan,  # type: ignore[arg-type]
        bench_contract().tables[0],
        "Items",
        tmp_path,
        segments=1,
        workers=1,
    )

    assert stats.items == 95 and stats.pages == 10
    assert written == [10] * 9 + [5]  # a batch per page, never the table
    assert set(held) == {0}
    (part,) = tmp_path.glob("*.parquet")
    meta = pq.ParquetFile(part).metadata
    assert meta.num_rows == 95 and meta.num_row_groups == 10


def test_every_item_once_over_many_segments(tmp_path: Path) -> None:
    scan = FakeScan(1_000, page=7)
    stats = export_segments(scan, bench_contract().tables[0], "Items", tmp_path, segments=13)  # type: ignore[arg-type]
    keys: list[str] = []
    for part in tmp_path.glob("*.parquet"):
        keys += pq.read_table(part, columns=["pk"]).column("pk").to_pylist()
    assert sorted(keys, key=int) == [str(k) for k in range(1_000)]
    assert len(list(tmp_path.glob("*.parquet"))) == export.DEFAULT_WORKERS  # a file a worker
    assert stats.to_dict()["segments"] == 13


def test_segments_follow_the_item_count() -> None:
    assert segments_for(None) == segments_for(0) == export.MIN_SEGMENTS
    assert segments_for(1_000_000) == 400
    assert segments_for(2_000_000) == 800
    assert segments_for(10**12) == export.MAX_SEGMENTS


@pytest.mark.parametrize(
    "failure",
    [
        _error(500, "InternalServerError"),
        _error(400, "ThrottlingException"),
        _error(400, "ProvisionedThroughputExceededException"),
        TransientError("DynamoDB did not answer: timed out"),
    ],
)
def test_transient_failures_ask_the_same_page_again(tmp_path: Path, failure: Any) -> None:
    scan = FakeScan(30, page=10, replies=[failure, failure])
    stats = export_segments(
        scan,  # type: ignore[arg-type]
        bench_contract().tables[0],
        "Items",
        tmp_path,
        segments=1,
        backoff=NO_WAIT,
    )
    assert stats.items == 30 and stats.pages == 3 and stats.retried_pages == 2


def test_terminal_errors_fail_at_once_naming_the_table(tmp_path: Path) -> None:
    scan = FakeScan(30, page=10, replies=[_error(400, "ValidationException")])
    with pytest.raises(TerminalError, match=r"DynamoDB table Items.*ValidationException"):
        export_segments(
            scan,  # type: ignore[arg-type]
            bench_contract().tables[0],
            "Items",
            tmp_path,
            segments=1,
            backoff=NO_WAIT,
        )
    assert scan.scans == 1


def test_a_page_failing_every_time_gives_up_naming_the_table(tmp_path: Path) -> None:
    scan = FakeScan(30, page=10, replies=[TransientError("timed out")] * 3)
    with pytest.raises(TransientError, match="Items, segment 0/1, failed 3 times"):
        export_segments(
            scan,  # type: ignore[arg-type]
            bench_contract().tables[0],
            "Items",
            tmp_path,
            segments=1,
            backoff=NO_WAIT,
        )
