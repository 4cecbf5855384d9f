"""Reading a DynamoDB export (ExportTableToPointInTime) and driving one.

The export files are written here into tmp_path from the rules AWS documents ("DynamoDB
table export output format"): ``AWSDynamoDB/<ExportId>/manifest-summary.json`` (one JSON
object), ``manifest-files.json`` (JSON Lines, one object a data file) and gzip data files of
JSON Lines ``{"Item": {<attribute>: {<type>: value}}}``, an empty partition giving an empty
file. The DynamoDB clients are fakes: these are unit tests of parsing and control flow
(states, errors, retries), and AWS is not reachable from the test machine."""

from __future__ import annotations

import base64
import gzip
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from cutover.errors import ConfigError, ServiceError, TerminalError, TransientError
from cutover.extract.staging import Staging
from cutover.load.batch_writer import Backoff
from cutover.validate.ddb_export import (
    EXPORT_MIN_BYTES,
    DataFile,
    ExportManifest,
    export_folder,
    iter_export_items,
    key_id,
    prefer_export,
    read_manifest,
    recheck_keys,
    request_export,
    wait_export,
)

pytestmark = pytest.mark.unit

EXPORT_ID = "01700000000000-abcdef12"
TABLE_ARN = "arn:aws:dynamodb:eu-west-1:123456789012:table/orders"
EXPORT_ARN = f"{TABLE_ARN}/export/{EXPORT_ID}"
FOLDER = f"AWSDynamoDB/{EXPORT_ID}"
S3_PREFIX = "cutover/2024-05"

Item = dict[str, Any]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


ITEMS_A: list[Item] = [
    {"pk": {"S": "order#1"}, "sk": {"S": "v0"}, "total": {"N": "12.50"}, "paid": {"BOOL": True}},
    {
        "pk": {"S": "order#2 naïve 🙂"},
        "sk": {"S": "東京 — Zoë"},
        "blob": {"B": b64(b"\x00\xff\x10binary\n")},
        "blobs": {"BS": [b64(b"\x01"), b64(b"\xfe\xfd")]},
        "tiny": {"N": "-0.000123"},
        "huge": {"N": "123456789012345678901234567890.123456789"},
    },
    {
        "pk": {"S": "order#3"},
        "sk": {"S": "v0"},
        "lines": {
            "L": [
                {"M": {"sku": {"S": "A-1"}, "qty": {"N": "2"}, "note": {"NULL": True}}},
                {"L": [{"N": "1.0"}, {"SS": ["x", "y"]}, {"NS": ["1", "2.5"]}]},
            ]
        },
        "address": {"M": {"city": {"S": "Zürich"}, "geo": {"M": {"lat": {"N": "47.37"}}}}},
    },
]
ITEMS_D: list[Item] = [
    {"pk": {"S": "order#4"}, "sk": {"S": "v1"}, "quote": {"S": 'he said "hi"\\ \u2028'}},
    {"pk": {"S": "order#5"}, "sk": {"S": "v1"}, "empty": {"S": ""}, "flag": {"BOOL": False}},
]


def lines_of(items: list[Item]) -> bytes:
    return b"".join(
        json.dumps({"Item": item}, ensure_ascii=False).encode() + b"\n" for item in items
    )


