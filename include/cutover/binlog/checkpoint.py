"""The sync's position, kept in the control table (``record = "SYNC#binlog"``) and advanced
only after DynamoDB has every item of the transactions up to it. A write never moves it back
(conditional on the stored ordinal), so two syncs of one contract cannot rewind each other."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from cutover.binlog.position import Position
from cutover.prepare.control_table import CONTROL_TABLE

RECORD = "SYNC#binlog"


class CheckpointStore:
    def __init__(self, client: Any, prefix: str) -> None:
        self.client = client
        self.table = prefix + CONTROL_TABLE

    def _key(self, contract: str) -> dict[str, Any]:
        return {"contract": {"S": contract}, "record": {"S": RECORD}}

    def load(self, contract: str) -> Position | None:
        item = self.client.get_item(
            TableName=self.table, Key=self._key(contract), ConsistentRead=True
        ).get("Item")
        if not item:
            return None
        return Position.from_dict(json.loads(item["position"]["S"]))

    def save(self, contract: str, position: Position, **figures: Any) -> bool:
        """Store ``position`` unless a later one is stored; False when it was."""
        item = {
            **self._key(contract),
            "position": {"S": json.dumps(position.to_dict())},
            "ordinal": {"N": str(position.ordinal)},
            "saved_at": {"S": dt.datetime.now(dt.UTC).isoformat()},
            "figures": {"S": json.dumps(figures, default=str)},
        }
        try:
            self.client.put_item(
                TableName=self.table,
                Item=item,
                ConditionExpression="attribute_not_exists(#o) OR #o <= :o",
                ExpressionAttributeNames={"#o": "ordinal"},
                ExpressionAttributeValues={":o": {"N": str(position.ordinal)}},
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def clear(self, contract: str) -> None:
        self.client.delete_item(TableName=self.table, Key=self._key(contract))
