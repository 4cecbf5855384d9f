"""How fast a backfill writes: one rate for the whole run, divided among its loaders.

A run's rate is an item rate (``--rate``, the DAG's ``rate`` param), a share of each table's
write capacity (``--rate-share``, ``rate_share``), or both (the lower wins). The plan records
it with the number of partitions that may load at once (its *concurrency*), and every load of
a partition writes at ``run rate / concurrency``: partitions loading side by side add up to at
most the run's rate, whichever process or Airflow worker runs them.

The division is static. When one partition finishes early the others do not speed up, so the
aggregate stays at or under the target (never above it), and falls below it while fewer
partitions than the concurrency are still loading, or when fewer run at once than planned
(a smaller pool, fewer worker slots).

A share of capacity becomes items/s with DynamoDB's write costs (``cutover.dynamo_item_size``):
one write unit per KB begun of the item, and as much again in each GSI the item is written
into, costed on the index entry. The table and each GSI have a capacity of their own
(provisioned WCU/s, or the on-demand maximum WRU/s), so the item rate at a share is the
lowest of ``share x capacity / write units per item`` over the table and its GSIs.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cutover.dynamo_item_size import gsi_write_units, item_size_bytes, write_units
from cutover.errors import ConfigError

if TYPE_CHECKING:
    from cutover.contract.model import Table


class RateLimiter:
    """Allows ``rate`` items per second on average. The bucket starts empty, so from the
    start the items let through never exceed ``rate`` x elapsed seconds (plus the rest of
    one batch larger than a second's worth); while idle it refills to one second's worth."""

    def __init__(
        self,
        rate: float | None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate
        self._clock, self._sleep = clock, sleep
        self._tokens = 0.0
        self._stamp = clock()
        self._lock = threading.Lock()

    def acquire(self, n: int) -> None:
        if not self.rate:
            return
        while True:
            with self._lock:
                now = self._clock()
                self._tokens = min(self.rate, self._tokens + (now - self._stamp) * self.rate)
                self._stamp = now
                # (a hair under n from rounding is n: a wait of 1e-16 s would never end)
                if self._tokens >= n - 1e-9 or self._tokens >= self.rate - 1e-9:
                    self._tokens -= n  # a batch over a second's worth leaves a debt
                    return
                wait = (n - self._tokens) / self.rate
            self._sleep(min(wait, 0.5))


def _positive(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


@dataclass(frozen=True)
class RunRate:
    """The rate of a whole run, as its plan records it (``plan.json`` ``"rate"``)."""

    items_per_s: float | None = None
    share: float | None = None
    concurrency: int = 1

    def __post_init__(self) -> None:
        if self.items_per_s is not None and not _positive(self.items_per_s):
            raise ConfigError(
                f"rate must be a number of items/s above 0, not {self.items_per_s!r} "
                "(--rate, or the backfill DAG's rate param); leave it out for no limit"
            )
        if self.share is not None and not (_positive(self.share) and self.share <= 1):
            raise ConfigError(
                f"rate_share must be a share of the table's write capacity in (0, 1], not "
                f"{self.share!r} (--rate-share, or the backfill DAG's rate_share param)"
            )
        if (
            isinstance(self.concurrency, bool)
            or not isinstance(self.concurrency, int)
            or self.concurrency < 1
        ):
            raise ConfigError(
                f"load concurrency must be a whole number of partitions of at least 1, not "
                f"{self.concurrency!r}"
            )

    @property
    def limited(self) -> bool:
        return self.items_per_s is not None or self.share is not None

    def per_partition(
        self, table_items_per_s: float | None = None, table_partitions: int | None = None
    ) -> float | None:
        """Items/s of one partition's load; None for no limit. ``table_items_per_s`` is the
        partition's table's item rate at ``share`` of its capacity (see ``share_items_per_s``)
        and ``table_partitions`` how many partitions that table has: at most
        min(concurrency, table_partitions) of them load at once."""
        limits: list[float] = []
        if self.items_per_s is not None:
            limits.append(self.items_per_s / self.concurrency)
        if self.share is not None:
            if table_items_per_s is None:
                raise ValueError("a rate share needs the table's items/s at that share")
            at_once = min(self.concurrency, table_partitions or self.concurrency)
            limits.append(table_items_per_s / max(1, at_once))
        return min(limits) if limits else None

    def to_dict(self) -> dict[str, Any]:
        return {"items_per_s": self.items_per_s, "share": self.share,
                "concurrency": self.concurrency}  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> RunRate:
        """The rate a plan records; a plan made before rates were recorded has none."""
        if not data:
            return cls()
        return cls(data.get("items_per_s"), data.get("share"), int(data.get("concurrency", 1)))


@dataclass(frozen=True)
class WriteCapacity:
    """Write units per second of a table and of each of its GSIs (provisioned WCU/s, or the
    on-demand maximum WRU/s)."""

    table: float
    gsis: Mapping[str, float] = field(default_factory=dict)
    mode: str = "provisioned"

    @classmethod
    def of_description(cls, described: Mapping[str, Any]) -> WriteCapacity:
        """From a DescribeTable ``Table``. A GSI without a figure of its own counts with the
        table's. Refuses a table with no bound: on-demand without a maximum write rate."""
        name = described.get("TableName", "?")
        billing = (described.get("BillingModeSummary") or {}).get("BillingMode")
        on_demand = billing == "PAY_PER_REQUEST"

        def units(entry: Mapping[str, Any]) -> float | None:
            if on_demand:
                value = (entry.get("OnDemandThroughput") or {}).get("MaxWriteRequestUnits")
            else:
                value = (entry.get("ProvisionedThroughput") or {}).get("WriteCapacityUnits")
            return float(value) if value and value > 0 else None  # -1: no on-demand maximum

        table = units(described)
        if table is None:
            if on_demand:
                raise ConfigError(
                    f"table {name} is on-demand without a maximum write rate "
                    "(OnDemandThroughput.MaxWriteRequestUnits): a share of its capacity has "
                    "no bound; set one, or limit the load with --rate ITEMS_PER_S (the DAG's "
                    "rate param) instead"
                )
            raise ConfigError(
                f"table {name} reports no write capacity: a share of it means nothing; "
                "limit the load with --rate ITEMS_PER_S (the DAG's rate param) instead"
            )
        gsis = {
            g["IndexName"]: units(g) or table for g in described.get("GlobalSecondaryIndexes") or []
        }
        return cls(table, gsis, "on-demand" if on_demand else "provisioned")


@dataclass(frozen=True)
class WriteCost:
    """Mean write units one put of an item takes in the table, and in each GSI (averaged over
    all items, 0 for an item the sparse index skips)."""

    table: float = 1.0
    gsis: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def of_items(cls, table: Table, items: Iterable[Mapping[str, Any]]) -> WriteCost:
        """The cost of ``items`` (AttributeValue maps) in contract table ``table`` and its
        GSIs; one unit each when there are no items."""
        units: list[int] = []
        gsi_units: dict[str, list[int]] = {g.index_name: [] for g in table.gsis}
        for item in items:
            units.append(write_units(item_size_bytes(item)))
            for gsi in table.gsis:
                gsi_units[gsi.index_name].append(gsi_write_units(item, table, gsi))
        if not units:
            return cls(1.0, {name: 1.0 for name in gsi_units})
        n = len(units)
        return cls(sum(units) / n, {name: sum(u) / n for name, u in gsi_units.items()})


def share_items_per_s(capacity: WriteCapacity, cost: WriteCost, share: float) -> float:
    """Items/s that use at most ``share`` of the table's and of each GSI's write capacity."""
    streams = [(capacity.table, cost.table)]
    streams += [
        (capacity.gsis.get(name, capacity.table), units)
        for name, units in cost.gsis.items()
        if units > 0
    ]
    return min(share * units_per_s / per_item for units_per_s, per_item in streams)