def write_export(
    root: Path,
    files: dict[str, bytes | list[Item]],
    *,
    key_prefix: str = f"{S3_PREFIX}/",
    folder: str = FOLDER,
    counts: dict[str, int] | None = None,
    summary: dict[str, Any] | None = None,
) -> Path:
    """An export under ``root/folder``: ``files`` maps a data file's name to its items (gzip
    JSON Lines) or to the object's raw bytes. Keys in the manifests are ``key_prefix`` +
    ``AWSDynamoDB/<ExportId>/...``, as bucket-relative keys. ``counts`` overrides the item
    counts the manifest gives; ``summary`` overrides fields of the summary (None: left out)."""
    base = root / folder
    (base / "data").mkdir(parents=True)
    (base / "_started").write_bytes(b"")
    entries = []
    for name, content in files.items():
        if isinstance(content, bytes):
            data, count = content, 0
        else:
            data, count = gzip.compress(lines_of(content)), len(content)
        (base / "data" / name).write_bytes(data)
        entries.append(
            {
                "itemCount": (counts or {}).get(name, count),
                "md5Checksum": b64(b"0123456789abcdef"),
                "etag": "af83d6f217c19b8b0fff8023d8ca4716-1",
                "dataFileS3Key": f"{key_prefix}AWSDynamoDB/{EXPORT_ID}/data/{name}",
            }
        )
    (base / "manifest-files.json").write_text("".join(json.dumps(e) + "\n" for e in entries))
    document: dict[str, Any] = {
        "version": "2020-06-30",
        "exportArn": EXPORT_ARN,
        "startTime": "2024-05-02T10:00:01.123Z",
        "endTime": "2024-05-02T10:07:42.900Z",
        "tableArn": TABLE_ARN,
        "tableId": "12345a12-abcd-123a-ab12-1234abc12345",
        "exportTime": "2024-05-02T10:00:00.000Z",
        "s3Bucket": "cutover-exports",
        "s3Prefix": S3_PREFIX,
        "s3SseAlgorithm": "AES256",
        "s3SseKmsKeyId": None,
        "manifestFilesS3Key": f"{key_prefix}AWSDynamoDB/{EXPORT_ID}/manifest-files.json",
        "billedSizeBytes": 0,
        "itemCount": sum(e["itemCount"] for e in entries),
        "outputFormat": "DYNAMODB_JSON",
    }
    for name, value in (summary or {}).items():
        if value is None:
            document.pop(name, None)
        else:
            document[name] = value
    (base / "manifest-summary.json").write_text(json.dumps(document, indent=3))
    return base


def staging_at(path: Path) -> Staging:
    return Staging(f"file://{path}")


def standard_files() -> dict[str, bytes | list[Item]]:
    return {
        "a1b2c3.json.gz": ITEMS_A,
        "empty-partition.json.gz": gzip.compress(b""),
        "zero-bytes.json.gz": b"",
        "d4e5f6.json.gz": ITEMS_D,
    }


def read_all(staging: Staging, folder: str = FOLDER, batch: int = 10_000) -> list[Item]:
    manifest = read_manifest(staging, folder)
    return [item for chunk in iter_export_items(staging, manifest, batch) for item in chunk]


# --- manifests --------------------------------------------------------------------------


def test_manifest_fields_and_data_files_on_the_staging(tmp_path: Path) -> None:
    """The staging's root stands for s3://bucket/<S3Prefix>; the manifest's keys include the
    prefix, as a real export's do. Every data file is listed with its count, empty ones too,
    as paths relative to the staging's root."""
    write_export(tmp_path, standard_files())
    manifest = read_manifest(staging_at(tmp_path), FOLDER)
    assert manifest.export_arn == EXPORT_ARN
    assert manifest.export_id == EXPORT_ID
    assert manifest.export_time == datetime(2024, 5, 2, 10, 0, 0, tzinfo=UTC)
    assert manifest.export_time.tzinfo is not None
    assert manifest.item_count == 5
    assert manifest.data_files == (
        DataFile(f"{FOLDER}/data/a1b2c3.json.gz", 3),
        DataFile(f"{FOLDER}/data/empty-partition.json.gz", 0),
        DataFile(f"{FOLDER}/data/zero-bytes.json.gz", 0),
        DataFile(f"{FOLDER}/data/d4e5f6.json.gz", 2),
    )
    assert manifest.data_files[0] == (f"{FOLDER}/data/a1b2c3.json.gz", 3)


@pytest.mark.parametrize(
    ("key_prefix", "root_below", "folder"),
    [
        # keys without the S3 prefix, as in the documentation's example summary
        ("", "", FOLDER),
        # the staging opened at the bucket itself: the folder includes the S3 prefix
        (f"{S3_PREFIX}/", "", f"{S3_PREFIX}/{FOLDER}"),
        # a copy of the export somewhere else on a local disk, keys as AWS wrote them
        (f"{S3_PREFIX}/", "copies/run-7", FOLDER),
    ],
)
def test_keys_map_onto_the_staging_wherever_the_export_lies(
    tmp_path: Path, key_prefix: str, root_below: str, folder: str
) -> None:
    root = tmp_path / root_below
    write_export(root, standard_files(), key_prefix=key_prefix, folder=folder)
    assert read_all(staging_at(root), folder) == ITEMS_A + ITEMS_D


