"""Read a DynamoDB table from an ExportTableToPointInTime export instead of a Scan: ask for
the export (``request_export``), wait for it (``wait_export``), read its manifests
(``read_manifest``) and stream its items (``iter_export_items``). ``prefer_export`` picks
this or the Scan of ``cutover.validate.export``; ``recheck_keys`` reads items again, strongly
consistent, where the export (the table at one instant, ``ExportTime``) and MySQL disagree,
so that a write made near that instant is not counted as a difference.

The export's layout, as AWS documents it ("DynamoDB table export output format"), under
``s3://<S3Bucket>/<S3Prefix>/``::

    AWSDynamoDB/<ExportId>/manifest-summary.json  one JSON object: exportArn, exportTime,
                                                  itemCount, outputFormat,
                                                  manifestFilesS3Key, ...
    AWSDynamoDB/<ExportId>/manifest-files.json    JSON Lines, one object a data file:
                                                  itemCount, md5Checksum, etag, dataFileS3Key
    AWSDynamoDB/<ExportId>/data/<name>.json.gz    gzip, JSON Lines, one item a line:
                                                  {"Item": {<attribute>: {<type>: value}}}

An empty partition gets an empty data file. Only ``DYNAMODB_JSON`` exports are read (an Ion
export is refused); items come out as DynamoDB JSON, as a Scan returns them (numbers as
strings, binary values as base64 text).

Where the files are: the manifests name files by S3 key, relative to the bucket. Whether a
key includes S3Prefix is not to be relied on (the documentation's example leaves it out of
``manifestFilesS3Key`` while its ``s3Prefix`` is set), and a copy of the export may lie
elsewhere (another prefix, a local disk). So the Staging may be opened at any URL that holds
the export's folder (``s3://bucket/prefix``, ``file:///copy``), ``export_prefix`` being the
folder's path under it (``AWSDynamoDB/<ExportId>``). The one file whose place on the Staging
is known is manifest-files.json, in that folder, and the summary gives its key; a data file's
key is mapped onto the Staging by putting ``export_prefix`` in place of that key's folder.
A data file whose key lies outside that folder is an error: the documentation puts every
data file under it."""

from __future__ import annotations

import gzip
import json
import logging
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from botocore.exceptions import BotoCoreError, ClientError

from cutover.aws import translate_aws_error
from cutover.errors import ConfigError, CutoverError, ServiceError, TerminalError, TransientError
from cutover.extract.staging import Staging
from cutover.load.batch_writer import Backoff
from cutover.progress import Progress
from cutover.validate.canonical import canonical_item

log = logging.getLogger("cutover.validate")

EXPORT_FORMAT = "DYNAMODB_JSON"
SUMMARY_FILE = "manifest-summary.json"
FILES_MANIFEST = "manifest-files.json"
ATTRIBUTE_TYPES = frozenset({"S", "N", "B", "SS", "NS", "BS", "M", "L", "NULL", "BOOL"})

# A line is one item: DynamoDB caps an item at 400 KB, which its JSON (type tags, escapes,
# base64 for binary) may grow a few times over. A longer line means a damaged file, and the
# cap keeps such a file from being read into memory whole.
MAX_LINE_BYTES = 16 << 20
READ_BUFFER = 1 << 20

# An export reads no table capacity and sees the table at one instant, but it is a job AWS
# schedules: minutes of waiting even for a small table, and it is billed per GB. A Scan
# starts at once but reads the table's capacity (a consistent read a 4 KB, about 2.6 million
# for 10 GiB), competing with the live traffic of a cutover, and takes longer the larger the
# table. Below 10 GiB that load and that time are small next to the export's fixed wait;
# above it they grow while the wait does not. TableSizeBytes is refreshed about every six
# hours, which is precise enough for this.
EXPORT_MIN_BYTES = 10 << 30
PREFERENCES = ("auto", "export", "scan")

POLL_S = 30.0
# Exports take minutes for a small table and longer the larger it is; the bound keeps a stuck
# wait from holding a task forever. Running out of it does not stop the export: the
# TransientError says to wait again for the same ARN.
WAIT_TIMEOUT_S = 6 * 3600.0

