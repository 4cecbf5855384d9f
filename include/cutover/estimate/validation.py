"""What reading a contract's DynamoDB tables back for validation costs and takes, two ways:
a DynamoDB export to S3 (``ExportTableToPointInTime``, cutover.validate.ddb_export) or a
parallel Scan (cutover.validate.export). Pure functions of item counts and mean item sizes
(the figures the write estimate uses); the prices and assumptions are the constants below.

Export: priced per GB of table size; it needs point-in-time recovery (PITR), itself priced
per GB-month, so a table without it pays one month of PITR too (an upper bound: PITR is
billed by the hour, and may be turned off once the export is done); it reads no table
capacity. Its duration is AWS's to choose and AWS publishes no throughput: minutes of fixed
wait for any table, then longer the larger the table (``EXPORT_FIXED_SECONDS`` and
``EXPORT_GB_PER_HOUR`` are assumptions, and the report says so).

Scan: a Scan reads pages of up to 1 MB, and a page is charged on the sum of the sizes of the
items it evaluates, rounded up to 4 KB (as a Query is), not item by item as GetItem: one read
unit per 4 KB strongly consistent, half of one eventually consistent. A page ends on the item
that takes it past 1 MB, so a page but the last ends, as a rule, inside a 4 KB unit and
rounds up one more: ``ceil(bytes / 4 KB) + pages - 1`` units in all (one unit a page too
many at worst, 0.4%). Time: the longer of the reads at the
table's read capacity (provisioned RCU, or on-demand's per-table quota) and the client's
pace (``threads`` threads at ``items_per_s_per_thread`` items/s each).

Tables are read one after another by the Scan; their exports are asked for at once and run
side by side, so the export time of several tables is that of the longest.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from cutover.estimate.capacity import SourceProfile
from cutover.estimate.sizing import KB

# Prices: us-east-1 list prices, standard table class, in effect since the on-demand price
# cut of 2024-11-01 (and still those of the sources below, read in 2025).
PRICE_REGION = "us-east-1"
PRICES_AS_OF = "2024-11-01"
# Full export to S3, per GB of table size (table data and LSIs) at the export time; AWS
# Price List SKU "$0.10000 per GB of data exported in US East (N. Virginia)"; page:
# https://aws.amazon.com/dynamodb/pricing/on-demand/ ("Data export to Amazon S3")
EXPORT_PRICE_PER_GB = 0.10
# Continuous backups (PITR), per GB-month of table size:
# https://finops.com.py/services/dynamodb/backups ("$0.20 per GB-month"), and
# https://aws.amazon.com/dynamodb/pricing/on-demand/ ("Continuous backups (PITR)")
PITR_PRICE_PER_GB_MONTH = 0.20
# On-demand reads, per million read request units, since the 2024-11-01 cut (was $0.25):
# https://airbyte.com/data-engineering-resources/dynamodb-pricing ("Read Request Units (RRU):
# $0.125 per million"); AWS Price List SKU "$0.125 per million read request units (N.
# Virginia)"
PRICE_PER_MILLION_RRU = 0.125

# Read units: one per 4 KB strongly consistent, half of one eventually consistent (a Scan's
# default); ConsistentRead=true takes twice as many:
# https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/read-write-operations.html
# https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Scan.html
READ_UNIT_BYTES = 4 * KB
EVENTUAL_UNITS_PER_4KB = 0.5
CONSISTENT_UNITS_PER_4KB = 1.0
# A Scan page reads up to 1 MB, and is charged on its items' total size rounded up to 4 KB
# (a page of 1,042-byte items costs 128.5 RCU eventually consistent, not 0.5 an item):
# https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Scan.html
# https://dev.to/aws-heroes/dynamodb-scan-and-why-128-5-rcu-2k25
SCAN_PAGE_BYTES = 1 << 20
# On-demand's default per-table quota, reads as writes (adjustable):
# https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Limits.html
ON_DEMAND_READ_QUOTA = 40_000  # RRU/s
# An export needs PITR and reads the backup, not the table's capacity:
# https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/S3DataExport_Requesting.html
# https://bicov.pro/blog/new-dynamodb-to-s3 ("no reads consumed")
# ASSUMED, AWS publishes no export throughput: a fixed wait (an export of a small table takes
# minutes) plus 100 GB an hour, the low end of reports such as "10-30 minutes for ~50GB"
# (https://bicov.pro/blog/new-dynamodb-to-s3).
EXPORT_FIXED_SECONDS = 600.0
EXPORT_GB_PER_HOUR = 100.0
# The Scan client, cutover.validate.export: 4 threads read 7,400 items/s at 400 segments,
# where the client's parsing was the limit (its module comment) -> 1,850 items/s a thread.
SCAN_ITEMS_PER_S_PER_THREAD = 1_850.0
GB = 1 << 30  # AWS bills storage and exports per GB of 2^30 bytes

ScanBound = Literal["client", "RCU", "RRU quota", "-"]


@dataclass(frozen=True)
class Prices:
    export_per_gb: float = EXPORT_PRICE_PER_GB
    pitr_per_gb_month: float = PITR_PRICE_PER_GB_MONTH
    per_million_rru: float = PRICE_PER_MILLION_RRU
    region: str = PRICE_REGION
    as_of: str = PRICES_AS_OF

    def to_dict(self) -> dict[str, Any]:
        return {
            "region": self.region,
            "as_of": self.as_of,
            "list_prices": True,
            "export_per_gb": self.export_per_gb,
            "pitr_per_gb_month": self.pitr_per_gb_month,
            "per_million_rru": self.per_million_rru,
        }


@dataclass(frozen=True)
class ExportAssumption:
    """The assumed pace of an export (AWS publishes none) and whether PITR is already on."""

    fixed_seconds: float = EXPORT_FIXED_SECONDS
    gb_per_hour: float = EXPORT_GB_PER_HOUR
    pitr_enabled: bool = False

    def seconds(self, gb: float) -> float:
        return self.fixed_seconds + gb / self.gb_per_hour * 3600

    def to_dict(self) -> dict[str, Any]:
        return {
            "assumed": True,
            "fixed_seconds": self.fixed_seconds,
            "gb_per_hour": self.gb_per_hour,
            "pitr_enabled": self.pitr_enabled,
        }


@dataclass(frozen=True)
class ReadCapacity:
    """Read units per second a table gives a Scan."""

    units_per_s: float
    mode: Literal["on-demand", "provisioned"]
    origin: str

    def to_dict(self) -> dict[str, Any]:
        return {"units_per_s": self.units_per_s, "mode": self.mode, "origin": self.origin}


@dataclass(frozen=True)
class ScanClient:
    """The Scan's client: threads, each scanning one segment at a time, and their pace."""

    threads: int
    items_per_s_per_thread: float = SCAN_ITEMS_PER_S_PER_THREAD
    consistent_read: bool = False

    @property
    def items_per_s(self) -> float:
        return self.threads * self.items_per_s_per_thread

    def to_dict(self) -> dict[str, Any]:
        return {
            "threads": self.threads,
            "items_per_s_per_thread": self.items_per_s_per_thread,
            "items_per_s": self.items_per_s,
            "consistent_read": self.consistent_read,
        }


