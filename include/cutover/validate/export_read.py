"""The actual side of a validation read from a DynamoDB export (``ExportTableToPointInTime``
to the storage URL's bucket) instead of a Scan, and the recheck that keeps the export's
instant from being counted against the table.

An export reads no table capacity, which on AWS makes it the read path for large tables
(``prefer_export``: point-in-time recovery on and the table above a size, or asked for). It
is written under ``<storage URL>/exports/<table>/<tag>/`` and read by its manifests
(``cutover.validate.ddb_export``) into the same Parquet side a Scan writes, so parity is
computed the same way. The export is the table at one instant (``ExportTime``); the expected
side is derived from MySQL after it, so an item written in between differs without being
wrong: ``recheck`` reads every differing key again, strongly consistent, and a key whose item
now is what MySQL derives is not a difference."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.parquet as pq
from botocore.exceptions import BotoCoreError, ClientError

from cutover.contract.model import Table
from cutover.errors import ConfigError, TerminalError
from cutover.extract.staging import Staging
from cutover.validate.canonical import EntityClassifier, canonical_item
from cutover.validate.ddb_export import (
    PREFERENCES,
    SUMMARY_FILE,
    export_folder,
    iter_export_items,
    prefer_export,
    read_manifest,
    recheck_keys,
    request_export,
    wait_export,
)
from cutover.validate.export import SIDE_SCHEMA, side_rows
from cutover.validate.parity import TableParity, difference

log = logging.getLogger("cutover.validate")

READS = PREFERENCES  # auto, export, scan


def export_wanted(client: Any, table_name: str, staging_url: str, read: str) -> bool:
    """Whether to read ``table_name`` from an export: ``read`` "scan" never, "export" always
    (ConfigError when the storage URL is not ``s3://`` or the table has no point-in-time
    recovery), "auto" when ``prefer_export`` says so and the storage URL is ``s3://``."""
    if read not in READS:
        raise ConfigError(f"--read must be one of {', '.join(READS)}, not {read!r}")
    if read == "scan":
        return False
    if not staging_url.startswith("s3://"):
        if read == "export":
            raise ConfigError(
                f"an export of {table_name} is written to S3: the storage URL "
                f"(CUTOVER_STAGING) must be s3://..., not {staging_url}; use --read scan"
            )
        return False
    try:
        description = client.describe_table(TableName=table_name)
        pitr = client.describe_continuous_backups(TableName=table_name)
    except (ClientError, BotoCoreError) as exc:
        if read == "export":
            raise ConfigError(
                f"cannot tell whether {table_name} can be exported ({exc}); use --read scan"
            ) from None
        log.info("%s: %s; reading it with a Scan", table_name, exc)
        return False
    return prefer_export(description, pitr, read)


@dataclass(frozen=True)
class ExportRead:
    export_arn: str
    export_time: str
    items: int
    seconds: float
    folder: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "read": "export",
            "export_arn": self.export_arn,
            "export_time": self.export_time,
            "items": self.items,
            "seconds": round(self.seconds, 3),
            "folder": self.folder,
        }


def _bucket_and_prefix(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.netloc, parts.path.strip("/")


def _find_folder(staging: Staging, description: dict[str, Any]) -> str:
    """The export's folder under ``staging`` (opened at the export's S3 prefix): from the
    description's ExportManifest, else the folder whose summary names this export's ARN
    (DescribeExport gives ExportManifest only once the export completed, and emulators
    leave it out)."""
    if description.get("ExportManifest"):
        return export_folder(description)
    arn = description["ExportArn"]
    for name in staging.listdir("AWSDynamoDB"):
        summary = f"AWSDynamoDB/{name}/{SUMMARY_FILE}"
        if staging.exists(summary) and staging.read_json(summary).get("exportArn") == arn:
            return f"AWSDynamoDB/{name}"
    raise TerminalError(
        f"export {arn} completed, but no AWSDynamoDB/*/{SUMMARY_FILE} under "
        f"{staging.display()} names it; the export's files are missing or were moved"
    )


def read_export(
    client: Any,
    table: Table,
    table_name: str,
    staging_url: str,
    out_dir: Path,
    tag: str,
    *,
    poll: float = 10.0,
    sleep: Callable[[float], None] = time.sleep,
) -> ExportRead:
    """Export ``table_name`` under ``<staging_url>/exports/<table_name>/<tag>``, wait for it,
    and write its items to ``out_dir/part-00.parquet`` as a Scan's side. ``tag`` names the
    validation: asked again with the same tag (a retried task), DynamoDB returns the same
    export instead of starting another."""
    started = time.perf_counter()
    bucket, root = _bucket_and_prefix(staging_url)
    prefix = "/".join(p for p in (root, "exports", table_name, tag) if p)
    arn_of_table = client.describe_table(TableName=table_name)["Table"]["TableArn"]
    token = hashlib.sha256(f"{table_name}/{tag}".encode()).hexdigest()[:32]
    arn = request_export(client, arn_of_table, bucket, prefix, client_token=token)
    description = wait_export(client, arn, poll=poll, sleep=sleep)
    staging = Staging(f"s3://{bucket}/{prefix}")
    folder = _find_folder(staging, description)
    manifest = read_manifest(staging, folder)
    out_dir.mkdir(parents=True, exist_ok=True)
    classify = EntityClassifier(table)
    items = 0
    with pq.ParquetWriter(out_dir / "part-00.parquet", SIDE_SCHEMA) as writer:
        for batch in iter_export_items(staging, manifest):
            writer.write_table(pa.table(side_rows(batch, table, classify), schema=SIDE_SCHEMA))
            items += len(batch)
    where = f"s3://{bucket}/{prefix}/{folder}"
    seconds = time.perf_counter() - started
    read = ExportRead(arn, manifest.export_time.isoformat(), items, seconds, where)
    log.info("export %s: %s items from %s", table_name, f"{items:,}", read.folder)
    return read


def recheck(parity: TableParity, client: Any, table: Table, table_name: str,
            max_keys: int = 50) -> dict[str, int]:  # fmt: skip
    """Read every kept differing key of ``parity`` again (strongly consistent) and drop those
    whose item now is what MySQL derives (the expected side), adjusting the counts; the
    report's differences are listed again from those left. Returns {rechecked, resolved}."""
    if not parity.differing:
        return {"rechecked": 0, "resolved": 0}
    names = [table.pk, *([table.sk] if table.sk else [])]
    keys = []
    for _kind, _entity, _pk, _sk, expected, actual in parity.differing:
        item = json.loads(expected or actual or "{}")
        keys.append({name: item[name] for name in names if name in item})
    now = recheck_keys(client, table_name, keys)
    left = []
    resolved = 0
    for key, entry in zip(keys, parity.differing, strict=True):
        kind, entity, _pk, _sk, expected, _actual = entry
        current = now.get(canonical_item(key))
        if (canonical_item(current) if current else None) != expected:
            left.append(entry)
            continue
        resolved += 1
        stats = parity.entity(entity)
        if kind == "missing":  # written since the export
            stats.missing -= 1
            stats.actual += 1
        elif kind == "extra":  # deleted since the export
            stats.extra -= 1
            stats.actual -= 1
        else:
            stats.mismatched -= 1
    parity.differing = left
    parity.differences = [difference(*entry) for entry in left[:max_keys]]
    log.info("%s: %d of %d differences re-read and resolved (written near the export's "
             "instant)", table_name, resolved, len(keys))  # fmt: skip
    return {"rechecked": len(keys), "resolved": resolved}
