"""The arithmetic of an estimate: per source, items and write units per row; per table, the
write units of the table and of each GSI, the time at a capacity, the client cores that
capacity needs, and the on-demand cost. Pure functions of measured or given figures.

Time model (the load phase; extract and transform run before it, as `cutover backfill` does):

* the capacity (provisioned WCU/s, or on-demand's WRU/s limit) applies to the table and to
  each of its GSIs on its own, and a table write is throttled when a GSI lacks capacity, so a
  table loads in (largest of its own and each GSI's write units) / capacity seconds;
* the client spends ``cpu_us_per_item`` of CPU per item, so ``cores`` cores write at most
  cores x 1e6 / cpu_us_per_item items/s;
* a table takes the longer of the two; tables load one after another.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from cutover.contract.model import Table
from cutover.estimate.sizing import gsi_write_units, index_entry, item_size_bytes, write_units

ON_DEMAND_TABLE_QUOTA = 40_000  # WRU/s per table (and per GSI), the default service quota
NEW_ON_DEMAND_TABLE_WRITES = 4_000  # writes/s a new on-demand table sustains before it scales
DEFAULT_CPU_US_PER_ITEM = 52.0
PRICE_PER_MILLION_WRU = 0.625  # us-east-1, standard table class, on-demand, from Nov 2024


@dataclass(frozen=True)
class GsiLoad:
    index: str
    projection: str
    share: float  # of the source's items that have the index's keys (are written into it)
    wcu_per_item: float  # mean over all the source's items, 0 for those not indexed
    avg_entry_bytes: float  # mean size of an index entry, over indexed items

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "projection": self.projection,
            "share": round(self.share, 6),
            "wcu_per_item": round(self.wcu_per_item, 6),
            "avg_entry_bytes": round(self.avg_entry_bytes, 1),
        }


@dataclass(frozen=True)
class SourceProfile:
    """What one source (a single-entity table, or one entity) writes per row read."""

    table: str
    entity: str
    source_table: str
    basis: Literal["measured", "column types"]
    sampled_rows: int  # rows built by the item builder; 0 when sized from the types
    items_per_row: float  # rows the builder rejects (quarantine) make no item
    avg_item_bytes: float
    wcu_per_item: float
    gsis: tuple[GsiLoad, ...] = ()

    @property
    def label(self) -> str:
        """``Table.ENTITY``, or the table alone for a single-entity table."""
        single = self.entity == self.table.upper()
        return self.table if single else f"{self.table}.{self.entity}"

    def gsi_wcu_per_item(self) -> float:
        return sum(g.wcu_per_item for g in self.gsis)

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "entity": self.entity,
            "source_table": self.source_table,
            "basis": self.basis,
            "sampled_rows": self.sampled_rows,
            "items_per_row": round(self.items_per_row, 6),
            "avg_item_bytes": round(self.avg_item_bytes, 1),
            "wcu_per_item": round(self.wcu_per_item, 6),
            "gsis": [g.to_dict() for g in self.gsis],
        }


def profile_items(
    table: Table,
    entity: str,
    source_table: str,
    items: Sequence[Mapping[str, Any]],
    sampled_rows: int,
    basis: Literal["measured", "column types"] = "measured",
) -> SourceProfile:
    """The profile of a source from items (AttributeValue maps) built from ``sampled_rows``
    of its rows."""
    sizes = [item_size_bytes(item) for item in items]
    n = len(items)
    gsis = []
    for gsi in table.gsis:
        units = [gsi_write_units(item, table, gsi) for item in items]
        indexed = [u for u in units if u]
        entries = [
            item_size_bytes(e) for item in items if (e := index_entry(item, table, gsi)) is not None
        ]
        gsis.append(
            GsiLoad(
                index=gsi.index_name,
                projection=gsi.projection,
                share=len(indexed) / n if n else 0.0,
                wcu_per_item=sum(units) / n if n else 0.0,
                avg_entry_bytes=sum(entries) / len(entries) if entries else 0.0,
            )
        )
    return SourceProfile(
        table=table.table,
        entity=entity,
        source_table=source_table,
        basis=basis,
        sampled_rows=sampled_rows,
        items_per_row=n / sampled_rows if sampled_rows else 1.0,
        avg_item_bytes=sum(sizes) / n if n else 0.0,
        wcu_per_item=sum(write_units(s) for s in sizes) / n if n else 0.0,
        gsis=tuple(gsis),
    )


@dataclass(frozen=True)
class Capacity:
    """Write units per second the table and each of its GSIs can take."""

    units_per_s: float
    mode: Literal["on-demand", "provisioned"]
    origin: str  # where the figure comes from, for the report

    def describe(self) -> str:
        unit = "WRU/s" if self.mode == "on-demand" else "WCU/s"
        return f"{self.mode}, {self.units_per_s:,.0f} {unit} per table and per GSI ({self.origin})"

    def to_dict(self) -> dict[str, Any]:
        return {"units_per_s": self.units_per_s, "mode": self.mode, "origin": self.origin}


@dataclass(frozen=True)
class Client:
    """The loading client: CPU per item written and the cores it has."""

    cpu_us_per_item: float
    cores: int
    origin: str  # of the CPU figure
    cores_origin: str = "--cores"

    @property
    def items_per_s_per_core(self) -> float:
        return 1e6 / self.cpu_us_per_item

    def to_dict(self) -> dict[str, Any]:
        return {
            "cpu_us_per_item": self.cpu_us_per_item,
            "cores": self.cores,
            "cores_origin": self.cores_origin,
            "items_per_s_per_core": round(self.items_per_s_per_core, 1),
            "origin": self.origin,
        }


@dataclass(frozen=True)
class TableLoad:
    table: str
    rows: int
    items: float
    table_wcu: float
    gsi_wcu: dict[str, float]
    capacity: Capacity
    client: Client

    @property
    def total_wcu(self) -> float:
        return self.table_wcu + sum(self.gsi_wcu.values())

    @property
    def busiest(self) -> tuple[str, float]:
        """The write stream that takes longest at the capacity: the table or one GSI."""
        streams = {"table": self.table_wcu, **self.gsi_wcu}
        name = max(streams, key=lambda k: streams[k])
        return name, streams[name]

    @property
    def capacity_seconds(self) -> float:
        return self.busiest[1] / self.capacity.units_per_s

    @property
    def client_seconds(self) -> float:
        return self.items * self.client.cpu_us_per_item / 1e6 / self.client.cores

    @property
    def seconds(self) -> float:
        return max(self.capacity_seconds, self.client_seconds)

    @property
    def bound(self) -> str:
        """What sets the time: ``client``, or the table's or a GSI's capacity."""
        if self.client_seconds > self.capacity_seconds:
            return "client"
        name = self.busiest[0]
        return f"{self.table} {'table' if name == 'table' else 'GSI ' + name}"

    @property
    def items_per_s_at_capacity(self) -> float:
        return self.items / self.capacity_seconds if self.capacity_seconds else 0.0

    @property
    def cores_needed(self) -> int:
        """Client cores that keep up with the capacity (fractions round up)."""
        cores = self.items_per_s_at_capacity * self.client.cpu_us_per_item / 1e6
        return max(1, math.ceil(cores - 1e-9)) if self.items else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "rows": self.rows,
            "items": round(self.items),
            "table_wcu": round(self.table_wcu),
            "gsi_wcu": {k: round(v) for k, v in self.gsi_wcu.items()},
            "total_wcu": round(self.total_wcu),
            "capacity_seconds": round(self.capacity_seconds, 3),
            "client_seconds": round(self.client_seconds, 3),
            "seconds": round(self.seconds, 3),
            "bound": self.bound,
            "items_per_s_at_capacity": round(self.items_per_s_at_capacity, 1),
            "cores_needed": self.cores_needed,
            "capacity": self.capacity.to_dict(),
        }


@dataclass(frozen=True)
class Scenario:
    label: str
    rows_by_source: dict[str, int]  # source table -> rows
    tables: list[TableLoad] = field(default_factory=list)
    price_per_million_wru: float = PRICE_PER_MILLION_WRU

    @property
    def rows(self) -> int:
        return sum(self.rows_by_source.values())

    @property
    def items(self) -> float:
        return sum(t.items for t in self.tables)

    @property
    def table_wcu(self) -> float:
        return sum(t.table_wcu for t in self.tables)

    @property
    def gsi_wcu(self) -> float:
        return sum(sum(t.gsi_wcu.values()) for t in self.tables)

    @property
    def total_wcu(self) -> float:
        return self.table_wcu + self.gsi_wcu

    @property
    def seconds(self) -> float:
        return sum(t.seconds for t in self.tables)

    @property
    def cores_needed(self) -> int:
        return max((t.cores_needed for t in self.tables), default=0)

    @property
    def bound(self) -> str:
        """The bound of the table that takes longest."""
        if not self.tables:
            return "-"
        return max(self.tables, key=lambda t: t.seconds).bound

    @property
    def cost_usd(self) -> float:
        """On-demand write cost: every write unit of the table and its GSIs is one WRU."""
        return self.total_wcu * self.price_per_million_wru / 1e6

    def to_dict(self) -> dict[str, Any]:
        total = round(self.total_wcu)
        return {
            "label": self.label,
            "rows": self.rows,
            "rows_by_source": dict(self.rows_by_source),
            "items": round(self.items),
            "table_wcu": round(self.table_wcu),
            "gsi_wcu": round(self.gsi_wcu),
            "total_wcu": total,
            "wcu_per_row": self.total_wcu / self.rows if self.rows else 0.0,
            "seconds": round(self.seconds, 3),
            "hours": round(self.seconds / 3600, 3),
            "bound": self.bound,
            "cores_needed": self.cores_needed,
            "cost_usd": round(self.cost_usd, 4),
            "tables": [t.to_dict() for t in self.tables],
        }


def load_tables(
    profiles: Sequence[SourceProfile],
    rows_by_source: Mapping[str, int],
    capacities: Mapping[str, Capacity],
    client: Client,
) -> list[TableLoad]:
    """Per DynamoDB table (in the profiles' order), the load of ``rows_by_source`` rows."""
    order: list[str] = []
    for p in profiles:
        if p.table not in order:
            order.append(p.table)
    loads = []
    for name in order:
        mine = [p for p in profiles if p.table == name]
        rows = sum(rows_by_source.get(p.source_table, 0) for p in mine)
        items = table_wcu = 0.0
        gsi_wcu: dict[str, float] = {}
        for p in mine:
            source_items = rows_by_source.get(p.source_table, 0) * p.items_per_row
            items += source_items
            table_wcu += source_items * p.wcu_per_item
            for g in p.gsis:
                gsi_wcu[g.index] = gsi_wcu.get(g.index, 0.0) + source_items * g.wcu_per_item
        loads.append(TableLoad(name, rows, items, table_wcu, gsi_wcu, capacities[name], client))
    return loads


def scale_rows(rows_by_source: Mapping[str, int], target: int) -> dict[str, int]:
    """``target`` rows split over the sources in the proportions of ``rows_by_source``
    (largest remainders get the rounding, so the parts add up to ``target`` exactly)."""
    total = sum(rows_by_source.values())
    if total <= 0:
        raise ValueError("no rows to scale from")
    exact = {k: v * target / total for k, v in rows_by_source.items()}
    out = {k: math.floor(v) for k, v in exact.items()}
    left = target - sum(out.values())
    for k in sorted(exact, key=lambda k: exact[k] - out[k], reverse=True)[:left]:
        out[k] += 1
    return out
