"""The DynamoDB side of the routing layer: key-addressed reads, the contract's access
patterns as Query calls, version-guarded puts and deletes, and the phase-4 transaction that
writes an item together with its outbox entry."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from typing import Any

from cutover.contract.model import Table
from cutover.contract.table_spec import attribute_types
from cutover.errors import TerminalError, TransientError
from cutover.load.dynamo_http import RETRYABLE_CODES, DynamoHttp, Reply
from cutover.prepare.control_table import CONTROL_TABLE
from cutover.transform.items import VERSION_ATTRIBUTE

AV = dict[str, Any]
_GUARD = "attribute_not_exists(#v) OR #v <= :v"


class StaleWrite(TerminalError):
    """A conditional write found the item other than it was read (changed, made or gone);
    ``failed``: the transaction's entries whose condition failed."""

    def __init__(self, message: str, failed: list[int] | None = None) -> None:
        super().__init__(message)
        self.failed = failed or []


def key_av(table: Table, key: Mapping[str, str]) -> dict[str, AV]:
    types = attribute_types(table)
    return {name: {types.get(name, "S"): str(value)} for name, value in key.items()}


def _guard(version: int | None) -> dict[str, Any]:
    """The write's condition: no newer version stored."""
    if version is None:
        return {}
    return {"ConditionExpression": _GUARD, "ExpressionAttributeNames": {"#v": VERSION_ATTRIBUTE},
            "ExpressionAttributeValues": {":v": {"N": str(version)}}}  # fmt: skip


def read_condition(read: int | None, exists: bool) -> str:
    """Optimistic concurrency: the item is as it was read (``#k`` the partition key, ``#v``
    the version, ``:r`` the version read), or there is still no item."""
    if not exists:
        return "attribute_not_exists(#k)"
    if read is None:
        return "attribute_exists(#k) AND attribute_not_exists(#v)"
    return "attribute_exists(#k) AND #v = :r"


