"""Sizing a migration before running it: write units, time, client cores and on-demand cost
of a contract's load (`cutover estimate`)."""

from cutover.estimate.capacity import (
    ON_DEMAND_TABLE_QUOTA,
    PRICE_PER_MILLION_WRU,
    Capacity,
    Client,
    Scenario,
    SourceProfile,
    TableLoad,
    load_tables,
    profile_items,
    scale_rows,
)
from cutover.estimate.run import EstimateOptions, parse_rows, run_estimate
from cutover.estimate.sizing import index_entry, item_size_bytes, write_units

__all__ = [
    "ON_DEMAND_TABLE_QUOTA",
    "PRICE_PER_MILLION_WRU",
    "Capacity",
    "Client",
    "EstimateOptions",
    "Scenario",
    "SourceProfile",
    "TableLoad",
    "index_entry",
    "item_size_bytes",
    "load_tables",
    "parse_rows",
    "profile_items",
    "run_estimate",
    "scale_rows",
    "write_units",
]
