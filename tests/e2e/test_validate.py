"""Parity validation after a clean backfill of the sample: it passes; then each corruption,
made directly in DynamoDB, fails validation naming the exact key, and `reconcile --repair`
makes validation pass again."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from tests.helpers import user_of_order

from cutover.aws import dynamodb_client
from cutover.backfill.driver import backfill
from cutover.contract.load import load_contract
from cutover.contract.model import Contract
from cutover.prepare import prepare
from cutover.sample.generator import load_sample
from cutover.settings import PROJECT_ROOT, Settings
from cutover.validate.reconcile import reconcile
from cutover.validate.run import validate

pytestmark = [pytest.mark.e2e, pytest.mark.mysql, pytest.mark.dynamodb]


@pytest.fixture(scope="module")
def world(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Contract, Settings]]:
    from cutover.db import connect, query

    name = f"cutover_validate_{settings.table_prefix.strip('_')}"
    world = replace(
        settings,
        mysql=settings.mysql.with_database(name),
        staging=(tmp_path_factory.mktemp("staging")).as_uri(),
        table_prefix=f"{settings.table_prefix}val_",
    )
    load_sample(world, scale=1)
    contract = load_contract(PROJECT_ROOT / "contracts" / "ecommerce.json")
    prepare(contract, world)
    backfill(contract, world, partitions=2, workers=4)
    yield contract, world
    client = dynamodb_client(world)
    for table in contract.tables:
        client.delete_table(TableName=world.table_prefix + table.table)
    client.delete_table(TableName=world.table_prefix + "cutover_control")
    conn = connect(settings.mysql, database=False)
    query(conn, f"DROP DATABASE `{name}`")
    conn.close()


def test_a_clean_backfill_validates(world: tuple[Contract, Settings], tmp_path: Path) -> None:
    contract, settings = world
    report = validate(contract, settings)
    assert report["success"], json.dumps(report, default=str)[:2000]
    for table in report["tables"]:
        assert table["parity"]["differing_buckets"] == 0
        assert table["independent_checks"]["failed"] == []
        assert table["independent_checks"]["total"] > 0
        assert all(s["success"] for s in table["suites"])
    users = next(t for t in report["tables"] if t["table"] == "Users")
    assert users["parity"]["entities"]["ORDER"]["expected"] == 4000
    assert Path(report["data_docs"].removeprefix("file://")).exists()

    sampled = validate(contract, settings, sample=0.25, tables=["Users"])
    assert sampled["success"] and sampled["sample"] == 0.25
    part = sampled["tables"][0]["parity"]["entities"]["ORDER"]["expected"]
    assert 500 < part < 2000  # about a quarter of the 4000 orders, the same keys on both sides


def _item(client: Any, table: str, key: dict[str, Any]) -> dict[str, Any]:
    return client.get_item(TableName=table, Key=key, ConsistentRead=True)["Item"]


def _product(n: int) -> dict[str, Any]:
    return {"product_id": {"N": str(n)}}


Corruption = Callable[[Any, Settings], tuple[str, str, str | None, str | None]]


def deleted_item(client: Any, s: Settings) -> tuple[str, str, str | None, str | None]:
    client.delete_item(TableName=s.table_prefix + "Products", Key=_product(5))
    return "Products", "5", None, "missing"


def extra_item(client: Any, s: Settings) -> tuple[str, str, str | None, str | None]:
    item = {**_product(999_999), "product_name": {"S": "ghost"}}
    client.put_item(TableName=s.table_prefix + "Products", Item=item)
    return "Products", "999999", None, "extra"


def _change(table: str, key: dict[str, Any], change: Callable[[dict[str, Any]], None]) -> Any:
    def corrupt(client: Any, s: Settings) -> dict[str, Any]:
        item = _item(client, s.table_prefix + table, key)
        change(item)
        client.put_item(TableName=s.table_prefix + table, Item=item)
        return item

    return corrupt


def changed_string(client: Any, s: Settings) -> tuple[str, str, str | None, str | None]:
    _change("Products", _product(6), lambda i: i.update(product_name={"S": "renamed"}))(client, s)
    return "Products", "6", "product_name", "value"


def number_third_decimal(client: Any, s: Settings) -> tuple[str, str, str | None, str | None]:
    def bump(item: dict[str, Any]) -> None:
        whole, frac = item["lifetime_value"]["N"].split(".")
        frac = (frac + "000")[:3]
        third = (int(frac[2]) + 1) % 10
        item["lifetime_value"] = {"N": f"{whole}.{frac[:2]}{third}"}

    _change("Products", _product(7), bump)(client, s)
    return "Products", "7", "lifetime_value", "value"


def number_as_string(client: Any, s: Settings) -> tuple[str, str, str | None, str | None]:
    def to_string(item: dict[str, Any]) -> None:
        item["inventory_quantity"] = {"S": item["inventory_quantity"]["N"]}

    _change("Products", _product(8), to_string)(client, s)
    return "Products", "8", "inventory_quantity", "type"


def removed_attribute(client: Any, s: Settings) -> tuple[str, str, str | None, str | None]:
    _change("Products", _product(9), lambda i: i.pop("description"))(client, s)
    return "Products", "9", "description", "missing_attribute"


def list_element_removed(client: Any, s: Settings) -> tuple[str, str, str | None, str | None]:
    user = user_of_order(s, 11)
    key = {"PK": {"S": f"USER#{user}"}, "SK": {"S": "ORDER#11"}}
    _change("Users", key, lambda i: i["items"]["L"].pop())(client, s)
    return "Users", f"USER#{user}", "items", "value"


def wrong_gsi_key(client: Any, s: Settings) -> tuple[str, str, str | None, str | None]:
    user = user_of_order(s, 12)
    key = {"PK": {"S": f"USER#{user}"}, "SK": {"S": "ORDER#12"}}
    _change("Users", key, lambda i: i.update(GSI1PK={"S": "STATUS#bogus"}))(client, s)
    return "Users", f"USER#{user}", "GSI1PK", "value"


CORRUPTIONS = [
    deleted_item, extra_item, changed_string, number_third_decimal,
    number_as_string, removed_attribute, list_element_removed, wrong_gsi_key,
]  # fmt: skip


@pytest.mark.parametrize("corrupt", CORRUPTIONS, ids=[c.__name__ for c in CORRUPTIONS])
def test_each_corruption_fails_validation_naming_its_key_and_repair_fixes_it(
    world: tuple[Contract, Settings], corrupt: Corruption
) -> None:
    contract, settings = world
    client = dynamodb_client(settings)
    table, pk, attribute, kind = corrupt(client, settings)

    report = validate(contract, settings, tables=[table])
    assert not report["success"]
    (result,) = report["tables"]
    failed_suites = [s["suite"] for s in result["suites"] if not s["success"]]
    assert f"ecommerce.{table}.parity" in failed_suites
    diffs = [d for d in result["parity"]["differences"] if d["PK"] == pk]
    assert len(result["parity"]["differences"]) == 1, result["parity"]["differences"]
    (diff,) = diffs
    if attribute is None:
        assert diff["kind"] == kind
    else:
        assert diff["kind"] == "mismatch"
        assert [(a["attribute"], a["kind"]) for a in diff["attributes"]] == [(attribute, kind)]

    repaired = reconcile(contract, settings, repair=True, tables=[table])
    assert repaired["success"], repaired["after"]
    assert sum(repaired["repaired"].values()) == 1
    assert validate(contract, settings, tables=[table])["success"]