BATCH_GET_KEYS = 100  # DynamoDB's limit of keys in one BatchGetItem
RECHECK_BACKOFF = Backoff(base=0.05, cap=5.0, max_attempts=10)

# DynamoDB error codes a later call may get past (botocore has already retried them).
_TRANSIENT_CODES = frozenset(
    {
        "LimitExceededException",
        "InternalServerError",
        "ThrottlingException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
    }
)


class DataFile(NamedTuple):
    """One data file: its path relative to the Staging's root, and the items the manifest
    says it holds."""

    key: str
    item_count: int


@dataclass(frozen=True)
class ExportManifest:
    """What manifest-summary.json and manifest-files.json say of one export."""

    export_arn: str
    export_time: datetime
    item_count: int
    data_files: tuple[DataFile, ...]
    folder: str

    @property
    def export_id(self) -> str:
        return self.export_arn.rsplit("/", 1)[-1]


def _join(*parts: str) -> str:
    return "/".join(p for p in parts if p)


def _read(staging: Staging, path: str, what: str, folder: str) -> bytes:
    try:
        return staging.read_bytes(path)
    except OSError as exc:
        try:
            missing = isinstance(exc, FileNotFoundError) or not staging.exists(path)
        except OSError:
            missing = False
        if missing:
            raise TerminalError(
                f"{what} {staging.display(path)} is missing: the export is unfinished or "
                f"failed, or {folder or '(the root)'!r} is not its folder "
                "(AWSDynamoDB/<ExportId> under the export's S3 prefix)"
            ) from None
        raise ServiceError(f"cannot read {staging.display(path)}: {exc}") from None


def _field(obj: dict[str, Any], name: str, where: str) -> str:
    value = obj.get(name)
    if not isinstance(value, str) or not value:
        raise TerminalError(f"{where}: {name} is missing or not a text ({value!r})")
    return value


def _count(obj: dict[str, Any], name: str, where: str) -> int:
    value = obj.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TerminalError(f"{where}: {name} is missing or not a count ({value!r})")
    return value


def _timestamp(obj: dict[str, Any], name: str, where: str) -> datetime:
    text = _field(obj, name, where)
    problem = f"{where}: {name} {text!r} is not an ISO 8601 time with a zone"
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise TerminalError(problem) from None
    if value.tzinfo is None:
        raise TerminalError(problem)
    return value


def _on_staging(key: str, key_folder: str, folder: str, where: str) -> str:
    """The Staging path of the bucket key ``key``, found by putting ``folder`` (on the Staging)
    in place of ``key_folder`` (the bucket key of the same folder)."""
    head = f"{key_folder}/" if key_folder else ""
    rest = key[len(head) :] if key.startswith(head) else ""
    if not rest or any(part in ("", ".", "..") for part in rest.split("/")):
        raise TerminalError(
            f"{where}: dataFileS3Key {key!r} is not a file under {key_folder!r}, the folder "
            "of manifestFilesS3Key: cutover reads data files only from the export's own folder"
        )
    return _join(folder, rest)


