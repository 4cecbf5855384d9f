"""One applier of a contract's binlog at a time, batch by batch: a lease item in the control
table (``record = "SYNC#lease"``) taken before a batch is derived and released once its items
and checkpoint are written, renewed meanwhile by a heartbeat.

Why: the version guard stops an older derivation from overwriting a newer item, but it
cannot see an item that is gone. Two syncs at once (the backfill's handoff beside the live
sync, or a sync an operator starts beside the DAG's) could otherwise interleave so that one
deletes an item after its row was deleted and the other then puts back what it derived
before the delete. Under the lease each batch derives from MySQL as it stands after every
batch applied before it, so a row deleted is never derived again."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from cutover.errors import TransientError
from cutover.prepare.control_table import CONTROL_TABLE

RECORD = "SYNC#lease"
TTL_SECONDS = 10.0  # a holder that died frees the lease this long after its last heartbeat
HEARTBEAT_SECONDS = 3.0
WAIT_SECONDS = 120.0  # how long a batch waits for another applier's batch to finish


class LeaseLost(TransientError):
    """The lease expired or went to another applier while a batch held it."""


class SyncLease:
    def __init__(self, client: Any, prefix: str, contract: str) -> None:
        self.client = client
        self.table = prefix + CONTROL_TABLE
        self.contract = contract
        self.owner = uuid.uuid4().hex
        self.lost = threading.Event()

    def _key(self) -> dict[str, Any]:
        return {"contract": {"S": self.contract}, "record": {"S": RECORD}}

    def _claim(self) -> bool:
        now = time.time()
        item = {**self._key(), "owner": {"S": self.owner},
                "expires": {"N": f"{now + TTL_SECONDS:.3f}"}}  # fmt: skip
        values = {":me": {"S": self.owner}, ":now": {"N": f"{now:.3f}"}}
        try:
            self.client.put_item(
                TableName=self.table,
                Item=item,
                ConditionExpression="attribute_not_exists(#o) OR #o = :me OR #e < :now",
                ExpressionAttributeNames={"#o": "owner", "#e": "expires"},
                ExpressionAttributeValues=values,
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def _release(self) -> None:
        # a lease that had expired and gone to another applier is theirs to release
        with suppress(self.client.exceptions.ConditionalCheckFailedException):
            self.client.delete_item(
                TableName=self.table,
                Key=self._key(),
                ConditionExpression="#o = :me",
                ExpressionAttributeNames={"#o": "owner"},
                ExpressionAttributeValues={":me": {"S": self.owner}},
            )

    @contextmanager
    def held(self, wait: float = WAIT_SECONDS) -> Iterator[None]:
        """Hold the lease for the block (waiting up to ``wait`` for it), renewed by a
        heartbeat; ``check()`` inside raises ``LeaseLost`` once a renewal failed."""
        deadline = time.monotonic() + wait
        while not self._claim():
            if time.monotonic() >= deadline:
                raise TransientError(
                    f"another sync of {self.contract} has held its lease for over {wait:.0f} "
                    "s; two syncs of one contract take turns batch by batch"
                )
            time.sleep(0.1)
        self.lost.clear()
        done = threading.Event()

        def beat() -> None:
            while not done.wait(HEARTBEAT_SECONDS):
                try:
                    if not self._claim():
                        self.lost.set()
                        return
                except Exception:  # DynamoDB not answering: the lease may lapse
                    self.lost.set()
                    return

        heart = threading.Thread(target=beat, name="cutover-sync-lease", daemon=True)
        heart.start()
        try:
            yield
        finally:
            done.set()
            heart.join(timeout=HEARTBEAT_SECONDS + 1)
            self._release()

    def check(self) -> None:
        if self.lost.is_set():
            raise LeaseLost(f"the sync lease of {self.contract} lapsed during a batch; the "
                            "batch is applied again by the next run")  # fmt: skip