def table_bytes(items: float, avg_item_bytes: float) -> float:
    return max(0.0, items * avg_item_bytes)


def scan_read_units(items: float, avg_item_bytes: float, consistent: bool = False) -> float:
    """Read units (RCU provisioned, RRU on-demand) of a Scan of the whole table: per 1 MB
    page, its items' total size rounded up to 4 KB, half a unit per 4 KB eventually
    consistent, one strongly consistent."""
    total = table_bytes(items, avg_item_bytes)
    if total <= 0:
        return 0.0
    pages = math.ceil(total / SCAN_PAGE_BYTES)
    units = math.ceil(total / READ_UNIT_BYTES) + pages - 1
    return units * (CONSISTENT_UNITS_PER_4KB if consistent else EVENTUAL_UNITS_PER_4KB)


@dataclass(frozen=True)
class TableValidation:
    table: str
    items: float
    avg_item_bytes: float
    segments: int
    read_capacity: ReadCapacity
    client: ScanClient
    export: ExportAssumption = field(default_factory=ExportAssumption)
    prices: Prices = field(default_factory=Prices)

    @property
    def gb(self) -> float:
        return table_bytes(self.items, self.avg_item_bytes) / GB

    # --- export -------------------------------------------------------------------------

    @property
    def export_usd(self) -> float:
        return self.gb * self.prices.export_per_gb

    @property
    def pitr_usd(self) -> float:
        """One month of PITR on the table, when it is not on already."""
        return 0.0 if self.export.pitr_enabled else self.gb * self.prices.pitr_per_gb_month

    @property
    def export_cost_usd(self) -> float:
        return self.export_usd + self.pitr_usd

    @property
    def export_seconds(self) -> float:
        return self.export.seconds(self.gb)

    # --- scan ---------------------------------------------------------------------------

    @property
    def threads(self) -> int:
        """Threads at work: no more than there are segments."""
        return max(1, min(self.client.threads, self.segments))

    @property
    def read_units(self) -> float:
        return scan_read_units(self.items, self.avg_item_bytes, self.client.consistent_read)

    @property
    def scan_cost_usd(self) -> float:
        return self.read_units * self.prices.per_million_rru / 1e6

    @property
    def scan_client_seconds(self) -> float:
        return self.items / (self.threads * self.client.items_per_s_per_thread)

    @property
    def scan_capacity_seconds(self) -> float:
        return self.read_units / self.read_capacity.units_per_s

    @property
    def scan_seconds(self) -> float:
        return max(self.scan_client_seconds, self.scan_capacity_seconds)

    @property
    def scan_bound(self) -> ScanBound:
        if not self.items:
            return "-"
        if self.scan_client_seconds >= self.scan_capacity_seconds:
            return "client"
        return "RCU" if self.read_capacity.mode == "provisioned" else "RRU quota"

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "items": round(self.items),
            "avg_item_bytes": round(self.avg_item_bytes, 1),
            "gb": round(self.gb, 6),
            "export": {
                "export_usd": round(self.export_usd, 4),
                "pitr_month_usd": round(self.pitr_usd, 4),
                "cost_usd": round(self.export_cost_usd, 4),
                "seconds": round(self.export_seconds, 1),
                "seconds_assumed": True,
                "read_units": 0,
            },
            "scan": {
                "segments": self.segments,
                "threads": self.threads,
                "read_units": round(self.read_units, 1),
                "cost_usd": round(self.scan_cost_usd, 4),
                "client_seconds": round(self.scan_client_seconds, 1),
                "capacity_seconds": round(self.scan_capacity_seconds, 1),
                "seconds": round(self.scan_seconds, 1),
                "bound": self.scan_bound,
                "read_capacity": self.read_capacity.to_dict(),
            },
        }


