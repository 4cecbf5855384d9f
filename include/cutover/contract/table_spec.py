"""What each DynamoDB table of a contract should look like (keys, GSIs, billing)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cutover.contract.model import Contract, Table


@dataclass(frozen=True)
class GsiSpec:
    name: str
    hash_key: str
    range_key: str | None
    projection: str
    non_key_attributes: tuple[str, ...]
    path: str

    def key_schema(self) -> list[dict[str, str]]:
        return _key_schema(self.hash_key, self.range_key)

    def projection_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ProjectionType": self.projection}
        if self.projection == "INCLUDE":
            out["NonKeyAttributes"] = list(self.non_key_attributes)
        return out


@dataclass(frozen=True)
class TableSpec:
    name: str
    hash_key: str
    range_key: str | None
    attribute_types: dict[str, str]
    gsis: tuple[GsiSpec, ...]
    billing_mode: str
    rcu: int
    wcu: int
    contract: str
    path: str  # JSON path of the table in the contract, e.g. tables[1]

    def key_schema(self) -> list[dict[str, str]]:
        return _key_schema(self.hash_key, self.range_key)

    def to_create_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "TableName": self.name,
            "KeySchema": self.key_schema(),
            "AttributeDefinitions": [
                {"AttributeName": n, "AttributeType": t}
                for n, t in sorted(self.attribute_types.items())
            ],
            "BillingMode": self.billing_mode,
            "Tags": [{"Key": "cutover:contract", "Value": self.contract}],
        }
        throughput = {"ReadCapacityUnits": self.rcu, "WriteCapacityUnits": self.wcu}
        if self.billing_mode == "PROVISIONED":
            kwargs["ProvisionedThroughput"] = throughput
        if self.gsis:
            kwargs["GlobalSecondaryIndexes"] = [
                {
                    "IndexName": g.name,
                    "KeySchema": g.key_schema(),
                    "Projection": g.projection_dict(),
                    **(
                        {"ProvisionedThroughput": throughput}
                        if self.billing_mode == "PROVISIONED"
                        else {}
                    ),
                }
                for g in self.gsis
            ]
        return kwargs


def _key_schema(hash_key: str, range_key: str | None) -> list[dict[str, str]]:
    keys = [{"AttributeName": hash_key, "KeyType": "HASH"}]
    if range_key:
        keys.append({"AttributeName": range_key, "KeyType": "RANGE"})
    return keys


def attribute_types(table: Table) -> dict[str, str]:
    """The type of every attribute name of the table (first definition wins)."""
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
    table = contract.tables[index]
    types = attribute_types(table)
    keys = {table.pk, table.sk, *(k for g in table.gsis for k in (g.pk, g.sk))} - {None}
    opts = table.cutover
    return TableSpec(
        name=prefix + table.table,
        hash_key=table.pk,
        range_key=table.sk,
        attribute_types={k: types.get(k, "S") for k in keys if k is not None},
        gsis=tuple(
            GsiSpec(
                name=g.index_name,
                hash_key=g.pk,
                range_key=g.sk,
                projection=g.projection,
                non_key_attributes=tuple(g.projected_attributes or ()),
                path=f"tables[{index}].gsis[{i}]",
            )
            for i, g in enumerate(table.gsis)
        ),
        billing_mode=opts.billing_mode,
        rcu=opts.read_capacity or 5,
        wcu=opts.write_capacity or 5,
        contract=contract.name,
        path=f"tables[{index}]",
    )


def table_specs(contract: Contract, prefix: str = "") -> list[TableSpec]:
    return [table_spec(contract, i, prefix) for i in range(len(contract.tables))]
