"""The validation spread over bucket tasks (``cutover.validate.distributed``, the steps the
validate DAG maps) on the cut-down sample with three planted corruptions (a changed value, a
missing item, an extra item): the same differences, per entity counts and independent checks
as the one-process validation on the same data, and a clean table's buckets compared by
signature only."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from tests.dynamo_tables import drop_tables
from tests.helpers import sample_contract
from tests.integration.test_storage_s3 import sample  # noqa: F401  (the cut-down sample)

from cutover.settings import Settings
from cutover.stages import run_backfill, run_prepare, run_validate
from cutover.validate import distributed

pytestmark = [pytest.mark.integration, pytest.mark.mysql, pytest.mark.dynamodb]


@pytest.fixture
def migrated(sample: Settings, ddb: Any, tmp_path: Path) -> Iterator[tuple[Any, Settings]]:  # noqa: F811
    contract = sample_contract(tmp_path, "buckets")
    settings = replace(sample, table_prefix=f"{sample.table_prefix}{contract.name}_")
    run_prepare(contract, settings)
    run_backfill(contract, settings)
    yield contract, settings
    drop_tables(ddb, settings.table_prefix)


def _differences(report: dict[str, Any]) -> set[tuple[str, str, str, str, str | None]]:
    return {(t["table"], d["kind"], d["entity"], d["PK"], d.get("SK"))
            for t in report["tables"] for d in t["parity"]["differences"]}  # fmt: skip


def _entities(report: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (t["table"], e): f for t in report["tables"] for e, f in t["parity"]["entities"].items()
    }


def test_bucket_tasks_give_the_one_process_verdicts(
    migrated: tuple[Any, Settings], ddb: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    contract, settings = migrated
    monkeypatch.setenv("CUTOVER_VALIDATE_BUCKET_ITEMS", "50")  # several buckets a table
    users = settings.table_prefix + "Users"
    items = ddb.scan(TableName=users, ConsistentRead=True)["Items"]
    profiles = [i for i in items if i["SK"]["S"] == "PROFILE"]
    changed, missing = profiles[0], profiles[1]
    ddb.put_item(TableName=users, Item={**changed, "username": {"S": "planted"}})
    ddb.delete_item(TableName=users, Key={"PK": missing["PK"], "SK": missing["SK"]})
    ddb.put_item(TableName=users, Item={"PK": {"S": "USER#999999"}, "SK": {"S": "PROFILE"},
                                        "username": {"S": "ghost"}})  # fmt: skip

    started = distributed.start(settings)
    sides = [distributed.write_sides(contract, settings, t.table, started["run"])
             for t in contract.tables]  # fmt: skip
    work = distributed.bucket_work(sides)
    assert len(work) == sum(s["buckets"] for s in sides) >= len(contract.tables)
    compared = [distributed.compare_work(contract, settings, w) for w in work]
    by_buckets = distributed.assemble(contract, settings, started, sides, compared)

    one_process = run_validate(contract, settings)
    assert _differences(by_buckets) == _differences(one_process)
    assert {(k, p, s) for _, k, _, p, s in _differences(by_buckets)} == {
        ("mismatch", changed["PK"]["S"], "PROFILE"),
        ("missing", missing["PK"]["S"], "PROFILE"),
        ("extra", "USER#999999", "PROFILE"),
    }
    keys = ("expected", "actual", "missing", "extra", "mismatched")
    assert {k: {f: v[f] for f in keys} for k, v in _entities(by_buckets).items()} == {
        k: {f: v[f] for f in keys} for k, v in _entities(one_process).items()
    }
    assert by_buckets["success"] is False and one_process["success"] is False
    for mine, theirs in zip(by_buckets["tables"], one_process["tables"], strict=True):
        assert mine["independent_checks"] == theirs["independent_checks"], mine["table"]
        assert mine["parity"]["duplicate_keys_in_source"] == theirs["parity"][
            "duplicate_keys_in_source"]  # fmt: skip
    # the clean tables' buckets were compared by their signatures alone
    clean = [c for entry in compared for c in entry if c["table"] != "Users"]
    assert clean and all(c["equal"] and not c["items_compared"] for c in clean)
    # with fewer tasks allowed than there are buckets, groups of buckets: the same verdicts
    grouped = distributed.bucket_work(sides, max_tasks=len(sides) + 1)
    assert len(grouped) <= len(sides) + 1 < len(work)
    regrouped = [distributed.compare_work(contract, settings, w) for w in grouped]
    again = distributed.assemble(contract, settings, started, sides, regrouped)
    assert _differences(again) == _differences(by_buckets)
