"""DynamoDB tables from a contract: created with keys and GSIs, left alone when they match,
and every difference reported as drift (never silently ignored, never "fixed")."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from cutover.contract.load import parse_contract
from cutover.contract.table_spec import table_specs
from cutover.prepare.control_table import CONTROL_TABLE, ensure_control_table
from cutover.prepare.tables import compare, ensure_tables
from cutover.settings import Settings

pytestmark = pytest.mark.integration


def _a(name: str, type_: str) -> dict[str, Any]:
    return {"name": name, "type": type_, "source_table": "t", "source_column": name}


CONTRACT: dict[str, Any] = {
    "tables": [
        {"table": "Items", "type": "single-entity", "source_table": "t", "pk": "item_id",
         "sk": "version",
         "gsis": [{"index_name": "ByOwner", "pk": "owner", "sk": "price"},
                  {"index_name": "ByName", "pk": "name", "projection": "INCLUDE",
                   "projected_attributes": ["price"]}],
         "attributes": [_a("item_id", "S"), _a("version", "N"), _a("owner", "S"),
                        _a("price", "N"), _a("name", "S")]},
        {"table": "Log", "type": "multi-entity", "pk": "PK", "sk": "SK", "entities": [
            {"entity_type": "E", "source_table": "t", "pk_template": "E#{item_id}",
             "sk_template": "X", "attributes": [_a("item_id", "S")]}]},
    ]
}  # fmt: skip


@pytest.fixture
def prefix(settings: Settings, ddb: Any) -> Iterator[str]:
    value = f"{settings.table_prefix}{uuid.uuid4().hex[:6]}_"
    yield value
    for name in ddb.list_tables()["TableNames"]:
        if name.startswith(value):
            ddb.delete_table(TableName=name)


def test_tables_are_created_with_keys_and_gsis_then_left_unchanged(ddb: Any, prefix: str) -> None:
    contract = parse_contract(CONTRACT)
    changes = ensure_tables(ddb, contract, prefix)
    assert [(c.table, c.action) for c in changes] == [
        (f"{prefix}Items", "created"), (f"{prefix}Log", "created")]  # fmt: skip
    items = ddb.describe_table(TableName=f"{prefix}Items")["Table"]
    assert items["TableStatus"] == "ACTIVE"
    assert [(k["AttributeName"], k["KeyType"]) for k in items["KeySchema"]] == [
        ("item_id", "HASH"), ("version", "RANGE")]  # fmt: skip
    types = {d["AttributeName"]: d["AttributeType"] for d in items["AttributeDefinitions"]}
    assert types == {"item_id": "S", "version": "N", "owner": "S", "price": "N", "name": "S"}
    gsis = {g["IndexName"]: g for g in items["GlobalSecondaryIndexes"]}
    assert gsis["ByName"]["Projection"] == {"ProjectionType": "INCLUDE",
                                            "NonKeyAttributes": ["price"]}  # fmt: skip
    assert all(g["IndexStatus"] == "ACTIVE" for g in gsis.values())
    log = ddb.describe_table(TableName=f"{prefix}Log")["Table"]
    assert {d["AttributeType"] for d in log["AttributeDefinitions"]} == {"S"}

    again = ensure_tables(ddb, contract, prefix)
    assert [c.action for c in again] == ["unchanged", "unchanged"]


def test_a_missing_gsi_is_drift(ddb: Any, prefix: str) -> None:
    spec = table_specs(parse_contract(CONTRACT), prefix)[0]
    kwargs = spec.to_create_kwargs()
    kwargs["GlobalSecondaryIndexes"] = kwargs["GlobalSecondaryIndexes"][:1]
    kwargs["AttributeDefinitions"] = [
        d for d in kwargs["AttributeDefinitions"] if d["AttributeName"] != "name"
    ]
    ddb.create_table(**kwargs)
    changes = ensure_tables(ddb, parse_contract(CONTRACT), prefix)
    items = changes[0]
    assert items.action == "drift"
    assert items.drifts == (
        f"{prefix}Items: GSI 'ByName' is in the contract (tables[0].gsis[1]) but missing from "
        "the table",
    )
    after = ddb.describe_table(TableName=f"{prefix}Items")["Table"]
    assert len(after["GlobalSecondaryIndexes"]) == 1  # drift is reported, never "fixed"


def test_a_wrong_key_type_is_drift(ddb: Any, prefix: str) -> None:
    wrong = copy.deepcopy(CONTRACT)
    wrong["tables"][0]["attributes"][0]["type"] = "N"
    ensure_tables(ddb, parse_contract(wrong), prefix)
    changes = ensure_tables(ddb, parse_contract(CONTRACT), prefix)
    assert changes[0].action == "drift"
    assert any("key 'item_id' is N in DynamoDB but S in the contract" in d
               for d in changes[0].drifts)  # fmt: skip


def test_a_projection_change_is_drift(ddb: Any, prefix: str) -> None:
    ensure_tables(ddb, parse_contract(CONTRACT), prefix)
    changed = copy.deepcopy(CONTRACT)
    changed["tables"][0]["gsis"][1]["projected_attributes"] = ["price", "owner"]
    drifts = ensure_tables(ddb, parse_contract(changed), prefix)[0].drifts
    assert drifts == (
        f"{prefix}Items: GSI 'ByName' includes ['price'] in DynamoDB but ['owner', 'price'] in "
        "the contract (tables[0].gsis[1].projected_attributes)",
    )


def test_control_table_is_created_once(ddb: Any, prefix: str) -> None:
    assert ensure_control_table(ddb, prefix).action == "created"
    assert ensure_control_table(ddb, prefix).action == "unchanged"
    keys = ddb.describe_table(TableName=prefix + CONTROL_TABLE)["Table"]["KeySchema"]
    assert [k["AttributeName"] for k in keys] == ["contract", "record"]


def test_compare_reports_swapped_keys_extra_gsi_and_billing() -> None:
    spec = table_specs(parse_contract(CONTRACT), "p_")[0]
    description = {
        "KeySchema": [{"AttributeName": "version", "KeyType": "HASH"},
                      {"AttributeName": "item_id", "KeyType": "RANGE"}],
        "AttributeDefinitions": [{"AttributeName": "item_id", "AttributeType": "S"},
                                 {"AttributeName": "version", "AttributeType": "N"}],
        "GlobalSecondaryIndexes": [
            {"IndexName": "ByOwner", "KeySchema": [{"AttributeName": "owner", "KeyType": "HASH"}],
             "Projection": {"ProjectionType": "KEYS_ONLY"}},
            {"IndexName": "ByName", "KeySchema": [{"AttributeName": "name", "KeyType": "HASH"}],
             "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["price"]}},
            {"IndexName": "Legacy", "KeySchema": [{"AttributeName": "x", "KeyType": "HASH"}],
             "Projection": {"ProjectionType": "ALL"}}],
    }  # fmt: skip
    drifts = compare(spec, description)
    assert len(drifts) == 5, drifts
    assert "key schema is version (HASH), item_id (RANGE)" in drifts[0]
    assert "GSI 'ByOwner' keys are owner (HASH)" in drifts[1]
    assert "GSI 'ByOwner' projects KEYS_ONLY in DynamoDB but ALL" in drifts[2]
    assert "GSI 'Legacy' exists in DynamoDB but not in the contract" in drifts[3]
    assert "billing mode is PROVISIONED in DynamoDB but PAY_PER_REQUEST" in drifts[4]
