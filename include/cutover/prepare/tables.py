"""Creating a contract's DynamoDB tables, and reporting how existing ones differ from it.
An existing table is never modified: drift is for a person to resolve."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

from botocore.exceptions import ClientError

from cutover.contract.model import Contract
from cutover.contract.table_spec import TableSpec, table_specs
from cutover.errors import ContractError, ServiceError


@dataclass(frozen=True)
class TableChange:
    table: str
    action: Literal["created", "unchanged", "drift"]
    drifts: tuple[str, ...] = field(default_factory=tuple)


def _keys(schema: list[dict[str, str]]) -> list[tuple[str, str]]:
    return [(k["AttributeName"], k["KeyType"]) for k in schema]


def _describe_keys(schema: list[dict[str, str]]) -> str:
    return ", ".join(f"{name} ({kind})" for name, kind in _keys(schema))


def compare(spec: TableSpec, description: dict[str, Any]) -> list[str]:
    """Every difference between the table DynamoDB has and the one the contract wants."""
    name = spec.name
    drifts: list[str] = []
    actual_keys = description.get("KeySchema", [])
    if _keys(actual_keys) != _keys(spec.key_schema()):
        drifts.append(
            f"{name}: key schema is {_describe_keys(actual_keys)} in DynamoDB but "
            f"{_describe_keys(spec.key_schema())} in the contract ({spec.path}.pk/sk)"
        )
    actual_types = {
        d["AttributeName"]: d["AttributeType"] for d in description.get("AttributeDefinitions", [])
    }
    for attr, wanted in sorted(spec.attribute_types.items()):
        have = actual_types.get(attr)
        if have is not None and have != wanted:
            drifts.append(
                f"{name}: key '{attr}' is {have} in DynamoDB but {wanted} in the contract "
                f"({spec.path})"
            )
    actual_gsis = {g["IndexName"]: g for g in description.get("GlobalSecondaryIndexes", [])}
    for gsi in spec.gsis:
        have_gsi = actual_gsis.get(gsi.name)
        if have_gsi is None:
            drifts.append(
                f"{name}: GSI '{gsi.name}' is in the contract ({gsi.path}) but missing from "
                "the table"
            )
            continue
        if _keys(have_gsi["KeySchema"]) != _keys(gsi.key_schema()):
            drifts.append(
                f"{name}: GSI '{gsi.name}' keys are {_describe_keys(have_gsi['KeySchema'])} "
                f"in DynamoDB but {_describe_keys(gsi.key_schema())} in the contract ({gsi.path})"
            )
        projection = have_gsi.get("Projection", {})
        if projection.get("ProjectionType") != gsi.projection:
            drifts.append(
                f"{name}: GSI '{gsi.name}' projects {projection.get('ProjectionType')} in "
                f"DynamoDB but {gsi.projection} in the contract ({gsi.path}.projection)"
            )
        elif gsi.projection == "INCLUDE":
            included = sorted(projection.get("NonKeyAttributes", []))
            if included != sorted(gsi.non_key_attributes):
                drifts.append(
                    f"{name}: GSI '{gsi.name}' includes {included} in DynamoDB but "
                    f"{sorted(gsi.non_key_attributes)} in the contract "
                    f"({gsi.path}.projected_attributes)"
                )
    for extra in sorted(set(actual_gsis) - {g.name for g in spec.gsis}):
        drifts.append(f"{name}: GSI '{extra}' exists in DynamoDB but not in the contract")
    billing = description.get("BillingModeSummary", {}).get("BillingMode", "PROVISIONED")
    if billing != spec.billing_mode:
        drifts.append(
            f"{name}: billing mode is {billing} in DynamoDB but {spec.billing_mode} in the "
            f"contract ({spec.path}.cutover.billing_mode)"
        )
    return drifts


def wait_active(client: Any, name: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        table = client.describe_table(TableName=name)["Table"]
        statuses = [table["TableStatus"]] + [
            g["IndexStatus"] for g in table.get("GlobalSecondaryIndexes", [])
        ]
        if all(s == "ACTIVE" for s in statuses):
            return table
        if time.monotonic() > deadline:
            raise ServiceError(f"table {name} is still {statuses} after {timeout:.0f}s")
        time.sleep(0.5)


def ensure_table(client: Any, spec: TableSpec, wait_seconds: float = 120) -> TableChange:
    try:
        description = client.describe_table(TableName=spec.name)["Table"]
    except client.exceptions.ResourceNotFoundException:
        try:
            client.create_table(**spec.to_create_kwargs())
        except client.exceptions.ResourceInUseException:
            pass  # created concurrently: compare below
        except ClientError as exc:
            raise ContractError(
                [
                    (
                        spec.path,
                        f"DynamoDB refused table {spec.name}: {exc.response['Error']['Message']}",
                    )
                ]
            ) from None
        else:
            wait_active(client, spec.name, wait_seconds)
            return TableChange(spec.name, "created")
        description = wait_active(client, spec.name, wait_seconds)
    drifts = compare(spec, description)
    return TableChange(spec.name, "drift" if drifts else "unchanged", tuple(drifts))


def ensure_tables(
    client: Any, contract: Contract, prefix: str, *, wait_seconds: float = 120
) -> list[TableChange]:
    return [ensure_table(client, spec, wait_seconds) for spec in table_specs(contract, prefix)]
