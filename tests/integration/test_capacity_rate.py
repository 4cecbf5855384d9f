"""`--rate-share` turns a share of a provisioned table's write capacity into items/s."""

from __future__ import annotations

import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from cutover.backfill.run import BackfillRun
from cutover.contract.load import parse_contract
from cutover.errors import TerminalError
from cutover.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.dynamodb]

CONTRACT = parse_contract(
    {
        "tables": [
            {
                "table": "Rated",
                "type": "single-entity",
                "source_table": "t",
                "pk": "id",
                "attributes": [
                    {"name": "id", "type": "N", "source_table": "t", "source_column": "id"}
                ],
            }
        ]
    }
)


def test_share_of_provisioned_capacity_and_refusal_on_demand(
    settings: Settings, ddb: Any, tmp_path: Path
) -> None:
    run = BackfillRun(CONTRACT, replace(settings, staging=tmp_path.as_uri()), "r1")
    provisioned = f"{settings.table_prefix}prov_{uuid.uuid4().hex[:4]}"
    on_demand = f"{settings.table_prefix}od_{uuid.uuid4().hex[:4]}"
    keys = {
        "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "N"}],
    }
    ddb.create_table(
        TableName=provisioned,
        BillingMode="PROVISIONED",
        ProvisionedThroughput={"ReadCapacityUnits": 5, "WriteCapacityUnits": 80},
        **keys,
    )
    ddb.create_table(TableName=on_demand, BillingMode="PAY_PER_REQUEST", **keys)
    try:
        assert run.capacity_rate(provisioned, 0.25) == 20.0
        with pytest.raises(TerminalError, match="on-demand"):
            run.capacity_rate(on_demand, 0.5)
    finally:
        ddb.delete_table(TableName=provisioned)
        ddb.delete_table(TableName=on_demand)
