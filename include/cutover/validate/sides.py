"""Both sides of one table for a validation, in local Parquet: MySQL's expected items
(``cutover.validate.expected``) and DynamoDB's items, from a Scan (``cutover.validate.export``)
or from an export (``cutover.validate.export_read``). With a Scan both are read at once (two
servers, two threads); an export comes first, since MySQL's side must be derived after its
instant."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cutover.aws import dynamodb_client
from cutover.contract.model import Contract, Table
from cutover.load.dynamo_http import DynamoHttp
from cutover.settings import Settings
from cutover.validate.expected import expected_items
from cutover.validate.export import SCAN_TIMEOUT, ExportStats, export_segments
from cutover.validate.export_read import export_wanted, read_export


@dataclass
class Sides:
    expected_dir: Path
    actual_dir: Path
    export: dict[str, Any]  # how DynamoDB's side was read, and its figures
    items: int  # DynamoDB's items read
    rejected: dict[str, int]  # rows MySQL's side could not turn into items, by reason
    rejected_pks: dict[str, list[str]]  # their source keys, by entity
    exported: bool  # read from an export (its differences are worth reading again)
    client: Any  # the boto3 DynamoDB client it read with


def _scan(settings: Settings, table: Table, name: str, out: Path) -> ExportStats:
    http = DynamoHttp(settings, timeout=SCAN_TIMEOUT)
    try:
        return export_segments(http, table, name, out)
    finally:
        http.close()


def read_sides(contract: Contract, settings: Settings, table: Table, work: Path, read: str,
               tag: str) -> Sides:  # fmt: skip
    """Both sides of ``table`` under ``work``; ``read`` and ``tag`` as ``validate`` takes
    them (auto/export/scan, and the export's folder name)."""
    expected_dir, actual_dir = work / "expected", work / "actual"
    name = settings.table_prefix + table.table
    client = dynamodb_client(settings)
    if export_wanted(client, name, settings.staging, read):
        done = read_export(client, table, name, settings.staging, actual_dir, tag)
        rejected, rejected_pks = expected_items(contract, table, settings, expected_dir)
        return Sides(expected_dir, actual_dir, done.to_dict(), done.items, dict(rejected),
                     rejected_pks, True, client)  # fmt: skip
    with ThreadPoolExecutor(1, thread_name_prefix="cutover-validate-scan") as pool:
        scanning = pool.submit(_scan, settings, table, name, actual_dir)
        rejected, rejected_pks = expected_items(contract, table, settings, expected_dir)
        scanned = scanning.result()
    return Sides(expected_dir, actual_dir, {"read": "scan", **scanned.to_dict()}, scanned.items,
                 dict(rejected), rejected_pks, False, client)  # fmt: skip
