"""`cutover estimate`: write units, time, client cores and on-demand cost of a contract's
load, for the rows at hand and scaled to 100 million and 1 billion rows; and what reading the
tables back for validation costs and takes, by export or by Scan, for the items at hand and
at 100 million and 1 billion items."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cutover.contract.model import Contract, Table
from cutover.errors import ConfigError, ServiceError
from cutover.estimate.capacity import (
    NEW_ON_DEMAND_TABLE_WRITES,
    ON_DEMAND_TABLE_QUOTA,
    PRICE_PER_MILLION_WRU,
    Capacity,
    Client,
    Scenario,
    SourceProfile,
    load_tables,
    scale_rows,
)
from cutover.estimate.sources import (
    BENCH_JSON,
    EXACT_BELOW,
    RowCount,
    client_cpu,
    count_rows,
    joined_tables,
    measured_profile,
    source_tables,
    typed_profile,
)
from cutover.estimate.validation import (
    EXPORT_GB_PER_HOUR,
    ON_DEMAND_READ_QUOTA,
    ExportAssumption,
    Prices,
    ReadCapacity,
    ScanClient,
    TableValidation,
    ValidationScenario,
    table_items,
)
from cutover.settings import Settings

SCALED_ROWS = (100_000_000, 1_000_000_000)
SCALED_ITEMS = (100_000_000, 1_000_000_000)
DEFAULT_SAMPLE = 5_000


@dataclass(frozen=True)
class EstimateOptions:
    rows: Mapping[str, int] = field(default_factory=dict)  # source table -> rows, given
    default_rows: int | None = None  # rows of every source table not in ``rows``
    exact: bool = False
    offline: bool = False
    sample: int = DEFAULT_SAMPLE
    capacity: float | None = None  # provisioned WCU/s per table and per GSI
    on_demand: float | None = None  # on-demand WRU/s limit per table and per GSI
    cores: int | None = None
    cpu_us_per_item: float | None = None
    price_per_million_wru: float = PRICE_PER_MILLION_WRU
    bench_json: Path = BENCH_JSON
    scaled_rows: tuple[int, ...] = SCALED_ROWS
    # validation: reading the tables back by export or by Scan
    read_capacity: float | None = None  # provisioned RCU/s per table, for the Scan
    pitr_enabled: bool = False  # the tables have PITR already: an export adds no PITR month
    export_gb_per_hour: float = EXPORT_GB_PER_HOUR  # assumed
    scan_consistent_read: bool = False
    scaled_items: tuple[int, ...] = SCALED_ITEMS


def parse_rows(values: list[str] | None) -> tuple[dict[str, int], int | None]:
    """``--rows`` values, ``TABLE=N`` or a bare ``N`` (every source table not named), as
    (per table, default). N may use _ or , between digits, or exponent notation (1e9)."""
    per: dict[str, int] = {}
    default: int | None = None
    for value in values or []:
        name, _, number = value.rpartition("=")
        text = number.replace("_", "").replace(",", "").strip()
        try:
            rows = int(text) if text.isdigit() else int(float(text))
        except ValueError:
            rows = -1
        if rows < 0 or (name == "" and "=" in value):
            raise ConfigError(
                f"--rows {value!r} is not a row count: give TABLE=N (e.g. orders=5000000) or "
                "N for every source table not named"
            )
        if name:
            per[name] = rows
        else:
            default = rows
    return per, default


def _capacity(table: Table, options: EstimateOptions) -> Capacity:
    if options.capacity is not None:
        return Capacity(options.capacity, "provisioned", "--capacity")
    if options.on_demand is not None:
        default = options.on_demand == ON_DEMAND_TABLE_QUOTA
        origin = "the default table quota" if default else "--on-demand"
        return Capacity(options.on_demand, "on-demand", origin)
    if table.cutover.billing_mode == "PROVISIONED" and table.cutover.write_capacity:
        return Capacity(
            table.cutover.write_capacity, "provisioned", "the contract's write_capacity"
        )
    return Capacity(ON_DEMAND_TABLE_QUOTA, "on-demand", "the default table quota")


def _read_capacity(table: Table, options: EstimateOptions) -> ReadCapacity:
    if options.read_capacity is not None:
        return ReadCapacity(options.read_capacity, "provisioned", "--read-capacity")
    if table.cutover.billing_mode == "PROVISIONED" and table.cutover.read_capacity:
        return ReadCapacity(
            table.cutover.read_capacity, "provisioned", "the contract's read_capacity"
        )
    return ReadCapacity(ON_DEMAND_READ_QUOTA, "on-demand", "the default table quota")


def _given_counts(tables: list[str], options: EstimateOptions, why: str) -> dict[str, RowCount]:
    missing = [t for t in tables if t not in options.rows and options.default_rows is None]
    if missing:
        raise ConfigError(
            f"{why}, so the row counts must be given: pass --rows TABLE=N for "
            + ", ".join(f"`{t}`" for t in missing)
            + " (or --rows N for every source table)"
        )
    return {t: RowCount(options.rows.get(t, options.default_rows or 0), "given") for t in tables}


def _check_named(contract: Contract, options: EstimateOptions) -> None:
    tables = source_tables(contract)
    unknown = [t for t in options.rows if t not in tables]
    if unknown:
        raise ConfigError(
            "--rows names " + ", ".join(f"`{t}`" for t in unknown) + ", not a source table of "
            f"contract {contract.name}; its source tables are " + ", ".join(tables)
        )


def _measure(
    contract: Contract, settings: Settings, options: EstimateOptions
) -> tuple[dict[str, RowCount], list[SourceProfile], str]:
    from cutover.db import connect

    conn = connect(settings.mysql)
    try:
        in_db = count_rows(conn, source_tables(contract), exact=options.exact)
        counts = {
            t: RowCount(options.rows.get(t, options.default_rows or 0), "given")
            if t in options.rows or options.default_rows is not None
            else c
            for t, c in in_db.items()
        }
        profiles = [
            measured_profile(
                conn, contract, table, source, in_db[source.source_table].rows, options.sample
            )
            for table in contract.tables
            for source in table.sources
        ]
    finally:
        conn.close()
    return counts, profiles, f"MySQL {settings.mysql.url}"


def run_estimate(
    contract: Contract, settings: Settings | None, options: EstimateOptions
) -> dict[str, Any]:
    """The estimate as a JSON-ready dict. ``settings`` None (or ``options.offline``) reads no
    MySQL: the row counts must be given and sizes come from the contract's types."""
    _check_named(contract, options)
    tables = source_tables(contract)
    notes: list[str] = []
    counts: dict[str, RowCount]
    if settings is None or options.offline:
        counts = _given_counts(tables, options, "--offline reads no MySQL")
        profiles = [typed_profile(t, s) for t in contract.tables for s in t.sources]
        rows_from = "--rows"
    else:
        try:
            counts, profiles, rows_from = _measure(contract, settings, options)
        except ServiceError as exc:
            try:
                counts = _given_counts(tables, options, str(exc).split(";")[0])
            except ConfigError as missing:
                raise ServiceError(
                    f"{exc}; or estimate without MySQL: pass --offline with --rows TABLE=N "
                    "for each source table"
                ) from missing
            profiles = [typed_profile(t, s) for t in contract.tables for s in t.sources]
            rows_from = "--rows"
            notes.append(f"MySQL did not answer ({str(exc).split(';')[0]}): sizes are guesses")
    if any(p.basis == "column types" for p in profiles):
        notes.append(
            "sizes of "
            + ", ".join(p.label for p in profiles if p.basis == "column types")
            + " are guessed from the contract's attribute types (24-byte strings, 6-digit "
            "numbers, 4-field maps): measure them with MySQL reachable for real figures"
        )
        for table in contract.tables:
            if table.estimated_item_size_bytes:
                notes.append(
                    f"the contract itself estimates {table.table} items at "
                    f"{table.estimated_item_size_bytes:,.0f} bytes"
                )

    cpu, cpu_origin = client_cpu(options.bench_json)
    if options.cpu_us_per_item is not None:
        cpu, cpu_origin = options.cpu_us_per_item, "--cpu-us-per-item"
    client = Client(
        cpu,
        options.cores or os.cpu_count() or 1,
        cpu_origin,
        "--cores" if options.cores else "this machine's",
    )
    capacities = {t.table: _capacity(t, options) for t in contract.tables}
    rows = {t: c.rows for t, c in counts.items()}

    def scenario(label: str, rows_by_source: dict[str, int]) -> Scenario:
        return Scenario(
            label,
            rows_by_source,
            load_tables(profiles, rows_by_source, capacities, client),
            options.price_per_million_wru,
        )

    mix = rows
    if sum(rows.values()) == 0:
        mix = dict.fromkeys(rows, 1)
        notes.append("the source tables hold no rows: the scaled lines assume equal row counts")
    scenarios = [scenario("contract", rows)] + [
        scenario(f"{n:,} rows", scale_rows(mix, n)) for n in options.scaled_rows
    ]
    notes.extend(_notes(contract, counts, profiles, capacities, client, options))
    validation = _validation(contract, profiles, rows, mix, options)
    return {
        "contract": contract.name,
        "rows_from": rows_from,
        "counts": {t: c.to_dict() for t, c in counts.items()},
        "sizes_from": sorted({p.basis for p in profiles}),
        "sample_per_source": options.sample,
        "sources": [
            {
                **p.to_dict(),
                "label": p.label,
                "rows": rows[p.source_table],
                "items": round(rows[p.source_table] * p.items_per_row),
            }
            for p in profiles
        ],
        "client": client.to_dict(),
        "capacity": {name: c.to_dict() for name, c in capacities.items()},
        "price_per_million_wru": options.price_per_million_wru,
        "scenarios": [s.to_dict() for s in scenarios],
        "notes": notes,
        "validation": validation,
    }


