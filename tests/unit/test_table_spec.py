"""Table specs from contracts (keys, key types, GSIs, billing, tags) and every kind of drift
``compare`` finds between a spec and a DescribeTable answer."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from cutover.contract.load import parse_contract
from cutover.contract.table_spec import TableSpec, table_specs
from cutover.prepare.control_table import control_table_spec
from cutover.prepare.tables import compare

pytestmark = pytest.mark.unit


def _a(name: str, type_: str, source: str = "t") -> dict[str, Any]:
    return {"name": name, "type": type_, "source_table": source, "source_column": name}


CONTRACT: dict[str, Any] = {
    "cutover": {"name": "shop"},
    "tables": [
        {"table": "Users", "type": "single-entity", "source_table": "t", "pk": "user_id",
         "sk": "created",
         "gsis": [{"index_name": "ByEmail", "pk": "email", "projection": "KEYS_ONLY"},
                  {"index_name": "ByCity", "pk": "city", "sk": "age", "projection": "INCLUDE",
                   "projected_attributes": ["email", "name"]}],
         "attributes": [_a("user_id", "S"), _a("created", "N"), _a("email", "S"),
                        _a("city", "S"), _a("age", "N"), _a("name", "S"), _a("blob", "B")]},
        {"table": "Products", "type": "single-entity", "source_table": "p", "pk": "product_id",
         "attributes": [_a("product_id", "N", "p"), _a("price", "N", "p")],
         "cutover": {"billing_mode": "PROVISIONED", "read_capacity": 7}},
        {"table": "Orders", "type": "multi-entity", "pk": "PK", "sk": "SK",
         "gsis": [{"index_name": "ByTotal", "pk": "status", "sk": "total"},
                  {"index_name": "BySK", "pk": "SK"}],
         "entities": [
             {"entity_type": "ORDER", "source_table": "o", "pk_template": "ORDER#{id}",
              "sk_template": "META", "attributes": [_a("status", "S", "o")]},
             {"entity_type": "LINE", "source_table": "l", "pk_template": "ORDER#{order_id}",
              "sk_template": "LINE#{id}", "attributes": [_a("total", "N", "l")]}]},
    ],
}  # fmt: skip


def _specs(data: dict[str, Any] = CONTRACT, prefix: str = "p_") -> list[TableSpec]:
    return table_specs(parse_contract(data), prefix)


def _keys(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"AttributeName": n, "KeyType": k} for n, k in pairs]


def _defs(**types: str) -> list[dict[str, str]]:
    return [{"AttributeName": n, "AttributeType": t} for n, t in types.items()]


# --- specs -----------------------------------------------------------------------------------


def test_single_entity_spec_has_prefixed_name_keys_and_only_key_attribute_types() -> None:
    users = _specs()[0]
    assert users.name == "p_Users"
    assert users.contract_path == "tables[0]"
    assert users.key_schema == (("user_id", "HASH"), ("created", "RANGE"))
    # name and blob are not keys of the table or of a GSI, so DynamoDB must not see them
    assert users.attribute_types == {
        "user_id": "S", "created": "N", "email": "S", "city": "S", "age": "N"}  # fmt: skip
    assert [g.contract_path for g in users.gsis] == ["tables[0].gsis[0]", "tables[0].gsis[1]"]


def test_create_kwargs_carry_gsi_projections_billing_and_the_contract_tag() -> None:
    kwargs = _specs()[0].to_create_kwargs()
    assert kwargs["TableName"] == "p_Users"
    assert kwargs["KeySchema"] == _keys(("user_id", "HASH"), ("created", "RANGE"))
    assert kwargs["BillingMode"] == "PAY_PER_REQUEST"
    assert "ProvisionedThroughput" not in kwargs
    assert kwargs["Tags"] == [{"Key": "cutover:contract", "Value": "shop"}]
    by_email, by_city = kwargs["GlobalSecondaryIndexes"]
    assert by_email == {
        "IndexName": "ByEmail",
        "KeySchema": _keys(("email", "HASH")),
        "Projection": {"ProjectionType": "KEYS_ONLY"},
    }
    assert by_city["KeySchema"] == _keys(("city", "HASH"), ("age", "RANGE"))
    assert by_city["Projection"] == {
        "ProjectionType": "INCLUDE", "NonKeyAttributes": ["email", "name"]}  # fmt: skip


def test_provisioned_billing_defaults_missing_capacity_to_five_for_table_and_gsis() -> None:
    data = copy.deepcopy(CONTRACT)
    data["tables"][1]["gsis"] = [{"index_name": "ByPrice", "pk": "price"}]
    products = _specs(data)[1]
    assert (products.billing_mode, products.rcu, products.wcu) == ("PROVISIONED", 7, 5)
    kwargs = products.to_create_kwargs()
    assert kwargs["KeySchema"] == _keys(("product_id", "HASH"))
    assert kwargs["AttributeDefinitions"] == _defs(product_id="N", price="N")
    assert kwargs["ProvisionedThroughput"] == {"ReadCapacityUnits": 7, "WriteCapacityUnits": 5}
    (gsi,) = kwargs["GlobalSecondaryIndexes"]
    assert gsi["ProvisionedThroughput"] == {"ReadCapacityUnits": 7, "WriteCapacityUnits": 5}
    assert gsi["Projection"] == {"ProjectionType": "ALL"}


def test_multi_entity_keys_are_strings_and_gsi_keys_take_types_from_any_entity() -> None:
    orders = _specs(prefix="")[2]
    assert orders.name == "Orders"
    assert orders.key_schema == (("PK", "HASH"), ("SK", "RANGE"))
    # total is defined only in the second entity; SK is a template key reused by a GSI
    assert orders.attribute_types == {"PK": "S", "SK": "S", "status": "S", "total": "N"}
    assert orders.to_create_kwargs()["AttributeDefinitions"] == _defs(
        PK="S", SK="S", status="S", total="N")  # fmt: skip


def test_a_spec_built_from_the_contract_compares_equal_to_its_own_create_request() -> None:
    for spec in _specs():
        kwargs = spec.to_create_kwargs()
        description = {
            "KeySchema": kwargs["KeySchema"],
            "AttributeDefinitions": kwargs["AttributeDefinitions"],
            "GlobalSecondaryIndexes": kwargs.get("GlobalSecondaryIndexes", []),
            "BillingModeSummary": {"BillingMode": kwargs["BillingMode"]},
        }
        assert compare(spec, description) == [], spec.name


# --- drift -----------------------------------------------------------------------------------


def _users_description() -> dict[str, Any]:
    """What DynamoDB describes for a Users table created exactly as the contract says."""
    return {
        "TableName": "p_Users",
        "KeySchema": _keys(("user_id", "HASH"), ("created", "RANGE")),
        "AttributeDefinitions": _defs(user_id="S", created="N", email="S", city="S", age="N"),
        "GlobalSecondaryIndexes": [
            {"IndexName": "ByEmail", "KeySchema": _keys(("email", "HASH")),
             "Projection": {"ProjectionType": "KEYS_ONLY"}, "IndexStatus": "ACTIVE"},
            {"IndexName": "ByCity", "KeySchema": _keys(("city", "HASH"), ("age", "RANGE")),
             "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["name", "email"]},
             "IndexStatus": "ACTIVE"},
        ],
        "BillingModeSummary": {"BillingMode": "PAY_PER_REQUEST"},
        "TableStatus": "ACTIVE",
    }  # fmt: skip


def _users_drift(description: dict[str, Any]) -> list[str]:
    return compare(_specs()[0], description)


def test_a_matching_table_has_no_drift_whatever_the_order_of_included_attributes() -> None:
    assert _users_drift(_users_description()) == []


def test_a_missing_gsi_is_named_with_its_contract_path() -> None:
    description = _users_description()
    description["GlobalSecondaryIndexes"].pop()
    assert _users_drift(description) == [
        "p_Users: GSI 'ByCity' is in the contract (tables[0].gsis[1]) but missing from the table"
    ]


def test_an_extra_gsi_in_dynamodb_is_drift() -> None:
    description = _users_description()
    description["GlobalSecondaryIndexes"].append(
        {"IndexName": "Legacy", "KeySchema": _keys(("email", "HASH")),
         "Projection": {"ProjectionType": "ALL"}})  # fmt: skip
    assert _users_drift(description) == [
        "p_Users: GSI 'Legacy' exists in DynamoDB but the contract lacks it (tables[0].gsis)"
    ]


def test_an_extra_local_secondary_index_is_drift() -> None:
    description = _users_description()
    description["LocalSecondaryIndexes"] = [
        {"IndexName": "ByAge", "KeySchema": _keys(("user_id", "HASH"), ("age", "RANGE")),
         "Projection": {"ProjectionType": "ALL"}}]  # fmt: skip
    assert _users_drift(description) == [
        "p_Users: local secondary index 'ByAge' exists in DynamoDB but the contract has no "
        "local secondary indexes"
    ]


def test_a_key_type_difference_names_the_key_and_its_contract_field() -> None:
    description = _users_description()
    description["AttributeDefinitions"] = _defs(
        user_id="N", created="N", email="S", city="S", age="S")  # fmt: skip
    assert _users_drift(description) == [
        "p_Users: key 'user_id' is N in DynamoDB but S in the contract (tables[0].pk)",
        "p_Users: key 'age' is S in DynamoDB but N in the contract (tables[0].gsis[1].sk)",
    ]


def test_a_wrong_key_name_is_drift() -> None:
    description = _users_description()
    description["KeySchema"] = _keys(("id", "HASH"), ("created", "RANGE"))
    description["AttributeDefinitions"][0] = {"AttributeName": "id", "AttributeType": "S"}
    assert _users_drift(description) == [
        "p_Users: table HASH key is 'id' in DynamoDB but 'user_id' in the contract (tables[0].pk)"
    ]


def test_swapped_hash_and_range_keys_are_one_drift() -> None:
    description = _users_description()
    description["KeySchema"] = _keys(("created", "HASH"), ("user_id", "RANGE"))
    assert _users_drift(description) == [
        "p_Users: table HASH and RANGE keys are swapped: created (HASH), user_id (RANGE) in "
        "DynamoDB but user_id (HASH), created (RANGE) in the contract (tables[0].pk/sk)"
    ]


def test_a_missing_or_extra_range_key_is_drift() -> None:
    description = _users_description()
    description["KeySchema"] = _keys(("user_id", "HASH"))
    assert _users_drift(description) == [
        "p_Users: table has no RANGE key in DynamoDB but the contract has 'created' (tables[0].sk)"
    ]
    products = _specs()[1]
    extra = {
        "KeySchema": _keys(("product_id", "HASH"), ("price", "RANGE")),
        "AttributeDefinitions": _defs(product_id="N", price="N"),
        "BillingModeSummary": {"BillingMode": "PROVISIONED"},
    }
    assert compare(products, extra) == [
        "p_Products: table RANGE key is 'price' in DynamoDB but the contract has no RANGE key "
        "(tables[1].sk)"
    ]


def test_a_gsi_key_schema_difference_is_drift() -> None:
    description = _users_description()
    description["GlobalSecondaryIndexes"][1]["KeySchema"] = _keys(("city", "HASH"))
    description["GlobalSecondaryIndexes"][0]["KeySchema"] = _keys(("city", "HASH"))
    assert _users_drift(description) == [
        "p_Users: GSI 'ByEmail' HASH key is 'city' in DynamoDB but 'email' in the contract "
        "(tables[0].gsis[0].pk)",
        "p_Users: GSI 'ByCity' has no RANGE key in DynamoDB but the contract has 'age' "
        "(tables[0].gsis[1].sk)",
    ]


def test_gsi_projection_type_and_included_attributes_differences_are_drift() -> None:
    description = _users_description()
    description["GlobalSecondaryIndexes"][0]["Projection"] = {"ProjectionType": "ALL"}
    description["GlobalSecondaryIndexes"][1]["Projection"]["NonKeyAttributes"] = ["email"]
    assert _users_drift(description) == [
        "p_Users: GSI 'ByEmail' projection is ALL in DynamoDB but KEYS_ONLY in the contract "
        "(tables[0].gsis[0].projection)",
        "p_Users: GSI 'ByCity' projects non-key attributes ['email'] in DynamoDB but "
        "['email', 'name'] in the contract (tables[0].gsis[1].projected_attributes)",
    ]


def test_billing_mode_difference_is_drift_and_a_missing_summary_means_provisioned() -> None:
    description = _users_description()
    del description["BillingModeSummary"]
    assert _users_drift(description) == [
        "p_Users: billing mode is PROVISIONED in DynamoDB but PAY_PER_REQUEST in the contract "
        "(tables[0].cutover.billing_mode)"
    ]
    products = _specs()[1]
    on_demand = {
        "KeySchema": _keys(("product_id", "HASH")),
        "AttributeDefinitions": _defs(product_id="N"),
        "BillingModeSummary": {"BillingMode": "PAY_PER_REQUEST"},
    }
    assert compare(products, on_demand) == [
        "p_Products: billing mode is PAY_PER_REQUEST in DynamoDB but PROVISIONED in the "
        "contract (tables[1].cutover.billing_mode)"
    ]


def test_control_table_spec_and_its_drift_wording() -> None:
    spec = control_table_spec("p_")
    kwargs = spec.to_create_kwargs()
    assert kwargs["TableName"] == "p_cutover_control"
    assert kwargs["KeySchema"] == _keys(("contract", "HASH"), ("record", "RANGE"))
    assert kwargs["AttributeDefinitions"] == _defs(contract="S", record="S")
    assert kwargs["BillingMode"] == "PAY_PER_REQUEST"
    assert "Tags" not in kwargs  # shared by every contract
    drifts = compare(
        spec,
        {"KeySchema": _keys(("contract", "HASH"), ("record", "RANGE")),
         "AttributeDefinitions": _defs(contract="S", record="N"),
         "BillingModeSummary": {"BillingMode": "PAY_PER_REQUEST"}},
    )  # fmt: skip
    assert drifts == [
        "p_cutover_control: key 'record' is N in DynamoDB but S in cutover's definition"
    ]