class DynamoStore:
    """Thread-safe; ``attempts`` bounds the retries of one call (a request waits for
    at most a few short backoffs, then the circuit breaker decides)."""

    def __init__(self, http: DynamoHttp, prefix: str, attempts: int = 3) -> None:
        self.http = http
        self.prefix = prefix
        self.attempts = attempts
        self.control = prefix + CONTROL_TABLE

    def physical(self, table: Table) -> str:
        return self.prefix + table.table

    def call(self, target: str, body: dict[str, Any] | str) -> Reply:
        text = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
        last = ""
        for attempt in range(self.attempts):
            try:
                reply = self.http.post(target, text)
            except TransientError as exc:
                last = str(exc)
            else:
                if reply.status == 200 or reply.error_code not in RETRYABLE_CODES:
                    return reply
                last = reply.error_code
            time.sleep(0.02 * 2**attempt)
        raise TransientError(f"DynamoDB {target} failed {self.attempts} times: {last}")

    def _ok(self, reply: Reply, what: str) -> dict[str, Any]:
        if reply.status != 200:
            raise TerminalError(f"DynamoDB refused {what}: {reply.error_code} "
                                f"{reply.json().get('message', '')}")  # fmt: skip
        return reply.json()

    # --- reads ---------------------------------------------------------------------------

    def get(self, table: Table, key: Mapping[str, str]) -> dict[str, AV] | None:
        body = {"TableName": self.physical(table), "Key": key_av(table, key),
                "ConsistentRead": True}  # fmt: skip
        return self._ok(self.call("GetItem", body), f"GetItem on {table.table}").get("Item")

    def query(
        self, table: Table, pk_name: str, pk_value: str, *, index: str | None = None,
        sk_name: str | None = None, sk_prefix: str | None = None, limit: int | None = None,
    ) -> list[dict[str, AV]]:  # fmt: skip
        types = attribute_types(table)
        cond = "#p = :p"
        names = {"#p": pk_name}
        values: dict[str, AV] = {":p": {types.get(pk_name, "S"): pk_value}}
        if sk_prefix is not None and sk_name:
            cond += " AND begins_with(#s, :s)"
            names["#s"] = sk_name
            values[":s"] = {"S": sk_prefix}
        body: dict[str, Any] = {"TableName": self.physical(table), "KeyConditionExpression": cond,
                                "ExpressionAttributeNames": names,
                                "ExpressionAttributeValues": values}  # fmt: skip
        if index:
            body["IndexName"] = index
        else:
            body["ConsistentRead"] = True
        items: list[dict[str, AV]] = []
        while True:
            if limit:
                body["Limit"] = limit - len(items)
            page = self._ok(self.call("Query", body), f"Query on {table.table}")
            items.extend(page.get("Items", []))
            start = page.get("LastEvaluatedKey")
            if not start or (limit and len(items) >= limit):
                return items
            body["ExclusiveStartKey"] = start

    # --- writes --------------------------------------------------------------------------

    def put(self, table: Table, body: str, version: int | None) -> bool:
        """Put unless DynamoDB holds a newer version; False when it kept the newer one."""
        request = ('{"TableName":' + json.dumps(self.physical(table)) + ',"Item":' + body
                   + (("," + json.dumps(_guard(version))[1:-1]) if version is not None else "")
                   + "}")  # fmt: skip
        reply = self.call("PutItem", request)
        if reply.error_code == "ConditionalCheckFailedException":
            return False
        self._ok(reply, f"PutItem on {table.table}")
        return True

    def delete(self, table: Table, key: Mapping[str, str], version: int | None) -> bool:
        body = {"TableName": self.physical(table), "Key": key_av(table, key), **_guard(version)}
        reply = self.call("DeleteItem", body)
        if reply.error_code == "ConditionalCheckFailedException":
            return False
        self._ok(reply, f"DeleteItem on {table.table}")
        return True

    def transact(self, operations: list[dict[str, Any]], outbox: dict[str, AV] | None) -> None:
        """Write ``operations`` (TransactWriteItems entries) and the outbox item atomically;
        ``StaleWrite`` naming the entries whose condition failed."""
        items = list(operations)
        if outbox is not None:
            items.append({"Put": {"TableName": self.control, "Item": outbox}})
        reply = self.call("TransactWriteItems", {"TransactItems": items})
        if reply.error_code == "TransactionCanceledException":
            reasons = [r.get("Code") for r in reply.json().get("CancellationReasons", [])]
            failed = [i for i, code in enumerate(reasons) if code == "ConditionalCheckFailed"]
            if failed:
                raise StaleWrite("an item changed since it was read; re-read and retry",
                                 failed)  # fmt: skip
            raise TransientError(f"DynamoDB cancelled the transaction: {reasons}")
        self._ok(reply, "TransactWriteItems")

    def update_attributes(self, table: Table, key: Mapping[str, str],
                          values: Mapping[str, AV | None], read: int | None,
                          version: int) -> bool:  # fmt: skip
        """Set (or remove, for None) ``values`` on the item of ``key`` and stamp it
        ``version``, if the item is still there at version ``read``; False otherwise."""
        names = {"#v": VERSION_ATTRIBUTE, "#k": table.pk}
        expr_values: dict[str, AV] = {":n": {"N": str(version)}}
        sets, removes = ["#v = :n"], []
        for i, (name, av) in enumerate(values.items()):
            names[f"#a{i}"] = name
            if av is None:
                removes.append(f"#a{i}")
            else:
                sets.append(f"#a{i} = :a{i}")
                expr_values[f":a{i}"] = av
        update = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
        condition = read_condition(read, exists=True)
        body = {
            "TableName": self.physical(table),
            "Key": key_av(table, key),
            "UpdateExpression": update,
            "ConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": {
                **expr_values,
                **({":r": {"N": str(read)}} if read else {}),
            },
        }
        reply = self.call("UpdateItem", body)
        if reply.error_code == "ConditionalCheckFailedException":
            return False
        self._ok(reply, f"UpdateItem on {table.table}")
        return True

    def item_op(self, kind: str, table: Table, item_or_key: Mapping[str, Any],
                read: int | None, exists: bool) -> dict[str, Any]:  # fmt: skip
        """A TransactWriteItems ``Put`` (of an item) or ``Delete`` (of a key) conditioned on
        what was read: the item at version ``read``, or (``exists`` False) no item."""
        names = {"#k": table.pk, **({"#v": VERSION_ATTRIBUTE} if exists else {})}
        entry: dict[str, Any] = {"TableName": self.physical(table),
                                 "ConditionExpression": read_condition(read, exists),
                                 "ExpressionAttributeNames": names}  # fmt: skip
        if read is not None and exists:
            entry["ExpressionAttributeValues"] = {":r": {"N": str(read)}}
        if kind == "Put":
            entry["Item"] = dict(item_or_key)
        else:
            entry["Key"] = key_av(table, item_or_key)
        return {kind: entry}

    # --- the phase-4 outbox (items of the control table) ---------------------------------

    @staticmethod
    def outbox_item(contract: str, version: int, payload: dict[str, Any]) -> dict[str, AV]:
        record = f"OUTBOX#{version:020d}#{uuid.uuid4().hex[:8]}"
        return {"contract": {"S": contract}, "record": {"S": record},
                "payload": {"S": json.dumps(payload, default=str)}}  # fmt: skip

    def outbox_pending(self, contract: str, limit: int = 500) -> list[tuple[str, dict]]:
        body = {"TableName": self.control,
                "KeyConditionExpression": "#c = :c AND begins_with(#r, :o)",
                "ExpressionAttributeNames": {"#c": "contract", "#r": "record"},
                "ExpressionAttributeValues": {":c": {"S": contract}, ":o": {"S": "OUTBOX#"}},
                "ConsistentRead": True, "Limit": limit}  # fmt: skip
        page = self._ok(self.call("Query", body), "Query on the control table")
        return [(i["record"]["S"], json.loads(i["payload"]["S"])) for i in page.get("Items", [])]

    def outbox_done(self, contract: str, record: str) -> None:
        body = {"TableName": self.control,
                "Key": {"contract": {"S": contract}, "record": {"S": record}}}  # fmt: skip
        self._ok(self.call("DeleteItem", body), "DeleteItem on the control table")