def _validation(
    contract: Contract,
    profiles: list[SourceProfile],
    rows: Mapping[str, int],
    mix: Mapping[str, int],
    options: EstimateOptions,
) -> dict[str, Any]:
    """The validation section: per table and in all, what reading the tables back costs and
    takes by export and by Scan, for the items of ``rows`` and for ``options.scaled_items``
    items in the tables' mix of items (that of ``mix``)."""
    from cutover.validate.export import DEFAULT_WORKERS, segments_for  # pulls in pyarrow

    prices = Prices()
    export = ExportAssumption(
        gb_per_hour=options.export_gb_per_hour, pitr_enabled=options.pitr_enabled
    )
    client = ScanClient(DEFAULT_WORKERS, consistent_read=options.scan_consistent_read)
    reads = {t.table: _read_capacity(t, options) for t in contract.tables}

    def scenario(label: str, items: Mapping[str, tuple[float, float]]) -> ValidationScenario:
        return ValidationScenario(
            label,
            [
                TableValidation(
                    name, n, size, segments_for(round(n)), reads[name], client, export, prices
                )
                for name, (n, size) in items.items()
            ],
        )

    here = table_items(profiles, rows)
    in_mix = table_items(profiles, mix)
    weights = {name: round(n) for name, (n, _) in in_mix.items()}
    if sum(weights.values()) <= 0:
        weights = dict.fromkeys(weights, 1)
    scenarios = [scenario("contract", here)] + [
        scenario(
            f"{target:,} items",
            {name: (float(n), in_mix[name][1]) for name, n in scale_rows(weights, target).items()},
        )
        for target in options.scaled_items
    ]
    return {
        "prices": prices.to_dict(),
        "export": export.to_dict(),
        "scan_client": client.to_dict(),
        "read_capacity": {name: r.to_dict() for name, r in reads.items()},
        "scenarios": [s.to_dict() for s in scenarios],
        "notes": _validation_notes(prices, export, client, reads, options),
    }