def test_items_come_out_as_written(tmp_path: Path) -> None:
    """Unicode, binary (base64 text), nested maps and lists, sets and numbers as strings are
    passed on as DynamoDB JSON, untouched, in file order; empty files give nothing."""
    write_export(tmp_path, standard_files())
    items = read_all(staging_at(tmp_path))
    assert items == ITEMS_A + ITEMS_D
    assert items[1]["pk"] == {"S": "order#2 naïve 🙂"}
    assert base64.b64decode(items[1]["blob"]["B"]) == b"\x00\xff\x10binary\n"
    assert items[1]["huge"] == {"N": "123456789012345678901234567890.123456789"}
    assert items[2]["lines"]["L"][1]["L"][2] == {"NS": ["1", "2.5"]}


def _summary_file(base: Path) -> Path:
    return base / "manifest-summary.json"


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda b: _summary_file(b).unlink(), ["manifest-summary.json", "is missing"]),
        (lambda b: _summary_file(b).write_text("{not json"), ["manifest-summary.json", "JSON"]),
        (lambda b: _summary_file(b).write_text("[1, 2]"), ["manifest-summary.json", "object"]),
        (lambda b: (b / "manifest-files.json").unlink(), ["manifest-files.json", "is missing"]),
        (
            lambda b: (b / "manifest-files.json").write_text('{"itemCount": 3,\n'),
            ["manifest-files.json line 1", "not JSON"],
        ),
    ],
)
def test_missing_or_unreadable_manifest(tmp_path: Path, damage: Any, expected: list[str]) -> None:
    base = write_export(tmp_path, standard_files())
    damage(base)
    with pytest.raises(TerminalError) as caught:
        read_manifest(staging_at(tmp_path), FOLDER)
    for text in expected:
        assert text in str(caught.value)


@pytest.mark.parametrize(
    ("summary", "expected"),
    [
        ({"outputFormat": "ION"}, ["outputFormat", "'ION'", "DYNAMODB_JSON"]),
        ({"outputFormat": None}, ["outputFormat", "None"]),
        ({"exportArn": None}, ["exportArn"]),
        ({"exportTime": "2024-05-02T10:00:00"}, ["exportTime", "zone"]),
        ({"exportTime": "yesterday"}, ["exportTime", "'yesterday'"]),
        ({"itemCount": "5"}, ["itemCount", "'5'"]),
        ({"itemCount": 6}, ["lists 5 items", "itemCount 6"]),
        ({"manifestFilesS3Key": None}, ["manifestFilesS3Key"]),
        ({"manifestFilesS3Key": "x/files.txt"}, ["manifestFilesS3Key", "x/files.txt"]),
    ],
)
def test_bad_summary_fields(tmp_path: Path, summary: dict[str, Any], expected: list[str]) -> None:
    write_export(tmp_path, standard_files(), summary=summary)
    with pytest.raises(TerminalError) as caught:
        read_manifest(staging_at(tmp_path), FOLDER)
    assert "manifest-summary.json" in str(caught.value)
    for text in expected:
        assert text in str(caught.value)


def test_data_file_outside_the_export_folder_is_refused(tmp_path: Path) -> None:
    base = write_export(tmp_path, standard_files())
    entries = [
        json.loads(line) for line in (base / "manifest-files.json").read_text().split("\n") if line
    ]
    entries[1]["dataFileS3Key"] = f"{S3_PREFIX}/AWSDynamoDB/other-export/data/x.json.gz"
    entries[2]["dataFileS3Key"] = f"{S3_PREFIX}/AWSDynamoDB/{EXPORT_ID}/data/../../../etc"
    for bad in (1, 2):
        kept = [e for i, e in enumerate(entries) if i in (0, bad)]
        (base / "manifest-files.json").write_text("\n".join(json.dumps(e) for e in kept))
        with pytest.raises(TerminalError) as caught:
            read_manifest(staging_at(tmp_path), FOLDER)
        assert "manifest-files.json line 2" in str(caught.value)
        assert entries[bad]["dataFileS3Key"] in str(caught.value)


