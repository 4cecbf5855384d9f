"""What each DynamoDB table of a contract should look like: keys, key types, GSIs, billing.

Pure: a contract in, ``TableSpec`` objects out. Creating tables and comparing them with what
DynamoDB has is ``cutover.prepare.tables``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cutover.contract.model import Contract, Table

KeySchema = tuple[tuple[str, str], ...]  # ((attribute name, "HASH" | "RANGE"), ...)
CONTRACT_TAG = "cutover:contract"
DEFAULT_CAPACITY = 5


@dataclass(frozen=True)
class GsiSpec:
    name: str
    key_schema: KeySchema
    projection: str  # ALL | KEYS_ONLY | INCLUDE
    non_key_attributes: tuple[str, ...]  # only for INCLUDE
    contract_path: str  # e.g. tables[0].gsis[1]

    def projection_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ProjectionType": self.projection}
        if self.projection == "INCLUDE":
            out["NonKeyAttributes"] = list(self.non_key_attributes)
        return out


@dataclass(frozen=True)
class TableSpec:
    name: str  # the physical name: prefix + the contract's table name
    key_schema: KeySchema
    attribute_types: dict[str, str]  # key attributes of the table and its GSIs only
    gsis: tuple[GsiSpec, ...]
    billing_mode: str  # PAY_PER_REQUEST | PROVISIONED
    rcu: int
    wcu: int
    contract_path: str  # e.g. tables[1]
    contract: str | None = None  # the contract's name (tag value); None for cutover's own

    def to_create_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for boto3 ``create_table``."""
        kwargs: dict[str, Any] = {
            "TableName": self.name,
            "KeySchema": key_schema_dicts(self.key_schema),
            "AttributeDefinitions": [
                {"AttributeName": n, "AttributeType": t} for n, t in self.attribute_types.items()
            ],
            "BillingMode": self.billing_mode,
        }
        provisioned = self.billing_mode == "PROVISIONED"
        throughput = {"ReadCapacityUnits": self.rcu, "WriteCapacityUnits": self.wcu}
        if provisioned:
            kwargs["ProvisionedThroughput"] = throughput
        if self.gsis:
            kwargs["GlobalSecondaryIndexes"] = [
                {
                    "IndexName": g.name,
                    "KeySchema": key_schema_dicts(g.key_schema),
                    "Projection": g.projection_dict(),
                    **({"ProvisionedThroughput": dict(throughput)} if provisioned else {}),
                }
                for g in self.gsis
            ]
        if self.contract is not None:
            kwargs["Tags"] = [{"Key": CONTRACT_TAG, "Value": self.contract}]
        return kwargs


def key_schema_dicts(schema: KeySchema) -> list[dict[str, str]]:
    return [{"AttributeName": name, "KeyType": kind} for name, kind in schema]


def key_schema(hash_key: str, range_key: str | None) -> KeySchema:
    return ((hash_key, "HASH"),) + (((range_key, "RANGE"),) if range_key else ())


def attribute_types(table: Table) -> dict[str, str]:
    """The type of every attribute name of the table, searching all entities (the first
    definition wins); a multi-entity table's template-rendered pk/sk are S."""
    types: dict[str, str] = {}
    for source in table.sources:
        for attr in source.attributes:
            types.setdefault(attr.name, attr.type)
    if table.type == "multi-entity":
        types[table.pk] = "S"
        if table.sk:
            types[table.sk] = "S"
    return types


def table_spec(contract: Contract, index: int, prefix: str = "") -> TableSpec:
    """The spec of ``contract.tables[index]``. A key naming no attribute defaults to S (lint
    reports that contract as invalid before any table is created)."""
    table = contract.tables[index]
    path = f"tables[{index}]"
    gsis = tuple(
        GsiSpec(
            name=g.index_name,
            key_schema=key_schema(g.pk, g.sk),
            projection=g.projection,
            non_key_attributes=(
                tuple(g.projected_attributes or ()) if g.projection == "INCLUDE" else ()
            ),
            contract_path=f"{path}.gsis[{i}]",
        )
        for i, g in enumerate(table.gsis)
    )
    base_keys = key_schema(table.pk, table.sk)
    types = attribute_types(table)
    key_types: dict[str, str] = {}
    for schema in (base_keys, *(g.key_schema for g in gsis)):
        for name, _ in schema:
            key_types.setdefault(name, types.get(name, "S"))
    opts = table.cutover
    return TableSpec(
        name=prefix + table.table,
        key_schema=base_keys,
        attribute_types=key_types,
        gsis=gsis,
        billing_mode=opts.billing_mode,
        rcu=opts.read_capacity or DEFAULT_CAPACITY,
        wcu=opts.write_capacity or DEFAULT_CAPACITY,
        contract_path=path,
        contract=contract.name,
    )


def table_specs(contract: Contract, prefix: str = "") -> list[TableSpec]:
    """One spec per table of the contract, in contract order."""
    return [table_spec(contract, i, prefix) for i in range(len(contract.tables))]
