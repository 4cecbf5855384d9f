"""`cutover estimate`'s validation section: what reading the tables back costs and takes by a
DynamoDB export to S3 and by a parallel Scan. Every expected figure is worked out by hand
from the documented rules and the module's price constants, written next to it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from cutover.contract.load import load_contract, parse_contract
from cutover.estimate import EstimateOptions, SourceProfile, run_estimate
from cutover.estimate.report import format_estimate, format_validation
from cutover.estimate.validation import (
    EXPORT_PRICE_PER_GB,
    GB,
    PITR_PRICE_PER_GB_MONTH,
    PRICE_PER_MILLION_RRU,
    ExportAssumption,
    Prices,
    ReadCapacity,
    ScanClient,
    TableValidation,
    ValidationScenario,
    scan_read_units,
    table_items,
)
from cutover.settings import PROJECT_ROOT
from cutover.validate.export import segments_for

pytestmark = pytest.mark.unit

SAMPLE_CONTRACT = PROJECT_ROOT / "contracts" / "ecommerce.json"
KB = 1024
ON_DEMAND = ReadCapacity(40_000, "on-demand", "quota")
CLIENT = ScanClient(threads=4, items_per_s_per_thread=1_850)


def _table(
    items: float,
    size: float,
    *,
    segments: int = 1_000,
    read: ReadCapacity = ON_DEMAND,
    client: ScanClient = CLIENT,
    pitr: bool = False,
) -> TableValidation:
    return TableValidation(
        "T", items, size, segments, read, client, ExportAssumption(pitr_enabled=pitr), Prices()
    )


# --- the prices the figures use -----------------------------------------------------------


def test_price_constants_are_the_us_east_1_list_prices() -> None:
    # a change of price must be a deliberate change of these constants (and of their sources)
    assert (EXPORT_PRICE_PER_GB, PITR_PRICE_PER_GB_MONTH, PRICE_PER_MILLION_RRU) == (
        0.10,
        0.20,
        0.125,  # on-demand reads after the 2024-11-01 cut (was 0.25)
    )
    assert Prices().to_dict()["region"] == "us-east-1"


# --- scan read units --------------------------------------------------------------------------


def test_a_scan_of_100m_1kb_items() -> None:
    # 100 M x 1,024 bytes = 102,400,000,000 bytes = 25,000,000 units of 4 KB; in 1 MB pages:
    # 102,400,000,000 / 1,048,576 = 97,656.25 -> 97,657 pages, each but the last rounding up
    # one more unit: 25,000,000 + 97,656 = 25,097,656 units, half an RRU each
    units = scan_read_units(100_000_000, 1 * KB)
    assert units == 25_097_656 * 0.5 == 12_548_828
    # GetItem's rule (every item rounded up to 4 KB) would make it 50,000,000 RRU: a Scan
    # is charged on the pages' bytes, not item by item
    assert units < 100_000_000 * 0.5 / 3
    table = _table(100_000_000, 1 * KB)
    assert table.scan_cost_usd == pytest.approx(12_548_828 * 0.125 / 1e6)  # $1.5686
    # strongly consistent: one unit per 4 KB, twice as many
    assert scan_read_units(100_000_000, 1 * KB, consistent=True) == 25_097_656


def test_a_page_of_1042_byte_items_costs_128_5_units_as_measured() -> None:
    # a published measurement: 5,000 items of 1,041.96 bytes (5,209,783 bytes) scan in pages
    # of 1 MB and a little, 128.5 RCU each eventually consistent. By the rule: 5,209,783 /
    # 4,096 = 1,271.9 -> 1,272 units, 5 pages -> 4 more: 1,276 units = 638 RCU (4 x 128.5 +
    # 124 for the last page's 1,012,607 bytes); item by item it would be 2,500
    assert scan_read_units(5_000, 5_209_783 / 5_000) == 638


@pytest.mark.parametrize(
    ("items", "size", "rru"),
    [
        (1, 1, 0.5),  # one 4 KB unit begun
        (1, 4 * KB, 0.5),
        (1, 4 * KB + 1, 1.0),  # 4 KB and one byte: two units
        (1, 8 * KB, 1.0),
        (1, 8 * KB + 1, 1.5),
        (100, 40, 0.5),  # 4,000 bytes in all: one unit, not 100
        (100, 41, 1.0),  # 4,100 bytes: two
        (0, 1 * KB, 0.0),
    ],
)
def test_scan_units_grow_in_4kb_steps_of_the_bytes_read(
    items: int, size: float, rru: float
) -> None:
    assert scan_read_units(items, size) == rru


def test_larger_items_cost_more_scan_units() -> None:
    # 1,000 items: 1 KB -> 1,024,000 bytes, one page, 250 units; 2 KB -> 500 units in 2
    # pages (513 items, 1,050,624 bytes -> 257 units, then 997,376 -> 244): 501; 4 KB + 96
    # bytes (4,192) -> 4,192,000 bytes = 1,023.4 -> 1,024 units, 4 pages -> 1,027
    assert [scan_read_units(1_000, s) for s in (1 * KB, 2 * KB, 4 * KB + 96)] == [
        250 * 0.5,
        501 * 0.5,
        1_027 * 0.5,
    ]


# --- export -------------------------------------------------------------------------------


def test_export_cost_is_table_gb_times_price_plus_a_pitr_month() -> None:
    # 1,048,576 items of 1 KB = 2^30 bytes = 1 GB
    table = _table(1_048_576, 1 * KB)
    assert table.gb == 1.0
    assert (table.export_usd, table.pitr_usd, table.export_cost_usd) == pytest.approx(
        (0.10, 0.20, 0.30)
    )
    assert _table(1_048_576, 1 * KB, pitr=True).export_cost_usd == pytest.approx(0.10)
    # 100 M x 1 KB = 102,400,000,000 / 2^30 = 95.367431640625 GB
    big = _table(100_000_000, 1 * KB)
    assert big.gb == pytest.approx(95.367431640625)
    assert big.export_usd == pytest.approx(9.5367431640625)
    assert big.export_cost_usd == pytest.approx(95.367431640625 * (0.10 + 0.20))  # $28.61
    assert big.to_dict()["export"]["read_units"] == 0  # an export reads no table capacity


def test_export_time_is_the_assumed_wait_plus_the_size_at_the_assumed_pace() -> None:
    assert _table(0, 1 * KB).export_seconds == 600  # the fixed wait, even for no data
    assert _table(100 * GB / KB, 1 * KB).export_seconds == pytest.approx(600 + 3600)  # 100 GB
    faster = ExportAssumption(gb_per_hour=400)
    assert faster.seconds(100) == pytest.approx(600 + 900)


# --- scan time ----------------------------------------------------------------------------


def test_scan_time_is_the_client_pace_or_the_read_capacity() -> None:
    # 1,000,000 items of 1 KB: 250,000 units + 976 more (977 pages) = 125,488 RRU
    table = _table(1_000_000, 1 * KB)
    assert table.read_units == 125_488
    assert table.scan_client_seconds == pytest.approx(1_000_000 / (4 * 1_850))  # 135.1 s
    assert table.scan_capacity_seconds == pytest.approx(125_488 / 40_000)  # 3.1 s
    assert table.scan_seconds == table.scan_client_seconds and table.scan_bound == "client"
    slow = _table(1_000_000, 1 * KB, read=ReadCapacity(100, "provisioned", "x"))
    assert slow.scan_seconds == pytest.approx(1_254.88)  # 125,488 RCU at 100 RCU/s
    assert slow.scan_bound == "RCU"


def test_no_more_threads_than_segments() -> None:
    table = _table(1_000, 1 * KB, segments=2)
    assert table.threads == 2
    assert table.scan_client_seconds == pytest.approx(1_000 / (2 * 1_850))


def test_scenario_totals_sum_costs_and_scans_and_take_the_longest_export() -> None:
    a = _table(1_048_576, 1 * KB)  # 1 GB
    b = _table(2 * 1_048_576, 1 * KB)  # 2 GB
    both = ValidationScenario("x", [a, b])
    assert both.export_cost_usd == pytest.approx(3 * 0.30)
    assert both.export_seconds == b.export_seconds == pytest.approx(600 + 2 / 100 * 3600)
    assert both.scan_seconds == pytest.approx(a.scan_seconds + b.scan_seconds)
    assert both.read_units == a.read_units + b.read_units
    assert both.to_dict()["scan"]["cost_usd"] == round(a.scan_cost_usd + b.scan_cost_usd, 4)


def test_a_table_size_is_the_items_of_its_sources_at_their_mean_size() -> None:
    profiles = [
        SourceProfile("A", "A1", "a1", "measured", 10, 1.0, 100.0, 1.0),
        SourceProfile("A", "A2", "a2", "measured", 10, 0.5, 400.0, 1.0),  # half rejected
        SourceProfile("B", "B", "b", "measured", 10, 1.0, 50.0, 1.0),
    ]
    # A: 300 items of 100 bytes + 100 of 400 -> 400 items of (30,000 + 40,000) / 400 = 175
    assert table_items(profiles, {"a1": 300, "a2": 200, "b": 0}) == {
        "A": (400.0, 175.0),
        "B": (0.0, 50.0),
    }


# --- the estimate's section ---------------------------------------------------------------


def test_the_estimate_has_a_validation_section(tmp_path: Path) -> None:
    contract = load_contract(SAMPLE_CONTRACT)
    options = EstimateOptions(
        rows={"orders": 3000},
        default_rows=1000,
        offline=True,
        cores=2,
        bench_json=tmp_path / "none.json",
    )
    est = run_estimate(contract, None, options)
    val = est["validation"]
    here, hundred_million, billion = val["scenarios"]
    assert [s["items"] for s in (hundred_million, billion)] == [100_000_000, 1_000_000_000]
    # the items at hand: users, carts and orders make Users' items (1,000 + 1,000 + 3,000)
    assert {t["table"]: t["items"] for t in here["tables"]} == {
        "Users": 5_000,
        "Products": 1_000,
        "Categories": 1_000,
    }
    # scaled in the tables' mix of items: 5/7, 1/7, 1/7 of a billion
    assert [t["items"] for t in billion["tables"]] == [714_285_714, 142_857_143, 142_857_143]
    # the item size is the write estimate's
    products = next(s for s in est["sources"] if s["table"] == "Products")
    scaled = billion["tables"][1]
    assert scaled["avg_item_bytes"] == products["avg_item_bytes"]
    gb = 142_857_143 * scaled["avg_item_bytes"] / 2**30
    assert scaled["gb"] == pytest.approx(gb, abs=1e-3)
    assert scaled["export"]["cost_usd"] == pytest.approx(gb * (0.10 + 0.20), abs=0.01)
    units = scan_read_units(142_857_143, scaled["avg_item_bytes"])
    assert scaled["scan"]["read_units"] == pytest.approx(units, abs=1)
    assert scaled["scan"]["cost_usd"] == pytest.approx(units * 0.125 / 1e6, abs=1e-4)
    assert scaled["scan"]["segments"] == segments_for(142_857_143)
    assert billion["export"]["cost_usd"] == pytest.approx(
        sum(t["export"]["cost_usd"] for t in billion["tables"]), abs=1e-3
    )
    assert val["prices"] == {
        "region": "us-east-1",
        "as_of": "2024-11-01",
        "list_prices": True,
        "export_per_gb": 0.10,
        "pitr_per_gb_month": 0.20,
        "per_million_rru": 0.125,
    }
    assert val["export"]["assumed"] is True
    assert any("MySQL" in n and "not counted" in n for n in val["notes"])

    text = format_estimate(est, "contracts/ecommerce.json")
    section = text[text.index("validation: ") :]
    assert "us-east-1 list prices as of 2024-11-01" in section
    assert "export time assumed" in section and "ASSUMPTION" in section
    assert "1,000,000,000" in section and "714,285,714" in section
    assert "one month of point-in-time recovery" in section


def test_pitr_and_read_capacity_options(tmp_path: Path) -> None:
    contract = parse_contract(
        {
            "tables": [
                {
                    "table": "Users",
                    "type": "single-entity",
                    "source_table": "users",
                    "pk": "PK",
                    "cutover": {
                        "billing_mode": "PROVISIONED",
                        "read_capacity": 250,
                        "write_capacity": 100,
                    },
                    "attributes": [
                        {"name": "PK", "type": "S", "source_table": "users", "source_column": "id"}
                    ],
                }
            ]
        }
    )
    base = EstimateOptions(default_rows=1000, offline=True, bench_json=tmp_path / "none.json")
    val = run_estimate(contract, None, base)["validation"]
    assert val["read_capacity"]["Users"] == {
        "units_per_s": 250,
        "mode": "provisioned",
        "origin": "the contract's read_capacity",
    }
    table = val["scenarios"][2]["tables"][0]
    # the contract's 250 RCU/s set the Scan's time: units / 250
    assert table["scan"]["capacity_seconds"] == pytest.approx(
        table["scan"]["read_units"] / 250, abs=0.1
    )
    assert table["export"]["pitr_month_usd"] > 0
    val = run_estimate(
        contract,
        None,
        replace(base, read_capacity=1_000, pitr_enabled=True, export_gb_per_hour=50),
    )["validation"]
    assert val["read_capacity"]["Users"]["origin"] == "--read-capacity"
    table = val["scenarios"][2]["tables"][0]
    assert table["export"]["pitr_month_usd"] == 0
    assert table["export"]["cost_usd"] == table["export"]["export_usd"]
    assert table["export"]["seconds"] == pytest.approx(600 + table["gb"] / 50 * 3600, abs=0.1)
    assert not any("one month of point-in-time" in n for n in val["notes"])


def test_the_printed_section_lists_each_table_and_the_total() -> None:
    a = _table(1_048_576, 1 * KB)
    b = TableValidation("B", 1_000, 100.0, 4, ON_DEMAND, CLIENT)
    val = {
        "prices": Prices().to_dict(),
        "scenarios": [ValidationScenario("contract", [a, b]).to_dict()],
        "notes": ["a note"],
    }
    lines = format_validation(val)
    assert lines[0].startswith("validation: ")
    header, first, second, total = lines[2:6]
    assert header.split()[:3] == ["table", "items", "GB"]
    assert first.split()[:5] == ["this", "database", "T", "1,048,576", "1.00"]
    assert first.split()[5] == "$0.3000"  # 1 GB: $0.10 export + $0.20 PITR
    assert second.split()[:2] == ["B", "1,000"]
    assert total.split()[:2] == ["total", "1,049,576"]
    assert lines[-1] == "note: a note"