def test_data_file_entry_without_count(tmp_path: Path) -> None:
    base = write_export(tmp_path, {"a.json.gz": ITEMS_A})
    entry = json.loads((base / "manifest-files.json").read_text())
    del entry["itemCount"]
    (base / "manifest-files.json").write_text(json.dumps(entry) + "\n")
    with pytest.raises(TerminalError, match=r"manifest-files\.json line 1: itemCount"):
        read_manifest(staging_at(tmp_path), FOLDER)


# --- data files -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b'{"Item": {"pk": {"S": "x"}}', "not JSON"),
        (b'{"pk": {"S": "x"}}', "not an export line"),
        (b'{"Item": {}}', "not an export line"),
        (b'["Item"]', "not an export line"),
        (b'{"Item": {"pk": "plain text"}}', "attribute 'pk'"),
        (b'{"Item": {"pk": {"S": "x", "N": "1"}}}', "attribute 'pk'"),
        (b'{"Item": {"pk": {"STRING": "x"}}}', "attribute 'pk'"),
        (b'{"Item": {"pk": {"S": "\xff\xfe"}}}', "not JSON"),
    ],
)
def test_bad_line_names_file_and_line(tmp_path: Path, line: bytes, expected: str) -> None:
    content = lines_of(ITEMS_A[:2]) + line + b"\n" + lines_of(ITEMS_A[2:])
    write_export(
        tmp_path,
        {"good.json.gz": ITEMS_D, "bad.json.gz": gzip.compress(content)},
        counts={"bad.json.gz": 3},
    )
    with pytest.raises(TerminalError) as caught:
        read_all(staging_at(tmp_path))
    message = str(caught.value)
    assert f"{FOLDER}/data/bad.json.gz line 3" in message
    assert expected in message


def test_item_count_differs_from_the_manifest(tmp_path: Path) -> None:
    write_export(
        tmp_path,
        {"a1b2c3.json.gz": ITEMS_A, "d4e5f6.json.gz": ITEMS_D},
        counts={"d4e5f6.json.gz": 4},
    )
    manifest = read_manifest(staging_at(tmp_path), FOLDER)
    assert manifest.item_count == 7  # the summary agrees with the file list, not the file
    with pytest.raises(TerminalError) as caught:
        read_all(staging_at(tmp_path))
    message = str(caught.value)
    assert "d4e5f6.json.gz holds 2 items" in message
    assert "says 4" in message


