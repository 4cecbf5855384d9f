"""What an application reads: the flags of a contract's current phase, cached for a few
seconds so every request does not hit the control table."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from cutover.phases.model import FLAGS, Flags, Phase
from cutover.phases.store import PhaseStore

log = logging.getLogger("cutover.phases")


class PhaseClient:
    def __init__(self, store: PhaseStore, ttl_seconds: float = 5.0) -> None:
        self.store = store
        self.ttl = ttl_seconds
        self._cache: dict[str, tuple[float, Phase]] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Any, ttl_seconds: float = 5.0) -> PhaseClient:
        from cutover.aws import dynamodb_client

        return cls(PhaseStore(dynamodb_client(settings, attempts=2), settings.table_prefix),
                   ttl_seconds)  # fmt: skip

    def phase(self, contract: str) -> Phase:
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(contract)
            if cached and now - cached[0] < self.ttl:
                return cached[1]
        try:
            phase = self.store.get(contract).phase
        except Exception as exc:
            # the phase store lives in DynamoDB: while it cannot answer, an application keeps
            # the phase it last read (and retries after another ttl) rather than failing
            if cached is None:
                raise
            log.warning("phase store unavailable, keeping %s: %s", cached[1].slug, exc)
            phase = cached[1]
        with self._lock:
            self._cache[contract] = (now, phase)
        return phase

    def flags(self, contract: str) -> Flags:
        return FLAGS[self.phase(contract)]