def read_manifest(staging: Staging, export_prefix: str) -> ExportManifest:
    """The manifests of the export in the folder ``export_prefix`` (``AWSDynamoDB/<ExportId>``)
    of ``staging``, with each data file's path mapped onto the Staging (see the module's
    docstring). A missing or malformed manifest, an Ion export, data files that do not add
    up to the summary's itemCount: TerminalError naming the file and what is wrong."""
    folder = export_prefix.strip("/")
    summary_path = _join(folder, SUMMARY_FILE)
    where = staging.display(summary_path)
    raw = _read(staging, summary_path, "export summary", folder)
    try:
        summary = json.loads(raw)
    except ValueError as exc:
        raise TerminalError(f"{where} is not JSON: {exc}") from None
    if not isinstance(summary, dict):
        raise TerminalError(f"{where} is not a JSON object")
    output_format = summary.get("outputFormat")
    if output_format != EXPORT_FORMAT:
        raise TerminalError(
            f"{where}: outputFormat is {output_format!r}; cutover reads only {EXPORT_FORMAT} "
            f"exports: request one with ExportFormat={EXPORT_FORMAT}"
        )
    export_arn = _field(summary, "exportArn", where)
    export_time = _timestamp(summary, "exportTime", where)
    item_count = _count(summary, "itemCount", where)
    files_key = _field(summary, "manifestFilesS3Key", where)
    key_folder, _, name = files_key.rpartition("/")
    if name != FILES_MANIFEST:
        raise TerminalError(
            f"{where}: manifestFilesS3Key {files_key!r} does not name a {FILES_MANIFEST}"
        )

    files_path = _join(folder, FILES_MANIFEST)
    files_where = staging.display(files_path)
    lines = _read(staging, files_path, "export file list", folder)
    data_files: list[DataFile] = []
    seen: set[str] = set()
    for number, line in enumerate(lines.splitlines(), 1):
        if not line.strip():
            continue
        line_where = f"{files_where} line {number}"
        try:
            entry = json.loads(line)
        except ValueError as exc:
            raise TerminalError(f"{line_where} is not JSON: {exc}") from None
        if not isinstance(entry, dict):
            raise TerminalError(f"{line_where} is not a JSON object")
        key = _field(entry, "dataFileS3Key", line_where)
        path = _on_staging(key, key_folder, folder, line_where)
        if path in seen:
            raise TerminalError(f"{line_where}: data file {path!r} is listed twice")
        seen.add(path)
        data_files.append(DataFile(path, _count(entry, "itemCount", line_where)))
    listed = sum(f.item_count for f in data_files)
    if listed != item_count:
        raise TerminalError(
            f"{files_where} lists {listed:,} items in {len(data_files)} files but {where} "
            f"says itemCount {item_count:,}: the export is incomplete, or the two manifests "
            "are of different exports"
        )
    return ExportManifest(export_arn, export_time, item_count, tuple(data_files), folder)


def _item(line: bytes, where: str, number: int) -> dict[str, Any]:
    try:
        obj = json.loads(line)
    except ValueError as exc:
        raise TerminalError(f"{where} line {number} is not JSON: {exc}") from None
    item = obj.get("Item") if isinstance(obj, dict) else None
    if not isinstance(item, dict) or not item:
        raise TerminalError(
            f'{where} line {number} is not an export line {{"Item": {{<attribute>: ...}}}}'
        )
    for name, value in item.items():
        kind = next(iter(value)) if isinstance(value, dict) and len(value) == 1 else None
        if kind not in ATTRIBUTE_TYPES:
            raise TerminalError(
                f"{where} line {number}: attribute {name!r} is not a DynamoDB attribute value "
                f"({{<type>: value}}, <type> one of {', '.join(sorted(ATTRIBUTE_TYPES))})"
            )
    return item


def _file_items(staging: Staging, path: str) -> Iterator[dict[str, Any]]:
    """The items of one gzip data file, a line at a time."""
    where = staging.display(path)
    try:
        # compression=None: pyarrow would gunzip a .gz by itself, with errors of its own
        raw = staging.fs.open_input_stream(
            staging.path(path), compression=None, buffer_size=READ_BUFFER
        )
    except FileNotFoundError:
        raise TerminalError(
            f"data file {where}, listed in the export's {FILES_MANIFEST}, is missing"
        ) from None
    except OSError as exc:
        raise ServiceError(f"cannot read {where}: {exc}") from None
    number = 0
    with raw, gzip.GzipFile(fileobj=raw, mode="rb") as lines:
        while True:
            try:
                line = lines.readline(MAX_LINE_BYTES)
            except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
                raise TerminalError(
                    f"{where} is not a whole gzip file (after line {number}): {exc}"
                ) from None
            except OSError as exc:
                raise ServiceError(f"cannot read {where} (after line {number}): {exc}") from None
            if not line:
                return
            number += 1
            if len(line) == MAX_LINE_BYTES and not line.endswith(b"\n"):
                raise TerminalError(
                    f"{where} line {number} is longer than {MAX_LINE_BYTES:,} bytes: "
                    "not an item of an export"
                )
            if line.strip():
                yield _item(line, where, number)