def _usd(price: float) -> str:
    """``$0.10``, ``$0.125``: at least two decimals, more where the price has them."""
    text = f"{price:.2f}"
    return f"${text}" if float(text) == price else f"${price:g}"


def _validation_notes(
    prices: Prices,
    export: ExportAssumption,
    client: ScanClient,
    reads: Mapping[str, ReadCapacity],
    options: EstimateOptions,
) -> list[str]:
    rru = "1 RRU" if client.consistent_read else "0.5 RRU"
    notes = [
        f"prices: {prices.region} list prices as of {prices.as_of} (standard table class): "
        f"export {_usd(prices.export_per_gb)} per GB of table size (items x mean item size, "
        f"GB of 2^30 bytes), PITR {_usd(prices.pitr_per_gb_month)} per GB-month, on-demand "
        f"reads {_usd(prices.per_million_rru)} per million RRU",
        "export: reads no table capacity"
        + (
            ""
            if export.pitr_enabled
            else "; its cost includes one month of point-in-time recovery (PITR), which an "
            "export needs (an upper bound: PITR is billed by the hour; --pitr if the tables "
            "have it)"
        )
        + ". Its time is an ASSUMPTION, AWS publishes no export throughput: "
        f"{export.fixed_seconds / 60:g} min + {export.gb_per_hour:g} GB/h per table "
        "(--export-gb-per-hour), the tables' exports side by side",
        f"scan: {'strongly' if client.consistent_read else 'eventually'} consistent, {rru} "
        "per 4 KB read (a page is charged on its items' total size, not item by item"
        + (
            ""
            if client.consistent_read
            else "; cutover validate's own Scan reads with ConsistentRead: twice the RRU and cost"
        )
        + "); time: the longer of the reads at the read capacity and "
        f"{client.threads} threads x {client.items_per_s_per_thread:,.0f} items/s (cutover's "
        "Scan client), tables one after another; cost at on-demand prices",
        "not counted: re-deriving the expected items from MySQL and comparing them (the same "
        "for either path), the S3 storage of the export's files",
    ]
    if options.capacity is not None and options.read_capacity is None:
        on_demand = sorted(n for n, r in reads.items() if r.mode == "on-demand")
        if on_demand:
            notes.append(
                "--capacity sets write capacity only: the Scan of "
                + ", ".join(on_demand)
                + f" is timed at on-demand's {ON_DEMAND_READ_QUOTA:,} RRU/s; --read-capacity "
                "sets provisioned reads"
            )
    return notes


