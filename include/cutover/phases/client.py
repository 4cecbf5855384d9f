"""What an application reads: the flags of a contract's current phase, cached for a few
seconds so every request does not hit the control table.

A cached phase may be stale by up to the ttl, and while the phase store does not answer
the client keeps the last state it read. That is safe for reads only, and it is all writes
need too: a write carries the epoch of the state it was routed under and checks it in the
write itself (``cutover.phases.fence``: a fence row read with a shared lock in MySQL, a
ConditionCheck on the phase item in DynamoDB), so a stale cache cannot let a write land in a
phase that has ended. A write that meets a moved epoch re-reads the state (``wait_open``)
and retries.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from cutover.errors import TerminalError
from cutover.phases.model import FLAGS, Flags, Phase
from cutover.phases.store import PhaseState, PhaseStore

log = logging.getLogger("cutover.phases")

POLL_SECONDS = 0.05  # how often wait_open reads the phase store while a move is in progress


class PhaseClient:
    def __init__(self, store: PhaseStore, ttl_seconds: float = 5.0) -> None:
        self.store = store
        self.ttl = ttl_seconds
        self._cache: dict[str, tuple[float, PhaseState]] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Any, ttl_seconds: float = 5.0) -> PhaseClient:
        from cutover.aws import dynamodb_client

        return cls(PhaseStore(dynamodb_client(settings, attempts=2), settings.table_prefix),
                   ttl_seconds)  # fmt: skip

    def state(self, contract: str, *, fresh: bool = False) -> PhaseState:
        """The contract's phase state (its ``version`` is the epoch writes carry), cached for
        the ttl; ``fresh`` reads the store and raises when it does not answer."""
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(contract)
        if not fresh and cached and now - cached[0] < self.ttl:
            return cached[1]
        try:
            state = self.store.get(contract)
        except Exception as exc:
            # the phase store lives in DynamoDB: while it cannot answer, reads keep the state
            # last read (and retry after another ttl) rather than fail; writes are fenced
            if fresh or cached is None:
                raise
            log.warning("phase store unavailable, keeping %s: %s", cached[1].phase.slug, exc)
            state = cached[1]
        with self._lock:
            self._cache[contract] = (now, state)
        return state

    def phase(self, contract: str) -> Phase:
        return self.state(contract).phase

    def flags(self, contract: str) -> Flags:
        return FLAGS[self.phase(contract)]

    def wait_open(self, contract: str, timeout_seconds: float = 60.0) -> PhaseState:
        """The contract's state once no move is in progress, read fresh every
        ``POLL_SECONDS``; a ``TerminalError`` after ``timeout_seconds``."""
        deadline = time.monotonic() + timeout_seconds
        state: PhaseState | None = None
        error: Exception | None = None
        while True:
            try:
                state = self.state(contract, fresh=True)
                error = None
                if state.moving_to is None:
                    return state
            except Exception as exc:  # the store not answering for a moment: poll on
                error = exc
            left = deadline - time.monotonic()
            if left <= 0:
                break
            time.sleep(min(POLL_SECONDS, left))
        if state is not None and state.moving_to is not None:
            raise TerminalError(
                f"contract {contract!r} has been moving from {state.phase.value} "
                f"({state.phase.slug}) to {state.moving_to.value} ({state.moving_to.slug}) for "
                f"over {timeout_seconds:g} s (since {state.updated_at}, by {state.updated_by}); "
                "writes wait until it ends: if that move's mover died, run `cutover phase "
                "unfence CONTRACT --reason ...`"
            )
        raise TerminalError(
            f"the phase store did not answer for contract {contract!r} within "
            f"{timeout_seconds:g} s ({error}); writes cannot be routed until it does"
        )
