"""`validate --read export` end to end against moto's server, which emulates DynamoDB's
ExportTableToPointInTime (it writes the data file, gzip DynamoDB JSON lines, but no
manifests): the test writes manifest-summary.json and manifest-files.json beside it in
AWS's documented format once the export completed. The cut-down sample is migrated into
moto's DynamoDB, three corruptions are planted (a changed value, a missing item, an extra
item), and the export path must name the same keys as the Scan path on the same data. A
fourth item is wrong in the export and rewritten right just after it (the export is the
table at one instant): the recheck reads it again and does not report it."""

from __future__ import annotations

import datetime as dt
import gzip
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import pytest
from tests.helpers import sample_contract
from tests.integration.test_storage_s3 import sample  # noqa: F401  (the cut-down sample)
from tests.s3_server import REGION, S3Storage

from cutover.settings import Settings
from cutover.stages import run_backfill, run_prepare, run_validate
from cutover.validate import export_read

pytestmark = [pytest.mark.integration, pytest.mark.mysql, pytest.mark.s3]


def _moto_dynamodb(storage: S3Storage) -> Any:
    return boto3.client("dynamodb", endpoint_url=storage.endpoint, region_name=REGION,
                        aws_access_key_id="testing", aws_secret_access_key="testing")  # fmt: skip


@pytest.fixture
def on_moto(
    sample: Settings,  # noqa: F811
    s3_storage_url: S3Storage,
    tmp_path: Path,
) -> Iterator[tuple[Any, Settings, Any]]:
    contract = sample_contract(tmp_path, "export")
    settings = replace(sample, staging=f"{s3_storage_url.url}/{contract.name}",
                       dynamodb_endpoint=s3_storage_url.endpoint,
                       table_prefix=f"{contract.name}_")  # fmt: skip
    run_prepare(contract, settings)
    assert run_backfill(contract, settings)["items_loaded"] > 0
    client = _moto_dynamodb(s3_storage_url)
    for table in contract.tables:
        client.update_continuous_backups(
            TableName=settings.table_prefix + table.table,
            PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
        )
    yield contract, settings, client
    for table in contract.tables:
        client.delete_table(TableName=settings.table_prefix + table.table)


def _write_manifests(storage: S3Storage, description: dict[str, Any]) -> None:
    """manifest-files.json and manifest-summary.json for the data file moto wrote, as AWS
    documents them ("DynamoDB table export output format")."""
    s3 = storage.client()
    prefix = description["S3Prefix"]
    listed = s3.list_objects_v2(Bucket=storage.bucket, Prefix=f"{prefix}/AWSDynamoDB/")
    (data_key,) = [o["Key"] for o in listed["Contents"] if "/data/" in o["Key"]]
    folder = data_key.split("/data/")[0]
    body = s3.get_object(Bucket=storage.bucket, Key=data_key)["Body"].read()
    count = sum(1 for line in gzip.decompress(body).splitlines() if line.strip())
    files_key = f"{folder}/manifest-files.json"
    line = {"itemCount": count, "md5Checksum": "", "etag": "", "dataFileS3Key": data_key}
    s3.put_object(Bucket=storage.bucket, Key=files_key, Body=json.dumps(line) + "\n")
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    summary = {
        "version": "2020-06-30",
        "exportArn": description["ExportArn"],
        "startTime": now,
        "endTime": now,
        "tableArn": description["TableArn"],
        "exportTime": now,
        "s3Bucket": storage.bucket,
        "s3Prefix": prefix,
        "s3SseAlgorithm": "AES256",
        "manifestFilesS3Key": files_key,
        "billedSizeBytes": len(body),
        "itemCount": count,
        "outputFormat": "DYNAMODB_JSON",
    }
    s3.put_object(Bucket=storage.bucket, Key=f"{folder}/manifest-summary.json",
                  Body=json.dumps(summary))  # fmt: skip


def _differences(report: dict[str, Any]) -> set[tuple[str, str, str, str | None]]:
    return {(t["table"], d["kind"], d["PK"], d.get("SK"))
            for t in report["tables"] for d in t["parity"]["differences"]}  # fmt: skip


def test_an_export_names_the_scan_s_differences_and_rechecks_a_rewritten_item(
    on_moto: tuple[Any, Settings, Any], s3_storage_url: S3Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    contract, settings, client = on_moto
    users = settings.table_prefix + "Users"
    items = client.scan(TableName=users, ConsistentRead=True)["Items"]
    profiles = [i for i in items if i["SK"]["S"] == "PROFILE"]
    changed, missing, rewritten = profiles[0], profiles[1], profiles[2]
    client.put_item(TableName=users, Item={**changed, "username": {"S": "planted"}})
    client.delete_item(TableName=users, Key={"PK": missing["PK"], "SK": missing["SK"]})
    extra = {"PK": {"S": "USER#999999"}, "SK": {"S": "PROFILE"}, "username": {"S": "ghost"}}
    client.put_item(TableName=users, Item=extra)
    client.put_item(TableName=users, Item={**rewritten, "username": {"S": "in the export"}})
    planted = {
        ("Users", "mismatch", changed["PK"]["S"], "PROFILE"),
        ("Users", "missing", missing["PK"]["S"], "PROFILE"),
        ("Users", "extra", "USER#999999", "PROFILE"),
    }

    real_wait = export_read.wait_export
    exported: list[str] = []

    def wait_then_rewrite(client_: Any, arn: str, **kwargs: Any) -> dict[str, Any]:
        description = real_wait(client_, arn, **{**kwargs, "poll": 0.2})
        _write_manifests(s3_storage_url, description)
        exported.append(description["TableArn"])
        if description["TableArn"].endswith(f"/{users}"):  # written right after the instant
            client.put_item(TableName=users, Item=rewritten)
        return description

    monkeypatch.setattr(export_read, "wait_export", wait_then_rewrite)
    by_export = run_validate(contract, settings, read="export")
    assert len(exported) == len(contract.tables)
    for table in by_export["tables"]:
        assert table["export"]["read"] == "export", table["export"]
    (users_report,) = [t for t in by_export["tables"] if t["table"] == "Users"]
    assert users_report["export"]["recheck"]["resolved"] == 1, users_report["export"]

    by_scan = run_validate(contract, settings, read="scan")
    assert {t["export"]["read"] for t in by_scan["tables"]} == {"scan"}
    assert _differences(by_scan) == planted
    assert _differences(by_export) == planted
    assert by_export["success"] is False and by_scan["success"] is False
    counts = {(t["table"], e): (f["missing"], f["extra"], f["mismatched"], f["actual"])
              for r in (by_export,) for t in r["tables"]
              for e, f in t["parity"]["entities"].items()}  # fmt: skip
    scanned = {(t["table"], e): (f["missing"], f["extra"], f["mismatched"], f["actual"])
               for t in by_scan["tables"] for e, f in t["parity"]["entities"].items()}  # fmt: skip
    assert counts == scanned
