"""The fence line of `cutover bench`: the write pause at each change of phase.

Writers update users through ``DualDatabase`` at a steady rate (50 requests/s by default)
while the contract moves 1 → 2 → 3 → 4 → 3 → 4 → 5 with fenced moves (``move_phase``: the
epoch bumped, the old store's writers held, the follower caught up, the new phase opened)
and the binlog sync follows. For each move: how long it took, and p50/p99/max latency of
the writes in flight while it ran (the pause the application sees); failed requests over
the whole run. Runs on the routing line's sample (its own database and table prefix).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import Any

from cutover.aws import dynamodb_client
from cutover.contract.model import Contract
from cutover.moves import move_phase
from cutover.phases.client import PhaseClient
from cutover.phases.model import Phase
from cutover.phases.store import PhaseStore
from cutover.routing.layer import DualDatabase
from cutover.routing.stats import percentile
from cutover.settings import Settings
from cutover.sync.runner import run_sync

log = logging.getLogger("cutover.bench")
PATH = (Phase.DUAL_WRITE, Phase.DUAL_READ_MYSQL_PRIMARY, Phase.DUAL_READ_DYNAMODB_PRIMARY,
        Phase.DUAL_READ_MYSQL_PRIMARY, Phase.DUAL_READ_DYNAMODB_PRIMARY,
        Phase.DYNAMODB_ONLY)  # fmt: skip
THREADS = 4
SETTLE_SECONDS = 2.0  # traffic in each phase before the next move


class _Writers:
    def __init__(self, layer: DualDatabase, users: list[int], rate: float) -> None:
        self.layer = layer
        self.users = users
        self.interval = THREADS / rate
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.done: list[tuple[float, float]] = []  # (start, end) of each write
        self.failed: list[str] = []
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(THREADS)]  # fmt: skip
        for t in self.threads:
            t.start()

    def _run(self, index: int) -> None:
        rng = random.Random(index)
        next_at = time.monotonic() + index * self.interval / THREADS
        n = 0
        while not self.stop.is_set():
            self.stop.wait(max(0.0, next_at - time.monotonic()))
            next_at += self.interval
            n += 1
            user = rng.choice(self.users)
            started = time.time()
            try:
                self.layer.update("USER", {"id": user}, {"bio": f"fence {index}.{n}"})
            except Exception as exc:  # counted: the figure says how many failed
                with self.lock:
                    self.failed.append(f"{type(exc).__name__}: {exc}")
                continue
            with self.lock:
                self.done.append((started, time.time()))

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)


def run_fence_bench(contract: Contract, bench: Settings, users: list[int],
                    rate: float = 50.0) -> dict[str, Any]:  # fmt: skip
    """Fenced moves under writes at ``rate`` requests/s on ``bench``'s prepared sample."""
    phases = PhaseClient(PhaseStore(dynamodb_client(bench), bench.table_prefix), ttl_seconds=1)
    layer = DualDatabase(contract, bench, phases=phases, shadow_rate=0.0)
    stop_sync = threading.Event()

    def follow() -> None:
        while not stop_sync.is_set():
            try:
                if run_sync(contract, bench, max_seconds=5, stop=stop_sync, record=False).get(
                    "stood_down"
                ):
                    stop_sync.wait(0.3)
            except Exception as exc:  # the move's catch-up says so if it matters
                log.info("fence: sync ended: %s", exc)
                stop_sync.wait(0.5)

    syncing = threading.Thread(target=follow, daemon=True)
    syncing.start()
    writers = _Writers(layer, users, rate)
    moves: list[dict[str, Any]] = []
    try:
        phase = Phase.MYSQL_ONLY
        for target in PATH:
            time.sleep(SETTLE_SECONDS)
            kind = "advance" if target > phase else "rollback"
            log.info("fence: %s to %s", kind, target.slug)
            started = time.time()
            move_phase(contract, bench, target, kind=kind, actor="cutover bench",
                       approved_by="cutover bench" if kind == "advance" else None,
                       reason="the bench goes back" if kind == "rollback" else None)  # fmt: skip
            moves.append({"from": int(phase), "to": int(target), "start": started,
                          "end": time.time()})  # fmt: skip
            phase = target
        time.sleep(SETTLE_SECONDS)
    finally:
        writers.finish()
        stop_sync.set()
        syncing.join(timeout=30)
        layer.close()
    out = []
    for m in moves:
        ms = [(end - start) * 1000 for start, end in writers.done
              if start < m["end"] and end > m["start"]]  # fmt: skip
        out.append({"from": m["from"], "to": m["to"],
                    "seconds": round(m["end"] - m["start"], 3), "writes": len(ms),
                    "p50_ms": round(percentile(ms, 50) or 0.0, 1),
                    "p99_ms": round(percentile(ms, 99) or 0.0, 1),
                    "max_ms": round(max(ms, default=0.0), 1)})  # fmt: skip
    return {"rate": rate, "moves": out, "writes": len(writers.done),
            "failed": len(writers.failed), "errors": writers.failed[:3]}  # fmt: skip


def format_fence(fence: dict[str, Any]) -> str:
    parts = [f"{m['from']}->{m['to']} {m['seconds']:.2f}s, {m['writes']} in flight, "
             f"{m['p50_ms']:.0f}/{m['p99_ms']:.0f}/{m['max_ms']:.0f}"
             for m in fence["moves"]]  # fmt: skip
    return (f"fence: write pause p50/p99/max ms at each change of phase, writes at "
            f"{fence['rate']:.0f}/s: " + "; ".join(parts)
            + f"; {fence['writes']} writes, {fence['failed']} failed")  # fmt: skip
