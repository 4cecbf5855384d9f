"""DynamoDB tables from a contract against DynamoDB Local: created with keys and GSIs, left
alone when they match, and every difference reported as drift (never "fixed")."""

from __future__ import annotations

import copy
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from cutover.contract.load import parse_contract
from cutover.contract.table_spec import table_specs
from cutover.errors import ContractError
from cutover.prepare.control_table import CONTROL_TABLE, ensure_control_table
from cutover.prepare.tables import TableChange, ensure_tables
from cutover.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.dynamodb]


def _a(name: str, type_: str) -> dict[str, Any]:
    return {"name": name, "type": type_, "source_table": "t", "source_column": name}


CONTRACT: dict[str, Any] = {
    "cutover": {"name": "shop"},
    "tables": [
        {"table": "Items", "type": "single-entity", "source_table": "t", "pk": "item_id",
         "sk": "version",
         "gsis": [{"index_name": "ByOwner", "pk": "owner", "sk": "price"},
                  {"index_name": "ByName", "pk": "name", "projection": "INCLUDE",
                   "projected_attributes": ["price"]}],
         "attributes": [_a("item_id", "S"), _a("version", "N"), _a("owner", "S"),
                        _a("price", "N"), _a("name", "S"), _a("notes", "S")]},
        {"table": "Log", "type": "multi-entity", "pk": "PK", "sk": "SK",
         "gsis": [{"index_name": "ByKind", "pk": "kind", "projection": "KEYS_ONLY"}],
         "entities": [
            {"entity_type": "E", "source_table": "t", "pk_template": "E#{item_id}",
             "sk_template": "X", "attributes": [_a("item_id", "S")]},
            {"entity_type": "F", "source_table": "t", "pk_template": "F#{item_id}",
             "sk_template": "Y", "attributes": [_a("item_id", "S"), _a("kind", "N")]}]},
    ],
}  # fmt: skip


@pytest.fixture
def prefix(settings: Settings, ddb: Any) -> Iterator[str]:
    """A table prefix of this test only; its tables are deleted afterwards."""
    value = f"{settings.table_prefix}{uuid.uuid4().hex[:6]}_"
    yield value
    for page in ddb.get_paginator("list_tables").paginate():
        for name in page["TableNames"]:
            if name.startswith(value):
                ddb.delete_table(TableName=name)


def _describe(ddb: Any, name: str) -> dict[str, Any]:
    return ddb.describe_table(TableName=name)["Table"]


