"""The migration control table, where the phase store keeps one item per contract for its
current phase (``record = "PHASE"``) and an append-only history
(``record = "HISTORY#<iso timestamp>#<seq>"``), the latest evidence of each kind
(``EVIDENCE#<kind>``) and the routing layer's figures over time (``SERIES#<kind>#<at>``,
which expire through the table's TTL attribute ``expires_at``)."""

from __future__ import annotations

from typing import Any

from cutover.contract.table_spec import TableSpec, key_schema
from cutover.prepare.tables import TableChange, ensure_table

CONTROL_TABLE = "cutover_control"


def control_table_spec(prefix: str) -> TableSpec:
    return TableSpec(
        name=prefix + CONTROL_TABLE,
        key_schema=key_schema("contract", "record"),
        attribute_types={"contract": "S", "record": "S"},
        gsis=(),
        billing_mode="PAY_PER_REQUEST",
        rcu=5,
        wcu=5,
        contract_path=CONTROL_TABLE,
        contract=None,
    )


def ensure_control_table(client: Any, prefix: str, *, wait_seconds: float = 120) -> TableChange:
    """Create the control table if missing (with TTL on ``expires_at``); otherwise report
    how it differs."""
    change = ensure_table(client, control_table_spec(prefix), wait_seconds=wait_seconds)
    name = prefix + CONTROL_TABLE
    ttl = client.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
    if ttl.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
        client.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"},
        )
    return change
