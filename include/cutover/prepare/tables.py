"""Creating a contract's DynamoDB tables, and reporting how existing ones differ from it.
An existing table is never modified: drift is for a person to resolve."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

from botocore.exceptions import ClientError

from cutover.contract.model import Contract
from cutover.contract.table_spec import KeySchema, TableSpec, table_specs
from cutover.errors import ContractError, TransientError

_ROLE_FIELD = {"HASH": "pk", "RANGE": "sk"}


@dataclass(frozen=True)
class TableChange:
    table: str
    action: Literal["created", "unchanged", "drift"]
    drifts: tuple[str, ...] = ()


# --- comparing -----------------------------------------------------------------------------


def _schema(described: list[dict[str, str]]) -> KeySchema:
    return tuple((k["AttributeName"], k["KeyType"]) for k in described)


def _show(schema: KeySchema) -> str:
    return ", ".join(f"{name} ({kind})" for name, kind in schema) or "no keys"


class _Sentences:
    """Builds drift sentences for one spec: names the table, says where the wanted value
    comes from (the contract, with its JSON path, or cutover's own definition)."""

    def __init__(self, spec: TableSpec) -> None:
        self.spec = spec
        self.source = "the contract" if spec.contract is not None else "cutover's definition"

    def at(self, path: str) -> str:
        return f" ({path})" if self.spec.contract is not None else ""

    def line(self, text: str) -> str:
        return f"{self.spec.name}: {text}"


def _key_drifts(
    say: _Sentences, subject: str, have: KeySchema, want: KeySchema, path: str
) -> list[str]:
    """Differences of one key schema; ``subject`` is "table " or "GSI 'X' "."""
    if have == want:
        return []
    have_roles = {kind: name for name, kind in have}
    want_roles = {kind: name for name, kind in want}
    if len(have) == len(want) == 2 and have_roles == {
        "HASH": want_roles.get("RANGE"),
        "RANGE": want_roles.get("HASH"),
    }:
        return [
            say.line(
                f"{subject}HASH and RANGE keys are swapped: {_show(have)} in DynamoDB but "
                f"{_show(want)} in {say.source}{say.at(path + '.pk/sk')}"
            )
        ]
    out: list[str] = []
    for role in ("HASH", "RANGE"):
        got, wanted = have_roles.get(role), want_roles.get(role)
        where = say.at(f"{path}.{_ROLE_FIELD[role]}")
        if got == wanted:
            continue
        if got is None:
            out.append(
                say.line(
                    f"{subject}has no {role} key in DynamoDB but {say.source} has '{wanted}'{where}"
                )
            )
        elif wanted is None:
            out.append(
                say.line(
                    f"{subject}{role} key is '{got}' in DynamoDB but {say.source} has no "
                    f"{role} key{where}"
                )
            )
        else:
            out.append(
                say.line(
                    f"{subject}{role} key is '{got}' in DynamoDB but '{wanted}' in "
                    f"{say.source}{where}"
                )
            )
    return out


def _key_paths(spec: TableSpec) -> dict[str, str]:
    """The JSON path of the first key field naming each key attribute."""
    paths: dict[str, str] = {}
    for schema, path in [(spec.key_schema, spec.contract_path)] + [
        (g.key_schema, g.contract_path) for g in spec.gsis
    ]:
        for name, kind in schema:
            paths.setdefault(name, f"{path}.{_ROLE_FIELD[kind]}")
    return paths


def _gsi_drifts(say: _Sentences, spec: TableSpec, described: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    actual = {g["IndexName"]: g for g in described}
    for gsi in spec.gsis:
        have = actual.get(gsi.name)
        if have is None:
            out.append(
                say.line(
                    f"GSI '{gsi.name}' is in {say.source}{say.at(gsi.contract_path)} but "
                    "missing from the table"
                )
            )
            continue
        subject = f"GSI '{gsi.name}' "
        out += _key_drifts(
            say, subject, _schema(have.get("KeySchema", [])), gsi.key_schema, gsi.contract_path
        )
        projection = have.get("Projection", {})
        kind = projection.get("ProjectionType", "ALL")
        if kind != gsi.projection:
            out.append(
                say.line(
                    f"{subject}projection is {kind} in DynamoDB but {gsi.projection} in "
                    f"{say.source}{say.at(gsi.contract_path + '.projection')}"
                )
            )
        elif kind == "INCLUDE":
            got = sorted(projection.get("NonKeyAttributes", []))
            wanted = sorted(gsi.non_key_attributes)
            if got != wanted:
                out.append(
                    say.line(
                        f"{subject}projects non-key attributes {got} in DynamoDB but "
                        f"{wanted} in {say.source}"
                        f"{say.at(gsi.contract_path + '.projected_attributes')}"
                    )
                )
    wanted_names = {g.name for g in spec.gsis}
    for extra in sorted(set(actual) - wanted_names):
        out.append(
            say.line(
                f"GSI '{extra}' exists in DynamoDB but {say.source} lacks it"
                f"{say.at(spec.contract_path + '.gsis')}"
            )
        )
    return out


def compare(spec: TableSpec, description: dict[str, Any]) -> list[str]:
    """Every difference between the table DynamoDB describes (``DescribeTable['Table']``) and
    ``spec``, each as one sentence naming the table, the index and what differs."""
    say = _Sentences(spec)
    drifts = _key_drifts(
        say,
        "table ",
        _schema(description.get("KeySchema", [])),
        spec.key_schema,
        spec.contract_path,
    )
    actual_types = {
        d["AttributeName"]: d["AttributeType"] for d in description.get("AttributeDefinitions", [])
    }
    paths = _key_paths(spec)
    for name, wanted in spec.attribute_types.items():
        have = actual_types.get(name)
        if have is not None and have != wanted:
            drifts.append(
                say.line(
                    f"key '{name}' is {have} in DynamoDB but {wanted} in "
                    f"{say.source}{say.at(paths.get(name, spec.contract_path))}"
                )
            )
    drifts += _gsi_drifts(say, spec, description.get("GlobalSecondaryIndexes", []))
    for lsi in description.get("LocalSecondaryIndexes", []):
        drifts.append(
            say.line(
                f"local secondary index '{lsi['IndexName']}' exists in DynamoDB but "
                f"{say.source} has no local secondary indexes"
            )
        )
    # DescribeTable omits the summary for tables that were always provisioned.
    billing = description.get("BillingModeSummary", {}).get("BillingMode", "PROVISIONED")
    if billing != spec.billing_mode:
        drifts.append(
            say.line(
                f"billing mode is {billing} in DynamoDB but {spec.billing_mode} in "
                f"{say.source}{say.at(spec.contract_path + '.cutover.billing_mode')}"
            )
        )
    return drifts


# --- creating ------------------------------------------------------------------------------


def _statuses(table: dict[str, Any]) -> list[str]:
    return [table["TableStatus"]] + [
        g.get("IndexStatus", "ACTIVE") for g in table.get("GlobalSecondaryIndexes", [])
    ]


def wait_active(client: Any, name: str, timeout: float = 120) -> dict[str, Any]:
    """Poll until the table and all its GSIs are ACTIVE; return its description."""
    deadline = time.monotonic() + timeout
    pause = 0.1
    while True:
        try:
            table = client.describe_table(TableName=name)["Table"]
        except client.exceptions.ResourceNotFoundException:
            raise TransientError(
                f"DynamoDB table {name} disappeared while waiting for it to become ACTIVE "
                "(deleted concurrently?); run prepare again"
            ) from None
        statuses = _statuses(table)
        if all(s == "ACTIVE" for s in statuses):
            return table
        if time.monotonic() >= deadline:
            raise TransientError(
                f"DynamoDB table {name} and its indexes are still {'/'.join(statuses)} after "
                f"{timeout:.0f}s; run prepare again once they are ACTIVE"
            )
        time.sleep(pause)
        pause = min(pause * 2, 2.0)


def _describe(client: Any, name: str) -> dict[str, Any] | None:
    try:
        return client.describe_table(TableName=name)["Table"]
    except client.exceptions.ResourceNotFoundException:
        return None


def _create(client: Any, spec: TableSpec) -> bool:
    """Create the table; False when another process created it first."""
    try:
        client.create_table(**spec.to_create_kwargs())
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code, message = error.get("Code", ""), error.get("Message", str(exc))
        if code == "ResourceInUseException":
            return False
        if code == "LimitExceededException":
            raise TransientError(
                f"DynamoDB refused to create table {spec.name} now: {message}; "
                "run prepare again when fewer tables are being created"
            ) from None
        if code == "ValidationException":
            path = spec.contract_path if spec.contract is not None else "$"
            raise ContractError(
                [(path, f"DynamoDB refused to create table {spec.name}: {message}")]
            ) from None
        raise
    return True


def ensure_table(client: Any, spec: TableSpec, *, wait_seconds: float = 120) -> TableChange:
    """Create ``spec`` if missing (and wait for it), else report how the table differs."""
    return _ensure(client, [spec], wait_seconds)[0]


def ensure_tables(
    client: Any, contract: Contract, prefix: str, *, wait_seconds: float = 120
) -> list[TableChange]:
    """Create the contract's missing tables and wait until they and their GSIs are ACTIVE;
    compare existing ones with the contract. Nothing existing is modified or deleted."""
    return _ensure(client, table_specs(contract, prefix), wait_seconds)


def _ensure(client: Any, specs: list[TableSpec], wait_seconds: float) -> list[TableChange]:
    # Every missing table is created before any wait, so their creation overlaps.
    created: set[str] = set()
    existing: dict[str, dict[str, Any]] = {}
    for spec in specs:
        description = _describe(client, spec.name)
        if description is not None:
            existing[spec.name] = description
        elif _create(client, spec):
            created.add(spec.name)
    changes: list[TableChange] = []
    for spec in specs:
        description = existing.get(spec.name)
        if description is None or not all(s == "ACTIVE" for s in _statuses(description)):
            description = wait_active(client, spec.name, wait_seconds)
        if spec.name in created:
            changes.append(TableChange(spec.name, "created"))
            continue
        drifts = tuple(compare(spec, description))
        changes.append(TableChange(spec.name, "drift" if drifts else "unchanged", drifts))
    return changes