def _notes(
    contract: Contract,
    counts: Mapping[str, RowCount],
    profiles: list[SourceProfile],
    capacities: Mapping[str, Capacity],
    client: Client,
    options: EstimateOptions,
) -> list[str]:
    notes = []
    estimated = [t for t, c in counts.items() if c.method == "estimate"]
    if estimated:
        notes.append(
            f"rows of {', '.join(estimated)} are information_schema estimates (InnoDB's can be "
            f"off by tens of percent); --exact counts them (tables under {EXACT_BELOW:,} rows "
            "are always counted)"
        )
    joined = joined_tables(contract)
    if joined:
        notes.append(
            "rows are those of the source tables; "
            + ", ".join(joined)
            + " (read through joins and aggregates) make no items and are not counted"
        )
    sampled = [
        p
        for p in profiles
        if p.basis == "measured" and p.sampled_rows < counts[p.source_table].rows
    ]
    if sampled:
        notes.append(
            "sizes measured on a sample of "
            + ", ".join(f"{p.label} ({p.sampled_rows:,} rows)" for p in sampled)
            + f"; --sample N reads more (now {options.sample:,} per source)"
        )
    rejected = [p for p in profiles if p.basis == "measured" and p.items_per_row < 1]
    if rejected:
        notes.append(
            "rows the item builder rejects make no item (quarantine): "
            + ", ".join(f"{p.label} {1 - p.items_per_row:.2%}" for p in rejected)
            + " of the rows built"
        )
    notes.append(
        "one loader process (Python) uses about one core: run as many loader processes as "
        "cores are needed (the backfill DAG's load tasks run in parallel)"
    )
    modes = {c.mode for c in capacities.values()}
    if "on-demand" in modes:
        notes.append(
            f"on-demand: {ON_DEMAND_TABLE_QUOTA:,} WRU/s is the default per-table quota (each "
            "GSI has its own) and can be raised; on-demand has no account-level limit. A new "
            f"on-demand table sustains {NEW_ON_DEMAND_TABLE_WRITES:,} writes/s at first and "
            "doubles its previous peak within 30 minutes: pre-warm it (warm throughput) to "
            "load at the quota from the start"
        )
    if "provisioned" in modes:
        notes.append(
            "provisioned: each GSI is assumed to have its table's write capacity; the table and "
            "its GSIs together count against the account-level quota (80,000 WCU per Region "
            "by default); the cost shown is what the same writes cost on-demand, not WCU-hours"
        )
    notes.append(
        "index writes: an item is written into a GSI only when it has the index's key "
        "attributes; KEYS_ONLY and INCLUDE entries are sized on the keys and projected "
        "attributes only. Tables load one after another; the cost counts the load's writes "
        "only (no reads, storage or catch-up; validation has its own table below)"
    )
    return notes
