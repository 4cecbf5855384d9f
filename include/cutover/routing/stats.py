"""Figures the routing layer keeps while it serves: the writes of phases 4-5 (in phase 4,
failures of the second store and DynamoDB's outbox; phases 1-3 write MySQL only and count
none), shadow-read comparisons per entity and operation with sampled mismatches, and latency
per store and operation. Thread-safe; kept per phase, because the evidence a gate asks for
is that of the phase the contract is in."""

from __future__ import annotations

import random
import threading
from collections import defaultdict
from typing import Any

import numpy as np

from cutover.errors import TerminalError

MAX_SAMPLES = 20_000
MAX_MISMATCHES_SHOWN = 25


def percentile(values: list[float], pct: float) -> float | None:
    """The ``pct`` percentile (0-100) of ``values``, interpolated linearly between the two
    nearest ranks (numpy's "linear", which is ``statistics.quantiles``' "inclusive" method,
    as the sync bench reports its lag); None when there are no values."""
    if not values:
        return None
    if not 0 <= pct <= 100:
        raise TerminalError(f"a percentile is between 0 and 100, not {pct!r}: ask for p50 as 50")
    return float(np.percentile(values, pct, method="linear"))


class LatencySample:
    """Latencies (ms) of one kind of request: their count and a uniform sample of at most
    ``MAX_SAMPLES`` of them (a reservoir), so that a long run keeps bounded memory."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self.samples: list[float] = []
        self.count = 0
        self._rng = rng or random.Random()

    def add(self, ms: float) -> None:
        self.count += 1
        if len(self.samples) < MAX_SAMPLES:
            self.samples.append(ms)
        else:
            slot = self._rng.randrange(self.count)
            if slot < MAX_SAMPLES:
                self.samples[slot] = ms

    def percentile(self, pct: float) -> float | None:
        return percentile(self.samples, pct)

    def summary(self) -> dict[str, Any]:
        return {"count": self.count, "p50_ms": _round(self.percentile(50)),
                "p99_ms": _round(self.percentile(99))}  # fmt: skip


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


class PhaseStats:
    def __init__(self) -> None:
        self.writes = 0
        self.failures = 0  # phase 4: writes whose second store failed
        self.fallbacks = 0
        self.fenced = 0  # writes carried out again after a change of phase
        self.comparisons: dict[tuple[str, str], int] = defaultdict(int)
        self.mismatches: dict[tuple[str, str], int] = defaultdict(int)
        self.transient: dict[tuple[str, str], int] = defaultdict(int)
        self.errors: dict[tuple[str, str], int] = defaultdict(int)
        self.mismatched: list[dict[str, Any]] = []
        self.latency: dict[tuple[str, str], LatencySample] = defaultdict(LatencySample)


class RoutingStats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.by_phase: dict[int, PhaseStats] = defaultdict(PhaseStats)
        self.replayed = 0
        self.outbox_peak = 0

    def latency(self, phase: int, store: str, op: str, ms: float) -> None:
        with self._lock:
            self.by_phase[phase].latency[(store, op)].add(ms)

    def write(self, phase: int, *, failed: bool) -> None:
        with self._lock:
            stats = self.by_phase[phase]
            stats.writes += 1
            stats.failures += failed

    def fenced(self, phase: int) -> None:
        with self._lock:
            self.by_phase[phase].fenced += 1

    def fallback(self, phase: int) -> None:
        with self._lock:
            self.by_phase[phase].fallbacks += 1

    def compared(
        self, phase: int, entity: str, op: str, outcome: str, detail: dict[str, Any] | None = None
    ) -> None:
        """``outcome``: match, mismatch, transient (differed, then agreed on a re-read: a
        write in flight) or error (the shadow store did not answer)."""
        with self._lock:
            stats = self.by_phase[phase]
            key = (entity, op)
            if outcome == "error":
                stats.errors[key] += 1
                return
            stats.comparisons[key] += 1
            if outcome == "mismatch":
                stats.mismatches[key] += 1
                if detail and len(stats.mismatched) < MAX_MISMATCHES_SHOWN:
                    stats.mismatched.append({"entity": entity, "op": op, **detail})
            elif outcome == "transient":
                stats.transient[key] += 1

    def outbox(self, depth: int) -> None:
        with self._lock:
            self.outbox_peak = max(self.outbox_peak, depth)

    def replays(self, count: int) -> None:
        with self._lock:
            self.replayed += count

    # --- evidence ------------------------------------------------------------------------

    def shadow_evidence(self, phase: int) -> dict[str, Any]:
        with self._lock:
            s = self.by_phase[phase]
            comparisons = sum(s.comparisons.values())
            mismatches = sum(s.mismatches.values())
            per: dict[str, dict[str, Any]] = {}
            for entity, op in sorted(set(s.comparisons) | set(s.errors)):
                per.setdefault(entity, {})[op] = {
                    "comparisons": s.comparisons[(entity, op)],
                    "mismatches": s.mismatches[(entity, op)],
                    "transient": s.transient[(entity, op)],
                    "errors": s.errors[(entity, op)],
                }
            return {
                "phase": phase,
                "comparisons": comparisons,
                "mismatches": mismatches,
                "transient": sum(s.transient.values()),
                "errors": sum(s.errors.values()),
                "mismatch_rate": (mismatches / comparisons) if comparisons else 1.0,
                "entities": per,
                "mismatched": list(s.mismatched),
                "latency": self._latency(s),
            }

    def write_evidence(self, phase: int, outbox_depth: int) -> dict[str, Any]:
        with self._lock:
            s = self.by_phase[phase]
            return {
                "phase": phase,
                "writes": s.writes,
                "failures": s.failures,
                "error_rate": (s.failures / s.writes) if s.writes else 1.0,
                "fallback_reads": s.fallbacks,
                "fenced": s.fenced,
                "outbox_depth": outbox_depth,
                "outbox_peak": max(self.outbox_peak, outbox_depth),
                "replays": self.replayed,
                "latency": self._latency(s),
            }

    @staticmethod
    def _latency(s: PhaseStats) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for (store, op), lat in sorted(s.latency.items()):
            out.setdefault(store, {})[op] = lat.summary()
        return out

    def summary(self) -> dict[str, Any]:
        return {str(p): {"writes": s.writes, "failures": s.failures,
                         "comparisons": sum(s.comparisons.values()),
                         "mismatches": sum(s.mismatches.values()),
                         "latency": self._latency(s)}
                for p, s in sorted(self.by_phase.items())}  # fmt: skip