def test_damaged_gzip_and_missing_file(tmp_path: Path) -> None:
    whole = gzip.compress(lines_of(ITEMS_A * 50))
    write_export(
        tmp_path,
        {"cut.json.gz": whole[: len(whole) // 2], "gone.json.gz": ITEMS_D},
        counts={"cut.json.gz": 150},
    )
    staging = staging_at(tmp_path)
    manifest = read_manifest(staging, FOLDER)
    with pytest.raises(TerminalError, match=r"cut\.json\.gz is not a whole gzip file"):
        read_all(staging)
    (tmp_path / FOLDER / "data" / "gone.json.gz").unlink()
    only_gone = ExportManifest(
        manifest.export_arn, manifest.export_time, 2, manifest.data_files[1:], FOLDER
    )
    with pytest.raises(TerminalError, match=r"gone\.json\.gz, listed .* is missing"):
        list(iter_export_items(staging, only_gone))


def test_not_gzip_at_all(tmp_path: Path) -> None:
    write_export(tmp_path, {"plain.json.gz": lines_of(ITEMS_A)}, counts={"plain.json.gz": 3})
    with pytest.raises(TerminalError, match=r"plain\.json\.gz is not a whole gzip file"):
        read_all(staging_at(tmp_path))


@pytest.mark.parametrize("batch", [1, 4, 5, 7, 1000])
def test_batches_never_exceed_batch(tmp_path: Path, batch: int) -> None:
    """Batches fill across files (empty ones included) and only the last is short."""
    many = [{"pk": {"S": f"k{i}"}, "n": {"N": str(i)}} for i in range(23)]
    files: dict[str, bytes | list[Item]] = {
        "f1.json.gz": many[:9],
        "f2.json.gz": gzip.compress(b""),
        "f3.json.gz": many[9:10],
        "f4.json.gz": many[10:],
    }
    write_export(tmp_path, files)
    staging = staging_at(tmp_path)
    batches = list(iter_export_items(staging, read_manifest(staging, FOLDER), batch))
    assert all(1 <= len(b) <= batch for b in batches)
    assert all(len(b) == batch for b in batches[:-1])
    assert [item for b in batches for item in b] == many


def test_items_are_streamed_not_read_whole(tmp_path: Path) -> None:
    """The batches before a bad line at the end of a file come out before the error: the
    file is parsed as it is consumed, not read (or parsed) whole first."""
    many = [{"pk": {"S": f"k{i}"}} for i in range(25)]
    content = lines_of(many) + b"not json\n"
    write_export(tmp_path, {"big.json.gz": gzip.compress(content)}, counts={"big.json.gz": 25})
    staging = staging_at(tmp_path)
    batches = iter_export_items(staging, read_manifest(staging, FOLDER), batch=10)
    assert next(batches) == many[:10]
    assert next(batches) == many[10:20]
    with pytest.raises(TerminalError, match=r"big\.json\.gz line 26 is not JSON"):
        next(batches)


def test_batch_must_be_positive(tmp_path: Path) -> None:
    write_export(tmp_path, {"a.json.gz": ITEMS_A})
    staging = staging_at(tmp_path)
    with pytest.raises(ValueError, match="batch"):
        next(iter_export_items(staging, read_manifest(staging, FOLDER), batch=0))


# --- requesting and waiting -------------------------------------------------------------


def client_error(code: str, message: str = "", operation: str = "DescribeExport") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


class FakeExports:
    """Stands in for a botocore DynamoDB client: ``replies`` are DescribeExport's answers
    (a status, a whole description, or an exception to raise), one a call."""

    def __init__(self, replies: list[str | dict[str, Any] | Exception] | None = None) -> None:
        self.replies = list(replies or [])
        self.described: list[str] = []
        self.requested: list[dict[str, Any]] = []
        self.request_error: Exception | None = None

    def describe_export(self, ExportArn: str) -> dict[str, Any]:
        self.described.append(ExportArn)
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        if isinstance(reply, str):
            reply = {"ExportStatus": reply}
        return {"ExportDescription": {"ExportArn": ExportArn, "S3Bucket": "b", **reply}}

    def export_table_to_point_in_time(self, **params: Any) -> dict[str, Any]:
        self.requested.append(params)
        if self.request_error:
            raise self.request_error
        return {"ExportDescription": {"ExportArn": EXPORT_ARN, "ExportStatus": "IN_PROGRESS"}}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def __call__(self) -> float:
        return self.now


def test_wait_polls_until_completed() -> None:
    client = FakeExports(
        ["IN_PROGRESS", "IN_PROGRESS", {"ExportStatus": "COMPLETED", "ItemCount": 5}]
    )
    clock = FakeClock()
    seen: list[tuple[str, float]] = []
    description = wait_export(
        client,
        EXPORT_ARN,
        poll=20.0,
        timeout=600.0,
        progress=lambda d, s: seen.append((d["ExportStatus"], s)),
        sleep=clock.sleep,
        clock=clock,
    )
    assert description["ExportStatus"] == "COMPLETED"
    assert description["ItemCount"] == 5
    assert client.described == [EXPORT_ARN] * 3
    assert clock.slept == [20.0, 20.0]
    assert seen == [("IN_PROGRESS", 0.0), ("IN_PROGRESS", 20.0)]


def test_wait_reports_a_failed_export() -> None:
    failed = {
        "ExportStatus": "FAILED",
        "FailureCode": "S3AccessDenied",
        "FailureMessage": "Access Denied to bucket b",
    }
    client = FakeExports(["IN_PROGRESS", failed])
    clock = FakeClock()
    with pytest.raises(TerminalError) as caught:
        wait_export(client, EXPORT_ARN, poll=5.0, sleep=clock.sleep, clock=clock)
    message = str(caught.value)
    assert EXPORT_ARN in message
    assert "S3AccessDenied" in message
    assert "Access Denied to bucket b" in message
    assert not isinstance(caught.value, TransientError)
    assert clock.slept == [5.0]


def test_wait_gives_up_at_the_timeout_without_overshooting() -> None:
    client = FakeExports(["IN_PROGRESS"] * 10)
    clock = FakeClock()
    with pytest.raises(TransientError, match="still IN_PROGRESS after 50 s"):
        wait_export(client, EXPORT_ARN, poll=20.0, timeout=50.0, sleep=clock.sleep, clock=clock)
    assert clock.slept == [20.0, 20.0, 10.0]
    assert len(client.described) == 4


def test_wait_rides_out_a_throttled_describe() -> None:
    throttled = client_error("LimitExceededException", "Too many requests")
    client = FakeExports(["IN_PROGRESS", throttled, "COMPLETED"])
    clock = FakeClock()
    description = wait_export(client, EXPORT_ARN, poll=1.0, sleep=clock.sleep, clock=clock)
    assert description["ExportStatus"] == "COMPLETED"
    assert len(client.described) == 3


def test_wait_for_an_unknown_export_stops_at_once() -> None:
    client = FakeExports([client_error("ExportNotFoundException", "no export")])
    clock = FakeClock()
    with pytest.raises(TerminalError, match="no such export"):
        wait_export(client, EXPORT_ARN, sleep=clock.sleep, clock=clock)
    assert clock.slept == []


def test_no_pitr_is_a_settings_error() -> None:
    client = FakeExports()
    client.request_error = client_error(
        "PointInTimeRecoveryUnavailableException",
        "Point in time recovery is not enabled for table 'orders'",
        "ExportTableToPointInTime",
    )
    with pytest.raises(ConfigError) as caught:
        request_export(client, TABLE_ARN, "cutover-exports", S3_PREFIX)
    message = str(caught.value)
    assert TABLE_ARN in message
    assert "point-in-time recovery" in message
    assert "--table-name orders --point-in-time-recovery-specification" in message
    assert "Scan" in message

    failed = {
        "ExportStatus": "FAILED",
        "FailureCode": "PointInTimeRecoveryUnavailableException",
        "FailureMessage": "PITR is off",
    }
    clock = FakeClock()
    with pytest.raises(ConfigError, match="enable point-in-time recovery"):
        wait_export(FakeExports([failed]), EXPORT_ARN, sleep=clock.sleep, clock=clock)


def test_request_export_asks_for_dynamodb_json() -> None:
    client = FakeExports()
    at = datetime(2024, 5, 2, 10, 0, tzinfo=UTC)
    arn = request_export(
        client, TABLE_ARN, "cutover-exports", f"/{S3_PREFIX}/", at, client_token="run-42"
    )
    assert arn == EXPORT_ARN
    assert client.requested == [
        {
            "TableArn": TABLE_ARN,
            "S3Bucket": "cutover-exports",
            "S3Prefix": S3_PREFIX,
            "ExportFormat": "DYNAMODB_JSON",
            "ExportTime": at,
            "ClientToken": "run-42",
        }
    ]
    request_export(client, TABLE_ARN, "cutover-exports", "")
    assert "S3Prefix" not in client.requested[1]
    assert "ExportTime" not in client.requested[1]
    with pytest.raises(ValueError, match="time zone"):
        request_export(client, TABLE_ARN, "b", "p", datetime(2024, 5, 2, 10, 0))


@pytest.mark.parametrize(
    ("code", "error"),
    [
        ("TableNotFoundException", ConfigError),
        ("InvalidExportTimeException", ConfigError),
        ("ExportConflictException", TerminalError),
        ("LimitExceededException", TransientError),
        ("InternalServerError", TransientError),
        ("AccessDeniedException", ConfigError),
        ("ValidationException", TerminalError),
    ],
)
def test_request_export_errors(code: str, error: type[Exception]) -> None:
    client = FakeExports()
    client.request_error = client_error(code, "details", "ExportTableToPointInTime")
    with pytest.raises(error) as caught:
        request_export(client, TABLE_ARN, "cutover-exports", S3_PREFIX)
    if error is TerminalError:
        assert not isinstance(caught.value, ConfigError)
    if code != "AccessDeniedException":
        assert TABLE_ARN in str(caught.value)


def test_export_folder_from_the_description() -> None:
    described = {
        "ExportArn": EXPORT_ARN,
        "S3Prefix": S3_PREFIX,
        "ExportManifest": f"{S3_PREFIX}/AWSDynamoDB/{EXPORT_ID}/manifest-summary.json",
    }
    assert export_folder(described) == FOLDER
    assert export_folder({"ExportArn": EXPORT_ARN, "S3Prefix": S3_PREFIX}) == FOLDER


# --- export or scan ---------------------------------------------------------------------

PITR_ON = {
    "ContinuousBackupsDescription": {
        "ContinuousBackupsStatus": "ENABLED",
        "PointInTimeRecoveryDescription": {"PointInTimeRecoveryStatus": "ENABLED"},
    }
}
PITR_OFF = {
    "ContinuousBackupsDescription": {
        "ContinuousBackupsStatus": "ENABLED",
        "PointInTimeRecoveryDescription": {"PointInTimeRecoveryStatus": "DISABLED"},
    }
}


def described(size: int) -> dict[str, Any]:
    return {"Table": {"TableName": "orders", "TableSizeBytes": size, "ItemCount": 10}}


@pytest.mark.parametrize(
    ("size", "pitr", "preference", "export"),
    [
        (EXPORT_MIN_BYTES + 1, PITR_ON, "auto", True),
        (EXPORT_MIN_BYTES, PITR_ON, "auto", False),
        (EXPORT_MIN_BYTES * 50, PITR_OFF, "auto", False),
        (EXPORT_MIN_BYTES * 50, None, "auto", False),
        (0, PITR_ON, "export", True),
        (EXPORT_MIN_BYTES * 50, PITR_ON, "scan", False),
        (EXPORT_MIN_BYTES * 50, PITR_ON, " Auto ", True),
    ],
)
def test_prefer_export(
    size: int, pitr: dict[str, Any] | None, preference: str, export: bool
) -> None:
    assert prefer_export(described(size), pitr, preference) is export


def test_prefer_export_accepts_the_inner_descriptions() -> None:
    inner = PITR_ON["ContinuousBackupsDescription"]
    assert prefer_export(described(EXPORT_MIN_BYTES * 2)["Table"], inner, "auto") is True
    pitr = inner["PointInTimeRecoveryDescription"]
    assert prefer_export(described(EXPORT_MIN_BYTES * 2), pitr, "auto") is True


@pytest.mark.parametrize("pitr", [PITR_OFF, None])
def test_export_without_pitr_is_a_settings_error(pitr: dict[str, Any] | None) -> None:
    with pytest.raises(ConfigError) as caught:
        prefer_export(described(EXPORT_MIN_BYTES * 2), pitr, "export")
    message = str(caught.value)
    assert "orders" in message
    assert "point-in-time recovery" in message
    assert "scan" in message


def test_unknown_preference() -> None:
    with pytest.raises(ConfigError, match=r"'fast'.*auto, export, scan"):
        prefer_export(described(1), PITR_ON, "fast")


# --- reading keys again -----------------------------------------------------------------


class FakeBatchGet:
    """Stands in for BatchGetItem over ``items``: the keys listed in ``hold_back`` come back
    as UnprocessedKeys the first time they are asked for (``always``: every time)."""

    def __init__(self, items: list[Item], hold_back: set[str], always: bool = False) -> None:
        self.items = {key_id({"pk": i["pk"], "sk": i["sk"]}): i for i in items}
        self.hold_back = hold_back
        self.always = always
        self.calls: list[dict[str, Any]] = []

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(RequestItems)
        ((table, request),) = RequestItems.items()
        found, left = [], []
        for key in request["Keys"]:
            if key_id(key) in self.hold_back:
                left.append(key)
                continue
            if key_id(key) in self.items:
                found.append(self.items[key_id(key)])
        if not self.always:
            self.hold_back -= {key_id(k) for k in left}
        reply: dict[str, Any] = {"Responses": {table: found}, "UnprocessedKeys": {}}
        if left:
            reply["UnprocessedKeys"] = {table: {"Keys": left, "ConsistentRead": True}}
        return reply


def test_recheck_keys_in_batches_of_100_with_unprocessed_keys_asked_again() -> None:
    stored = [
        {"pk": {"S": f"p{i}"}, "sk": {"N": str(i)}, "v": {"S": f"value {i}"}} for i in range(150)
    ]
    keys = [{"pk": {"S": f"p{i}"}, "sk": {"N": f"{i}.0"}} for i in range(150)]
    keys += [{"pk": {"S": "gone"}, "sk": {"N": "1"}}, keys[0]]  # no item; a duplicate
    held = {key_id(keys[3]), key_id(keys[120])}
    client = FakeBatchGet(stored, set(held))
    slept: list[float] = []
    found = recheck_keys(client, "orders", keys, sleep=slept.append)

    assert len(found) == 151
    assert found[key_id({"pk": {"S": "gone"}, "sk": {"N": "1"}})] is None
    for i in (0, 3, 120, 149):
        assert found[key_id(keys[i])] == stored[i]
    assert all(len(call["orders"]["Keys"]) <= 100 for call in client.calls)
    assert all(call["orders"]["ConsistentRead"] is True for call in client.calls)
    assert [len(call["orders"]["Keys"]) for call in client.calls] == [100, 1, 51, 1]
    assert client.calls[1]["orders"]["Keys"] == [keys[3]]
    assert len(slept) == 2


def test_recheck_keys_gives_up_when_nothing_is_ever_read() -> None:
    stored = [{"pk": {"S": "p"}, "sk": {"N": "1"}}]
    key = {"pk": {"S": "p"}, "sk": {"N": "1"}}
    client = FakeBatchGet(stored, {key_id(key)}, always=True)
    slept: list[float] = []
    with pytest.raises(TransientError, match="1 keys of orders unread 3 times"):
        recheck_keys(
            client,
            "orders",
            [key],
            consistent=False,
            backoff=Backoff(base=0.0, cap=0.0, max_attempts=3),
            sleep=slept.append,
        )
    assert len(client.calls) == 3
    assert len(slept) == 2
    assert client.calls[0]["orders"]["ConsistentRead"] is False


def test_recheck_keys_errors() -> None:
    class Failing:
        def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
            raise client_error("ResourceNotFoundException", "no table", "BatchGetItem")

    with pytest.raises(ConfigError, match="no such table"):
        recheck_keys(Failing(), "orders", [{"pk": {"S": "p"}}])
    assert recheck_keys(Failing(), "orders", []) == {}


def test_key_id_is_canonical() -> None:
    assert key_id({"pk": {"N": "1.50"}, "sk": {"S": "a"}}) == key_id(
        {"sk": {"S": "a"}, "pk": {"N": "1.5"}}
    )
    assert key_id({"pk": {"N": "1"}}) != key_id({"pk": {"S": "1"}})


def test_unreadable_storage_is_a_service_error(tmp_path: Path) -> None:
    """A manifest that exists but cannot be read (here: a folder where the file should be)
    is a storage problem, not a missing export."""
    base = write_export(tmp_path, {"a.json.gz": ITEMS_A})
    _summary_file(base).unlink()
    _summary_file(base).mkdir()
    with pytest.raises(ServiceError) as caught:
        read_manifest(staging_at(tmp_path), FOLDER)
    assert "manifest-summary.json" in str(caught.value)