def iter_export_items(
    staging: Staging,
    manifest: ExportManifest,
    batch: int = 10_000,
    progress: Progress | None = None,
) -> Iterator[list[dict[str, Any]]]:
    """The export's items (DynamoDB JSON, the value of each line's ``Item``) in lists of at
    most ``batch``, read a line at a time: memory holds one list and one line, never a
    file. A bad line (error naming the file and the line), a damaged gzip file or a file
    whose item count differs from the manifest's raise TerminalError; items yielded before
    it were read, so the caller must drop the whole read, not only the rest."""
    if batch < 1:
        raise ValueError(f"batch must be at least 1, not {batch}")
    progress = progress or Progress(
        f"read export {manifest.export_id}", manifest.item_count, unit="items"
    )
    done = 0
    chunk: list[dict[str, Any]] = []
    for data_file in manifest.data_files:
        count = 0
        for item in _file_items(staging, data_file.key):
            chunk.append(item)
            count += 1
            if len(chunk) == batch:
                done += len(chunk)
                yield chunk
                chunk = []
                progress.update(done)
        if count != data_file.item_count:
            raise TerminalError(
                f"{staging.display(data_file.key)} holds {count:,} items but the export's "
                f"{FILES_MANIFEST} says {data_file.item_count:,}: the file is damaged or not "
                "this export's"
            )
    if chunk:
        done += len(chunk)
        yield chunk
    progress.done(done)


def _aws_error(
    exc: ClientError | BotoCoreError, doing: str, table: str = "<table>"
) -> CutoverError:
    """``exc``, raised by botocore for a DynamoDB call, as one of cutover's errors."""
    translated = translate_aws_error(exc)
    if translated is not None:
        return translated
    if not isinstance(exc, ClientError):
        return TerminalError(f"cannot {doing}: {exc}")
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    message = " ".join(str(error.get("Message") or "").split())
    detail = f"{code}: {message}" if message else code
    if code == "PointInTimeRecoveryUnavailableException":
        return ConfigError(
            f"cannot {doing}: the table has no point-in-time recovery (PITR), which an export "
            f"needs; enable it (aws dynamodb update-continuous-backups --table-name {table} "
            "--point-in-time-recovery-specification PointInTimeRecoveryEnabled=true) or "
            "read the table with the Scan path (preference scan)"
        )
    if code in ("TableNotFoundException", "ResourceNotFoundException"):
        return ConfigError(
            f"cannot {doing}: no such table ({detail}); check the table's name or ARN, the "
            "region and the account"
        )
    if code == "InvalidExportTimeException":
        return ConfigError(
            f"cannot {doing}: the export time is outside the table's point-in-time recovery "
            f"window ({detail}); choose a time within it, or none for now"
        )
    if code == "ExportConflictException":
        return TerminalError(
            f"cannot {doing}: another export conflicts with this one at the S3 destination "
            f"({detail}); use another S3 prefix, or wait for the other export"
        )
    if code == "ExportNotFoundException":
        return TerminalError(f"cannot {doing}: no such export ({detail}); check the ARN")
    if code in _TRANSIENT_CODES:
        return TransientError(f"cannot {doing} now ({detail}); retry later")
    return TerminalError(f"cannot {doing}: {detail}")


def request_export(
    client: Any,
    table_arn: str,
    s3_bucket: str,
    s3_prefix: str,
    export_time: datetime | None = None,
    *,
    client_token: str | None = None,
) -> str:
    """Asks DynamoDB to export the table ``table_arn`` as it was at ``export_time`` (an aware
    datetime within its PITR window; None: now) to ``s3://<s3_bucket>/<s3_prefix>/``, in
    DynamoDB JSON; returns the export's ARN. The same ``client_token`` makes a repeated
    request (a retried task) return the same export instead of starting another."""
    if export_time is not None and export_time.tzinfo is None:
        raise ValueError(f"export_time {export_time} has no time zone")
    params: dict[str, Any] = {
        "TableArn": table_arn,
        "S3Bucket": s3_bucket,
        "ExportFormat": EXPORT_FORMAT,
    }
    if s3_prefix.strip("/"):
        params["S3Prefix"] = s3_prefix.strip("/")
    if export_time is not None:
        params["ExportTime"] = export_time
    if client_token:
        params["ClientToken"] = client_token
    try:
        reply = client.export_table_to_point_in_time(**params)
    except (ClientError, BotoCoreError) as exc:
        table = table_arn.rsplit("/", 1)[-1]
        raise _aws_error(exc, f"export DynamoDB table {table_arn}", table) from None
    arn = reply.get("ExportDescription", {}).get("ExportArn")
    if not arn:
        raise TerminalError(f"DynamoDB answered the export of {table_arn} without an ExportArn")
    where = f"s3://{s3_bucket}/{params.get('S3Prefix', '')}"
    log.info("requested DynamoDB export %s of %s to %s", arn, table_arn, where)
    return str(arn)


