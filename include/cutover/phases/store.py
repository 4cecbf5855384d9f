"""The phase store: one item per contract in the control table (record ``PHASE``), moved
with conditional writes on its version so two operators cannot both win, plus an
append-only history (``HISTORY#…``) and the latest evidence of each kind
(``EVIDENCE#<kind>``) that gates rest on."""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from cutover.errors import TerminalError
from cutover.phases.model import FLAGS, Phase
from cutover.prepare.control_table import CONTROL_TABLE

# evidence kinds kept over time as well as latest (the routing layer's figures and the
# binlog sync's lag), for 30 days
SERIES_KINDS = ("shadow_reads", "dual_writes", "sync")
SERIES_KEEP_SECONDS = 30 * 24 * 3600


class ConcurrentChange(TerminalError):
    """Someone else moved the contract first; re-read and decide again."""


@dataclass(frozen=True)
class PhaseState:
    contract: str
    phase: Phase
    version: int
    updated_by: str
    updated_at: str
    evidence_run_id: str | None
    approved_by: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "contract": self.contract,
            "phase": self.phase.value,
            "phase_name": self.phase.slug,
            "flags": FLAGS[self.phase].to_dict(),
            "version": self.version,
            "updated_by": self.updated_by,
            "updated_at": self.updated_at,
            "evidence_run_id": self.evidence_run_id,
            "approved_by": self.approved_by,
        }


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


