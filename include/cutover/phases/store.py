"""The phase store: one item per contract in the control table (record ``PHASE``), moved
with conditional writes on its version so two operators cannot both win, plus an
append-only history (``HISTORY#…``) and the latest evidence of each kind
(``EVIDENCE#<kind>``) that gates rest on."""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from cutover.aws import dynamodb_client
from cutover.errors import TerminalError
from cutover.phases.model import FLAGS, Phase
from cutover.prepare.control_table import CONTROL_TABLE
from cutover.settings import Settings

if TYPE_CHECKING:
    from cutover.contract.model import Contract

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
    version: int  # the epoch: every write through cutover carries it (cutover.phases.fence)
    updated_by: str
    updated_at: str
    evidence_run_id: str | None
    approved_by: str | None = None
    moving_to: Phase | None = None  # set while a fenced move is in progress
    fenced_seconds: float | None = None  # on the state a finished move returns

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
            "moving_to": self.moving_to.value if self.moving_to else None,
            **({"fenced_seconds": self.fenced_seconds} if self.fenced_seconds is not None else {}),
        }


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


def _seconds_since(iso: str, now: str) -> float | None:
    try:
        return round(
            (dt.datetime.fromisoformat(now) - dt.datetime.fromisoformat(iso)).total_seconds(), 3
        )
    except ValueError:
        return None


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
        moving_to = item.get("moving_to", {}).get("N")
        return PhaseState(
            contract=contract,
            phase=Phase(int(item["phase"]["N"])),
            version=int(item["version"]["N"]),
            updated_by=item["updated_by"]["S"],
            updated_at=item["updated_at"]["S"],
            evidence_run_id=item.get("evidence_run_id", {}).get("S"),
            approved_by=item.get("approved_by", {}).get("S"),
            moving_to=Phase(int(moving_to)) if moving_to is not None else None,
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
        a history entry, in one transaction; otherwise raise ``ConcurrentChange``. Unfenced:
        writers of the old phase may still land after it (``begin_move``/``finish_move``, as
        ``cutover.phases.fence.fenced_move`` calls them, fence the change)."""
        return self._write(
            current, target, moving_to=None, actor=actor, kind=kind, target=target,
            evidence=evidence, approved_by=approved_by, reason=reason,
            doing=f"moving it to {target.slug}",
        )  # fmt: skip

    def begin_move(
        self, current: PhaseState, target: Phase, *, actor: str, kind: str
    ) -> PhaseState:
        """Fence ``current`` for a move to ``target``: a new epoch (version + 1) with the
        phase unchanged and ``moving_to`` set, so every write of the old epoch fails its
        check from now on and writers wait for the move to end (``PhaseClient.wait_open``)."""
        if current.moving_to is not None:
            raise ConcurrentChange(
                f"contract {current.contract!r} is already being moved to "
                f"{current.moving_to.slug} (by {current.updated_by} at {current.updated_at}); "
                "wait for that move to end, or if its mover died run `cutover phase unfence "
                "CONTRACT --reason ...`"
            )
        return self._write(
            current, current.phase, moving_to=target, actor=actor, kind="fence", target=target,
            evidence={"move": kind}, approved_by=None, carry=current,
            doing=f"fencing it for {target.slug}",
        )  # fmt: skip

    def finish_move(
        self,
        fenced: PhaseState,
        target: Phase,
        *,
        actor: str,
        kind: str,
        evidence: dict[str, Any] | None = None,
        approved_by: str | None = None,
        reason: str | None = None,
    ) -> PhaseState:
        """End the move ``begin_move`` fenced: ``target`` at the next epoch, writes open."""
        if fenced.moving_to != target:
            fenced_for = fenced.moving_to.slug if fenced.moving_to else "no move"
            raise TerminalError(
                f"contract {fenced.contract!r} was fenced for {fenced_for}, not for "
                f"{target.slug}: fence it with begin_move for {target.slug} first"
            )
        return self._write(
            fenced, target, moving_to=None, actor=actor, kind=kind, target=target,
            evidence=evidence, approved_by=approved_by, reason=reason,
            doing=f"finishing its move to {target.slug}", fenced_since=fenced.updated_at,
        )  # fmt: skip

    def abort_move(self, fenced: PhaseState, *, actor: str, reason: str) -> PhaseState:
        """Give up the move ``begin_move`` fenced: the phase stays, at the next epoch."""
        target = fenced.moving_to or fenced.phase
        return self._write(
            fenced, fenced.phase, moving_to=None, actor=actor, kind="fence_aborted",
            target=target, evidence=None, approved_by=None, reason=reason, carry=fenced,
            doing=f"aborting its move to {target.slug}", fenced_since=fenced.updated_at,
        )  # fmt: skip

    def _write(
        self,
        current: PhaseState,
        phase: Phase,
        *,
        moving_to: Phase | None,
        actor: str,
        kind: str,
        target: Phase,
        evidence: dict[str, Any] | None,
        approved_by: str | None,
        reason: str | None = None,
        carry: PhaseState | None = None,
        doing: str,
        fenced_since: str | None = None,
    ) -> PhaseState:
        """Put the PHASE item (``phase`` at version + 1, ``moving_to`` set or gone) and a
        history entry in one transaction, conditional on ``current.version``. ``carry``: the
        state whose evidence run and approver the item keeps (the phase did not change)."""
        now = _now()
        new = PhaseState(
            contract=current.contract,
            phase=phase,
            version=current.version + 1,
            updated_by=actor,
            updated_at=now,
            evidence_run_id=carry.evidence_run_id if carry else (evidence or {}).get("run_id"),
            approved_by=carry.approved_by if carry else approved_by,
            moving_to=moving_to,
            fenced_seconds=_seconds_since(fenced_since, now) if fenced_since else None,
        )
        item: dict[str, Any] = {
            "contract": {"S": current.contract},
            "record": {"S": "PHASE"},
            "phase": {"N": str(phase.value)},
            "version": {"N": str(new.version)},
            "updated_by": {"S": actor},
            "updated_at": {"S": now},
            "flags": {"S": json.dumps(FLAGS[phase].to_dict())},
        }
        if moving_to is not None:
            item["moving_to"] = {"N": str(moving_to.value)}
        if new.evidence_run_id:
            item["evidence_run_id"] = {"S": new.evidence_run_id}
        if new.approved_by:
            item["approved_by"] = {"S": new.approved_by}
        entry = {
            "at": now, "kind": kind, "from": current.phase.value, "to": target.value,
            "actor": actor, "approved_by": approved_by, "reason": reason,
            "evidence": evidence, "version": new.version,
        }  # fmt: skip
        if new.fenced_seconds is not None:
            entry["fenced_seconds"] = new.fenced_seconds
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
                    f"contract {current.contract!r} changed while {doing}: it is no longer at "
                    f"version {current.version}; run `cutover phase show` and decide again"
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


def phase_store(settings: Settings) -> PhaseStore:
    """The phase store in the control table of ``settings``' DynamoDB (under its prefix)."""
    return PhaseStore(dynamodb_client(settings), settings.table_prefix)


def record(settings: Settings, contract: Contract, kind: str, payload: dict[str, Any]) -> None:
    """Record ``payload`` as the contract's latest evidence of ``kind``."""
    phase_store(settings).record_evidence(contract.name, kind, payload)