def _log_wait(description: dict[str, Any], elapsed: float) -> None:
    log.info(
        "DynamoDB export %s: %s, %.0f s so far",
        description.get("ExportArn"), description.get("ExportStatus"), elapsed,
    )  # fmt: skip


def wait_export(
    client: Any,
    export_arn: str,
    poll: float = POLL_S,
    timeout: float = WAIT_TIMEOUT_S,
    progress: Callable[[dict[str, Any], float], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Asks for the export's state (DescribeExport) every ``poll`` seconds until it is
    COMPLETED, and returns its ExportDescription; ``progress`` gets each IN_PROGRESS
    description and the seconds waited (default: a log line). FAILED: TerminalError with
    FailureCode and FailureMessage; no PITR: ConfigError. A failed DescribeExport that a
    later one may get past (throttling) only costs a poll. After ``timeout`` seconds:
    TransientError (the export keeps running; wait again)."""
    report = progress or _log_wait
    started = clock()
    state = "unknown"
    while True:
        description: dict[str, Any] | None = None
        try:
            description = client.describe_export(ExportArn=export_arn)["ExportDescription"]
        except (ClientError, BotoCoreError) as exc:
            error = _aws_error(exc, f"describe DynamoDB export {export_arn}")
            if not isinstance(error, TransientError | ServiceError):
                raise error from None
            log.warning("%s; asking again in %.0f s", error, poll)
        if description is not None:
            state = str(description.get("ExportStatus"))
            if state == "COMPLETED":
                return description
            if state == "FAILED":
                code = description.get("FailureCode") or "?"
                message = description.get("FailureMessage") or "no message"
                if code == "PointInTimeRecoveryUnavailableException":
                    raise ConfigError(
                        f"DynamoDB export {export_arn} failed: {message}; enable point-in-time "
                        "recovery (PITR) on the table or read it with the Scan path "
                        "(preference scan)"
                    )
                raise TerminalError(
                    f"DynamoDB export {export_arn} failed: {code}: {message}; fix the cause "
                    f"(the S3 bucket {description.get('S3Bucket') or '?'}, its policy or KMS "
                    "key, the table) and request a new export"
                )
        elapsed = clock() - started
        if description is not None:
            report(description, elapsed)
        if elapsed >= timeout:
            raise TransientError(
                f"DynamoDB export {export_arn} is still {state} after {elapsed:.0f} s "
                f"(timeout {timeout:.0f} s); it keeps running: wait for the same ARN again"
            )
        sleep(min(poll, timeout - elapsed))


def export_folder(description: dict[str, Any]) -> str:
    """The export's folder (``AWSDynamoDB/<ExportId>``) relative to
    ``s3://<S3Bucket>/<S3Prefix>``, for ``read_manifest``: from ExportManifest (the key of
    manifest-summary.json) when DescribeExport gives it, else from the ExportArn's last part,
    the ExportId."""
    manifest = str(description.get("ExportManifest") or "")
    prefix = str(description.get("S3Prefix") or "").strip("/")
    folder, _, name = manifest.rpartition("/")
    if name == SUMMARY_FILE:
        if prefix and folder.startswith(f"{prefix}/"):
            folder = folder[len(prefix) + 1 :]
        return folder
    return f"AWSDynamoDB/{str(description['ExportArn']).rsplit('/', 1)[-1]}"


def _pitr_status(pitr: dict[str, Any] | None) -> str | None:
    """PointInTimeRecoveryStatus from DescribeContinuousBackups' reply, its
    ContinuousBackupsDescription or its PointInTimeRecoveryDescription."""
    if not pitr:
        return None
    inner = pitr.get("ContinuousBackupsDescription", pitr)
    inner = inner.get("PointInTimeRecoveryDescription", inner)
    status = inner.get("PointInTimeRecoveryStatus")
    return str(status) if status else None


def prefer_export(
    description: dict[str, Any], pitr: dict[str, Any] | None, preference: str
) -> bool:
    """Whether to read the table from an export (True) or a Scan (False). ``description`` is
    DescribeTable's reply (or its ``Table``), ``pitr`` DescribeContinuousBackups' (None:
    unknown, taken as no PITR). ``preference`` "scan" and "export" decide (export without
    PITR: ConfigError); "auto" exports when PITR is ENABLED and TableSizeBytes is above
    ``EXPORT_MIN_BYTES``."""
    table = description.get("Table", description)
    name = table.get("TableName") or "?"
    choice = (preference or "").strip().lower()
    if choice not in PREFERENCES:
        raise ConfigError(
            f"read preference {preference!r} for table {name} is not one of "
            f"{', '.join(PREFERENCES)}"
        )
    if choice == "scan":
        return False
    enabled = _pitr_status(pitr) == "ENABLED"
    if choice == "export":
        if not enabled:
            raise ConfigError(
                f"table {name} cannot be exported: point-in-time recovery (PITR) is "
                f"{_pitr_status(pitr) or 'unknown'}, and an export needs it ENABLED; enable it "
                f"(aws dynamodb update-continuous-backups --table-name {name} "
                "--point-in-time-recovery-specification PointInTimeRecoveryEnabled=true) or "
                "choose preference scan (or auto)"
            )
        return True
    return enabled and int(table.get("TableSizeBytes") or 0) > EXPORT_MIN_BYTES


def key_id(key: dict[str, Any]) -> str:
    """A key (its attributes in DynamoDB JSON) as text, numbers canonical: {"N": "1.50"} and
    {"N": "1.5"} are the same key."""
    return canonical_item(key)


def recheck_keys(
    client: Any,
    table: str,
    keys: Iterable[dict[str, Any]],
    consistent: bool = True,
    *,
    backoff: Backoff = RECHECK_BACKOFF,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, dict[str, Any] | None]:
    """The items at ``keys`` (each the key attributes in DynamoDB JSON) as the table holds
    them now, by ``key_id``; None for a key with no item. BatchGetItem, 100 keys a call,
    strongly consistent unless ``consistent`` is False; UnprocessedKeys are asked again
    after a backoff that starts over whenever a call makes progress. TransientError when
    ``backoff.max_attempts`` calls in a row return nothing."""
    wanted: dict[str, dict[str, Any]] = {}
    for key in keys:
        wanted.setdefault(key_id(key), key)  # a request with a key twice is refused
    found: dict[str, dict[str, Any] | None] = dict.fromkeys(wanted)
    names = {name for key in wanted.values() for name in key}
    todo = list(wanted.values())
    for start in range(0, len(todo), BATCH_GET_KEYS):
        pending = todo[start : start + BATCH_GET_KEYS]
        attempt = 0
        while pending:
            request = {table: {"Keys": pending, "ConsistentRead": consistent}}
            try:
                reply = client.batch_get_item(RequestItems=request)
            except (ClientError, BotoCoreError) as exc:
                raise _aws_error(exc, f"read {len(pending)} items of {table}", table) from None
            for item in reply.get("Responses", {}).get(table, []):
                found[key_id({n: item[n] for n in names if n in item})] = item
            left = reply.get("UnprocessedKeys", {}).get(table, {}).get("Keys", [])
            attempt = 0 if len(left) < len(pending) else attempt + 1
            if left and attempt >= backoff.max_attempts:
                raise TransientError(
                    f"DynamoDB left {len(left)} keys of {table} unread {attempt} times in a "
                    "row (throttled); retry later or raise the table's read capacity"
                )
            if left:
                sleep(backoff.delay(attempt + 1))
            pending = left
    return found