class PhaseStore:
    def __init__(self, client: Any, prefix: str = "") -> None:
        self.client = client
        self.table = prefix + CONTROL_TABLE

    # --- reading -------------------------------------------------------------------------

    def get(self, contract: str) -> PhaseState:
        item = self.client.get_item(
            TableName=self.table,
            Key={"contract": {"S": contract}, "record": {"S": "PHASE"}},
            ConsistentRead=True,
        ).get("Item")
        if item is None:
            return PhaseState(contract, Phase.MYSQL_ONLY, 0, "", "", None)
        return PhaseState(
            contract=contract,
            phase=Phase(int(item["phase"]["N"])),
            version=int(item["version"]["N"]),
            updated_by=item["updated_by"]["S"],
            updated_at=item["updated_at"]["S"],
            evidence_run_id=item.get("evidence_run_id", {}).get("S"),
            approved_by=item.get("approved_by", {}).get("S"),
        )

    def history(self, contract: str) -> list[dict[str, Any]]:
        pages = self.client.get_paginator("query").paginate(
            TableName=self.table,
            KeyConditionExpression="#c = :c AND begins_with(#r, :h)",
            ExpressionAttributeNames={"#c": "contract", "#r": "record"},
            ExpressionAttributeValues={":c": {"S": contract}, ":h": {"S": "HISTORY#"}},
            ConsistentRead=True,
        )
        return [json.loads(i["entry"]["S"]) for p in pages for i in p["Items"]]

    # --- moving --------------------------------------------------------------------------

    def move(
        self,
        current: PhaseState,
        target: Phase,
        *,
        actor: str,
        kind: str,
        evidence: dict[str, Any] | None = None,
        approved_by: str | None = None,
        reason: str | None = None,
    ) -> PhaseState:
        """Write ``target`` if the stored version is still ``current.version``, together with
        a history entry, in one transaction; otherwise raise ``ConcurrentChange``."""
        now = _now()
        new = PhaseState(
            contract=current.contract,
            phase=target,
            version=current.version + 1,
            updated_by=actor,
            updated_at=now,
            evidence_run_id=(evidence or {}).get("run_id"),
            approved_by=approved_by,
        )
        item: dict[str, Any] = {
            "contract": {"S": current.contract},
            "record": {"S": "PHASE"},
            "phase": {"N": str(target.value)},
            "version": {"N": str(new.version)},
            "updated_by": {"S": actor},
            "updated_at": {"S": now},
            "flags": {"S": json.dumps(FLAGS[target].to_dict())},
        }
        if new.evidence_run_id:
            item["evidence_run_id"] = {"S": new.evidence_run_id}
        if approved_by:
            item["approved_by"] = {"S": approved_by}
        entry = {
            "at": now, "kind": kind, "from": current.phase.value, "to": target.value,
            "actor": actor, "approved_by": approved_by, "reason": reason,
            "evidence": evidence, "version": new.version,
        }  # fmt: skip
        if current.version == 0:
            condition = {"ConditionExpression": "attribute_not_exists(#v)"}
        else:
            condition = {
                "ConditionExpression": "#v = :v",
                "ExpressionAttributeValues": {":v": {"N": str(current.version)}},
            }
        try:
            self.client.transact_write_items(
                TransactItems=[
                    {"Put": {"TableName": self.table, "Item": item,
                             "ExpressionAttributeNames": {"#v": "version"}, **condition}},
                    {"Put": {"TableName": self.table, "Item": {
                        "contract": {"S": current.contract},
                        "record": {"S": f"HISTORY#{now}#{new.version:06d}"},
                        "entry": {"S": json.dumps(entry, default=str)}},
                        "ConditionExpression": "attribute_not_exists(#r)",
                        "ExpressionAttributeNames": {"#r": "record"}}},
                ]
            )  # fmt: skip
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("TransactionCanceledException",
                                                 "ConditionalCheckFailedException"):  # fmt: skip
                raise ConcurrentChange(
                    f"contract {current.contract!r} changed while moving it to "
                    f"{target.slug}: it is no longer at version {current.version}; "
                    "run `cutover phase show` and decide again"
                ) from None
            raise
        return new

    # --- evidence ------------------------------------------------------------------------

    def record_evidence(self, contract: str, kind: str, payload: dict[str, Any]) -> None:
        """Keep ``payload`` as the latest evidence of ``kind``; for the kinds of
        ``SERIES_KINDS`` also append its scalar figures to their series (the panel charts
        them over time)."""
        payload = {**payload, "kind": kind, "recorded_at": payload.get("recorded_at") or _now()}
        self.client.put_item(
            TableName=self.table,
            Item={"contract": {"S": contract}, "record": {"S": f"EVIDENCE#{kind}"},
                  "payload": {"S": json.dumps(payload, default=str)}},
        )  # fmt: skip
        if kind in SERIES_KINDS:
            point = {k: v for k, v in payload.items() if isinstance(v, int | float | str)}
            self.client.put_item(
                TableName=self.table,
                Item={"contract": {"S": contract},
                      "record": {"S": f"SERIES#{kind}#{payload['recorded_at']}"},
                      "payload": {"S": json.dumps(point, default=str)},
                      "expires_at": {"N": str(int(time.time()) + SERIES_KEEP_SECONDS)}},
            )  # fmt: skip

    def series(self, contract: str, kind: str, limit: int = 500) -> list[dict[str, Any]]:
        """The last ``limit`` points of ``kind``'s series, oldest first."""
        reply = self.client.query(
            TableName=self.table,
            KeyConditionExpression="#c = :c AND begins_with(#r, :s)",
            ExpressionAttributeNames={"#c": "contract", "#r": "record"},
            ExpressionAttributeValues={":c": {"S": contract}, ":s": {"S": f"SERIES#{kind}#"}},
            ScanIndexForward=False,
            Limit=limit,
        )
        return [json.loads(i["payload"]["S"]) for i in reversed(reply["Items"])]

    def evidence(self, contract: str) -> dict[str, dict[str, Any]]:
        pages = self.client.get_paginator("query").paginate(
            TableName=self.table,
            KeyConditionExpression="#c = :c AND begins_with(#r, :e)",
            ExpressionAttributeNames={"#c": "contract", "#r": "record"},
            ExpressionAttributeValues={":c": {"S": contract}, ":e": {"S": "EVIDENCE#"}},
            ConsistentRead=True,
        )
        out = {}
        for page in pages:
            for item in page["Items"]:
                out[item["record"]["S"].removeprefix("EVIDENCE#")] = json.loads(
                    item["payload"]["S"]
                )
        return out