def test_tables_are_created_active_with_keys_and_gsis_then_left_unchanged(
    ddb: Any, prefix: str
) -> None:
    contract = parse_contract(CONTRACT)
    changes = ensure_tables(ddb, contract, prefix)
    assert changes == [
        TableChange(f"{prefix}Items", "created", ()),
        TableChange(f"{prefix}Log", "created", ()),
    ]
    items = _describe(ddb, f"{prefix}Items")
    assert items["TableStatus"] == "ACTIVE"
    assert [(k["AttributeName"], k["KeyType"]) for k in items["KeySchema"]] == [
        ("item_id", "HASH"), ("version", "RANGE")]  # fmt: skip
    types = {d["AttributeName"]: d["AttributeType"] for d in items["AttributeDefinitions"]}
    assert types == {"item_id": "S", "version": "N", "owner": "S", "price": "N", "name": "S"}
    gsis = {g["IndexName"]: g for g in items["GlobalSecondaryIndexes"]}
    assert set(gsis) == {"ByOwner", "ByName"}
    assert [(k["AttributeName"], k["KeyType"]) for k in gsis["ByOwner"]["KeySchema"]] == [
        ("owner", "HASH"), ("price", "RANGE")]  # fmt: skip
    assert gsis["ByName"]["Projection"] == {
        "ProjectionType": "INCLUDE", "NonKeyAttributes": ["price"]}  # fmt: skip
    assert all(g["IndexStatus"] == "ACTIVE" for g in gsis.values())
    assert items["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"

    log = _describe(ddb, f"{prefix}Log")
    types = {d["AttributeName"]: d["AttributeType"] for d in log["AttributeDefinitions"]}
    assert types == {"PK": "S", "SK": "S", "kind": "N"}  # kind comes from the second entity

    again = ensure_tables(ddb, contract, prefix)
    assert again == [
        TableChange(f"{prefix}Items", "unchanged", ()),
        TableChange(f"{prefix}Log", "unchanged", ()),
    ]


def test_a_table_created_without_one_gsi_is_drift_and_is_left_alone(ddb: Any, prefix: str) -> None:
    kwargs = table_specs(parse_contract(CONTRACT), prefix)[0].to_create_kwargs()
    kwargs["GlobalSecondaryIndexes"] = kwargs["GlobalSecondaryIndexes"][:1]
    kwargs["AttributeDefinitions"] = [
        d for d in kwargs["AttributeDefinitions"] if d["AttributeName"] != "name"
    ]
    ddb.create_table(**kwargs)

    changes = ensure_tables(ddb, parse_contract(CONTRACT), prefix)
    assert changes[0] == TableChange(
        f"{prefix}Items",
        "drift",
        (
            f"{prefix}Items: GSI 'ByName' is in the contract (tables[0].gsis[1]) but missing "
            "from the table",
        ),
    )
    assert changes[1].action == "created"
    after = _describe(ddb, f"{prefix}Items")
    assert [g["IndexName"] for g in after["GlobalSecondaryIndexes"]] == ["ByOwner"]


def test_a_key_that_is_n_in_dynamodb_but_s_in_the_contract_is_drift(ddb: Any, prefix: str) -> None:
    ddb.create_table(
        TableName=f"{prefix}Items",
        KeySchema=[{"AttributeName": "item_id", "KeyType": "HASH"},
                   {"AttributeName": "version", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "item_id", "AttributeType": "N"},
                              {"AttributeName": "version", "AttributeType": "N"}],
        BillingMode="PAY_PER_REQUEST",
    )  # fmt: skip
    contract = copy.deepcopy(CONTRACT)
    contract["tables"][0]["gsis"] = []
    (items, _log) = ensure_tables(ddb, parse_contract(contract), prefix)
    assert items.action == "drift"
    assert items.drifts == (
        f"{prefix}Items: key 'item_id' is N in DynamoDB but S in the contract (tables[0].pk)",
    )
    assert _describe(ddb, f"{prefix}Items")["AttributeDefinitions"][0]["AttributeType"] == "N"


def test_a_gsi_projection_changed_in_the_contract_is_drift(ddb: Any, prefix: str) -> None:
    ensure_tables(ddb, parse_contract(CONTRACT), prefix)
    changed = copy.deepcopy(CONTRACT)
    changed["tables"][0]["gsis"][1]["projected_attributes"] = ["price", "owner"]
    changed["tables"][1]["gsis"][0]["projection"] = "ALL"
    items, log = ensure_tables(ddb, parse_contract(changed), prefix)
    assert items.drifts == (
        f"{prefix}Items: GSI 'ByName' projects non-key attributes ['price'] in DynamoDB but "
        "['owner', 'price'] in the contract (tables[0].gsis[1].projected_attributes)",
    )
    assert log.drifts == (
        f"{prefix}Log: GSI 'ByKind' projection is KEYS_ONLY in DynamoDB but ALL in the contract "
        "(tables[1].gsis[0].projection)",
    )


def test_the_control_table_is_created_once_and_then_unchanged(ddb: Any, prefix: str) -> None:
    assert ensure_control_table(ddb, prefix) == TableChange(prefix + CONTROL_TABLE, "created", ())
    assert ensure_control_table(ddb, prefix).action == "unchanged"
    table = _describe(ddb, prefix + CONTROL_TABLE)
    assert table["TableStatus"] == "ACTIVE"
    assert [(k["AttributeName"], k["KeyType"]) for k in table["KeySchema"]] == [
        ("contract", "HASH"), ("record", "RANGE")]  # fmt: skip
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"


def test_concurrent_ensures_create_each_table_once_and_all_succeed(ddb: Any, prefix: str) -> None:
    contract = parse_contract(CONTRACT)
    start = threading.Barrier(4)
    results: list[list[TableChange]] = []
    errors: list[BaseException] = []

    def run() -> None:
        start.wait()
        try:
            results.append(ensure_tables(ddb, contract, prefix))
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for index in range(2):
        actions = sorted(r[index].action for r in results)
        assert actions == ["created", "unchanged", "unchanged", "unchanged"]


def test_a_table_dynamodb_refuses_raises_contract_error_with_its_path(
    ddb: Any, prefix: str
) -> None:
    bad = copy.deepcopy(CONTRACT)
    bad["tables"][1]["entities"][1]["attributes"][1]["type"] = "BOOL"  # a GSI key cannot be
    with pytest.raises(ContractError) as caught:
        ensure_tables(ddb, parse_contract(bad), prefix)
    ((path, message),) = caught.value.problems
    assert path == "tables[1]"
    assert message.startswith(f"DynamoDB refused to create table {prefix}Log: ")