@dataclass(frozen=True)
class ValidationScenario:
    label: str
    tables: list[TableValidation]

    @property
    def items(self) -> float:
        return sum(t.items for t in self.tables)

    @property
    def gb(self) -> float:
        return sum(t.gb for t in self.tables)

    @property
    def export_cost_usd(self) -> float:
        return sum(t.export_cost_usd for t in self.tables)

    @property
    def export_seconds(self) -> float:
        """Exports run side by side: the longest."""
        return max((t.export_seconds for t in self.tables), default=0.0)

    @property
    def read_units(self) -> float:
        return sum(t.read_units for t in self.tables)

    @property
    def scan_cost_usd(self) -> float:
        return sum(t.scan_cost_usd for t in self.tables)

    @property
    def scan_seconds(self) -> float:
        """Tables are scanned one after another."""
        return sum(t.scan_seconds for t in self.tables)

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "items": round(self.items),
            "gb": round(self.gb, 6),
            "export": {
                "export_usd": round(sum(t.export_usd for t in self.tables), 4),
                "pitr_month_usd": round(sum(t.pitr_usd for t in self.tables), 4),
                "cost_usd": round(self.export_cost_usd, 4),
                "seconds": round(self.export_seconds, 1),
                "seconds_assumed": True,
            },
            "scan": {
                "read_units": round(self.read_units, 1),
                "cost_usd": round(self.scan_cost_usd, 4),
                "seconds": round(self.scan_seconds, 1),
            },
            "tables": [t.to_dict() for t in self.tables],
        }


def table_items(
    profiles: Sequence[SourceProfile], rows_by_source: Mapping[str, int]
) -> dict[str, tuple[float, float]]:
    """Per DynamoDB table (in the profiles' order): its items from ``rows_by_source`` and
    their mean size, weighted by the items each source makes (the unweighted mean of its
    sources' sizes when they make none)."""
    out: dict[str, tuple[float, float]] = {}
    for name in dict.fromkeys(p.table for p in profiles):
        mine = [p for p in profiles if p.table == name]
        parts = [(rows_by_source.get(p.source_table, 0) * p.items_per_row, p) for p in mine]
        items = sum(n for n, _ in parts)
        if items > 0:
            size = sum(n * p.avg_item_bytes for n, p in parts) / items
        else:
            size = sum(p.avg_item_bytes for p in mine) / len(mine)
        out[name] = (items, size)
    return out
