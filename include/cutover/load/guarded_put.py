"""PutItem guarded by the row version: an older row never overwrites a newer item (one the
application wrote in dual-write, or a later catch-up)."""

from __future__ import annotations

import json
import time
from typing import Literal

from cutover.errors import TerminalError, TransientError
from cutover.load.batch_writer import DEFAULT_BACKOFF, Backoff
from cutover.load.dynamo_http import RETRYABLE_CODES, DynamoHttp
from cutover.transform.items import VERSION_ATTRIBUTE

_CONDITION = "attribute_not_exists(#v) OR #v <= :v"


def guarded_put(
    http: DynamoHttp, table: str, item_body: str, version: int, backoff: Backoff = DEFAULT_BACKOFF
) -> Literal["written", "kept_newer"]:
    body = (
        '{"TableName":'
        + json.dumps(table)
        + ',"Item":'
        + item_body
        + ',"ConditionExpression":"'
        + _CONDITION
        + '"'
        + ',"ExpressionAttributeNames":{"#v":"'
        + VERSION_ATTRIBUTE
        + '"}'
        + ',"ExpressionAttributeValues":{":v":{"N":"'
        + str(version)
        + '"}}}'
    )
    for attempt in range(backoff.max_attempts):
        try:
            reply = http.post("PutItem", body)
        except TransientError:
            reply = None
        if reply is not None:
            if reply.status == 200:
                return "written"
            code = reply.error_code
            if code == "ConditionalCheckFailedException":
                return "kept_newer"
            if code not in RETRYABLE_CODES and reply.status < 500:
                raise TerminalError(
                    f"DynamoDB refused an item for table {table!r}: {code} "
                    f"{reply.json().get('message', '')}"
                )
        time.sleep(backoff.delay(attempt + 1))
    raise TransientError(f"PutItem on {table!r} still failing after {backoff.max_attempts} tries")
