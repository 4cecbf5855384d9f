"""The migration control table: one item per contract for its current phase
(record ``PHASE``) and an append-only history (``HISTORY#<timestamp>#<seq>``)."""

from __future__ import annotations

from typing import Any

from cutover.contract.table_spec import TableSpec
from cutover.prepare.tables import TableChange, ensure_table

CONTROL_TABLE = "cutover_control"


def control_table_spec(prefix: str = "") -> TableSpec:
    return TableSpec(
        name=prefix + CONTROL_TABLE,
        hash_key="contract",
        range_key="record",
        attribute_types={"contract": "S", "record": "S"},
        gsis=(),
        billing_mode="PAY_PER_REQUEST",
        rcu=5,
        wcu=5,
        contract="cutover",
        path="control table",
    )


def ensure_control_table(client: Any, prefix: str = "") -> TableChange:
    return ensure_table(client, control_table_spec(prefix))
