"""`cutover estimate`'s arithmetic: DynamoDB's item size rules, write units of the table and
its GSIs, time at a capacity against the client's pace, cores, cost and scaling. Every
expected figure is worked out by hand from the documented rules, written next to it."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from cutover.contract.load import load_contract, parse_contract
from cutover.errors import ConfigError
from cutover.estimate import (
    Capacity,
    Client,
    EstimateOptions,
    Scenario,
    SourceProfile,
    index_entry,
    item_size_bytes,
    load_tables,
    parse_rows,
    profile_items,
    run_estimate,
    scale_rows,
    write_units,
)
from cutover.estimate.capacity import GsiLoad
from cutover.estimate.report import duration, format_estimate
from cutover.estimate.sources import client_cpu, typical_item
from cutover.settings import PROJECT_ROOT

pytestmark = pytest.mark.unit

SAMPLE_CONTRACT = PROJECT_ROOT / "contracts" / "ecommerce.json"

# --- item size rules ------------------------------------------------------------------------


def test_aws_docs_example_two_strings_is_23_bytes() -> None:
    # "shirt-color" (11) + "R" (1) + "shirt-size" (10) + "M" (1)
    item = {"shirt-color": {"S": "R"}, "shirt-size": {"S": "M"}}
    assert item_size_bytes(item) == 23


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        # strings and names are UTF-8 bytes: "name" 4 + "é" 2 + "😀" 4
        ({"name": {"S": "é😀"}}, 10),
        ({"ñ": {"S": "a"}}, 3),  # "ñ" is 2 bytes
        # numbers: 1 byte per two significant digits (rounded up) + 1
        ({"n": {"N": "12345"}}, 1 + 3 + 1),
        ({"n": {"N": "123.45"}}, 1 + 3 + 1),  # 5 digits, the point does not count
        ({"n": {"N": "-1200"}}, 1 + 1 + 1),  # trailing zeroes trimmed: "12"
        ({"n": {"N": "0.00100"}}, 1 + 1 + 1),  # leading and trailing zeroes trimmed: "1"
        ({"n": {"N": "12345678901234567890123456789012345678"}}, 1 + 19 + 1),  # 38 digits
        # binary: the raw bytes, not the base64 text (16 characters for 10 bytes)
        ({"b": {"B": base64.b64encode(b"\x00" * 10).decode()}}, 1 + 10),
        ({"b": {"B": b"\x01\x02\x03"}}, 1 + 3),
        # Boolean and null: 1 byte
        ({"ok": {"BOOL": False}}, 2 + 1),
        ({"none": {"NULL": True}}, 4 + 1),
        # list: 3 bytes + each element's size + 1 byte per element
        ({"l": {"L": [{"S": "abc"}, {"BOOL": True}]}}, 1 + 3 + (1 + 3) + (1 + 1)),
        ({"e": {"L": []}}, 1 + 3),  # empty list: name + 3
        ({"e": {"M": {}}}, 1 + 3),  # empty map: name + 3
        # map: 3 bytes + per element 1 byte + its name + its value ("7": 1 digit = 2 bytes)
        ({"m": {"M": {"a": {"S": "xy"}, "bc": {"N": "7"}}}}, 1 + 3 + (1 + 1 + 2) + (1 + 2 + 2)),
        # nested: the inner map is an element of the list
        ({"l": {"L": [{"M": {"k": {"S": "v"}}}]}}, 1 + 3 + (1 + (3 + (1 + 1 + 1)))),
        # sets: the sum of their elements
        ({"ss": {"SS": ["a", "bb"]}}, 2 + 1 + 2),
        ({"ns": {"NS": ["1", "22", "333"]}}, 2 + 2 + 2 + 3),
        ({"bs": {"BS": [base64.b64encode(b"abcd").decode()]}}, 2 + 4),
    ],
)
def test_item_size_rules(item: dict[str, Any], expected: int) -> None:
    assert item_size_bytes(item) == expected


def test_an_unknown_type_is_named() -> None:
    with pytest.raises(ValueError, match="'X' is not a DynamoDB type"):
        item_size_bytes({"a": {"X": 1}})


@pytest.mark.parametrize(
    ("size", "units"),
    [(0, 1), (1, 1), (500, 1), (1024, 1), (1025, 2), (2048, 2), (3584, 4), (400 * 1024, 400)],
)
def test_one_write_unit_per_kb_begun(size: int, units: int) -> None:
    assert write_units(size) == units


# --- index entries --------------------------------------------------------------------------

TABLE = parse_contract(
    {
        "tables": [
            {
                "table": "Users",
                "type": "single-entity",
                "source_table": "users",
                "pk": "PK",
                "sk": "SK",
                "gsis": [
                    {"index_name": "KeysOnly", "pk": "email", "projection": "KEYS_ONLY"},
                    {
                        "index_name": "Include",
                        "pk": "email",
                        "projection": "INCLUDE",
                        "projected_attributes": ["status"],
                    },
                    {"index_name": "All", "pk": "email", "projection": "ALL"},
                    {"index_name": "Sparse", "pk": "missing", "projection": "ALL"},
                ],
                "attributes": [
                    {"name": n, "type": "S", "source_table": "users", "source_column": n}
                    for n in ("PK", "SK", "email", "status", "bio", "missing")
                ],
            }
        ]
    }
).tables[0]
GSI = {g.index_name: g for g in TABLE.gsis}
# PK: 2 + 6 = 8; SK: 2 + 7 = 9; email: 5 + 5 = 10; status: 6 + 2 = 8; bio: 3 + 2000
ITEM = {
    "PK": {"S": "USER#1"},
    "SK": {"S": "PROFILE"},
    "email": {"S": "a@b.c"},
    "status": {"S": "ok"},
    "bio": {"S": "x" * 2000},
}


def test_index_entries_follow_the_projection() -> None:
    keys_only = index_entry(ITEM, TABLE, GSI["KeysOnly"])
    include = index_entry(ITEM, TABLE, GSI["Include"])
    everything = index_entry(ITEM, TABLE, GSI["All"])
    assert keys_only is not None and set(keys_only) == {"PK", "SK", "email"}
    assert item_size_bytes(keys_only) == 8 + 9 + 10
    assert include is not None and item_size_bytes(include) == 8 + 9 + 10 + 8
    assert everything is not None and item_size_bytes(everything) == 8 + 9 + 10 + 8 + 2003
    assert index_entry(ITEM, TABLE, GSI["Sparse"]) is None  # no key attribute: no index write


def test_profile_counts_table_and_index_writes_per_item() -> None:
    small = {k: v for k, v in ITEM.items() if k != "bio"}  # 35 bytes
    no_email = {k: v for k, v in small.items() if k != "email"}  # 25 bytes
    profile = profile_items(TABLE, "USERS", "users", [ITEM, small, no_email], sampled_rows=4)
    assert profile.items_per_row == 3 / 4  # one row was rejected by the builder
    assert profile.avg_item_bytes == (2038 + 35 + 25) / 3
    assert profile.wcu_per_item == (2 + 1 + 1) / 3  # 2038 bytes take 2 WCUs
    by_index = {g.index: g for g in profile.gsis}
    # KEYS_ONLY and INCLUDE entries of ITEM are small (27 and 35 bytes): 1 WCU each
    assert by_index["KeysOnly"].wcu_per_item == (1 + 1 + 0) / 3
    assert by_index["Include"].wcu_per_item == (1 + 1 + 0) / 3
    assert by_index["All"].wcu_per_item == (2 + 1 + 0) / 3  # ALL copies the 2038 bytes
    assert by_index["All"].share == 2 / 3
    assert by_index["Sparse"].share == 0 and by_index["Sparse"].wcu_per_item == 0


# --- time, cores, cost ----------------------------------------------------------------------


def _profile(
    table: str, source: str, wcu: float, gsis: tuple[GsiLoad, ...] = (), per_row: float = 1.0
) -> SourceProfile:
    return SourceProfile(table, table.upper(), source, "measured", 100, per_row, 500.0, wcu, gsis)


def test_capacity_bound_table() -> None:
    # 1,000 rows -> 1,000 items x 2 WCU = 2,000 table WCU; GSI G: half the items, 1 WCU each
    profile = _profile("T", "t", 2.0, (GsiLoad("G", "ALL", 0.5, 0.5, 300.0),))
    client = Client(cpu_us_per_item=50.0, cores=1, origin="test")
    [load] = load_tables([profile], {"t": 1000}, {"T": Capacity(100, "provisioned", "x")}, client)
    assert (load.items, load.table_wcu, load.gsi_wcu) == (1000, 2000, {"G": 500})
    assert load.capacity_seconds == 20.0  # 2,000 WCU / 100 WCU/s; the GSI needs only 5 s
    assert load.client_seconds == pytest.approx(0.05)  # 1,000 x 50 µs on one core
    assert load.seconds == 20.0 and load.bound == "T table"
    assert load.items_per_s_at_capacity == 50.0
    assert load.cores_needed == 1  # 50 items/s x 50 µs = 0.0025 of a core
    scenario = Scenario("contract", {"t": 1000}, [load], price_per_million_wru=0.625)
    assert scenario.total_wcu == 2500
    assert scenario.cost_usd == pytest.approx(2500 * 0.625 / 1e6)  # $0.0015625


def test_client_bound_table_and_the_cores_it_needs() -> None:
    # 1,000,000 items of 1 WCU at on-demand's 40,000 WRU/s take 25 s; at 52 µs an item one
    # core writes 19,231 items/s: 52 s. Keeping up with 40,000 items/s takes 2.08 -> 3 cores.
    profile = _profile("T", "t", 1.0)
    client = Client(cpu_us_per_item=52.0, cores=1, origin="test")
    capacity = Capacity(40_000, "on-demand", "quota")
    [load] = load_tables([profile], {"t": 1_000_000}, {"T": capacity}, client)
    assert load.capacity_seconds == 25.0
    assert load.client_seconds == pytest.approx(52.0)
    assert load.seconds == pytest.approx(52.0) and load.bound == "client"
    assert load.cores_needed == 3
    faster = Client(cpu_us_per_item=52.0, cores=3, origin="test")
    [load] = load_tables([profile], {"t": 1_000_000}, {"T": capacity}, faster)
    assert load.seconds == 25.0 and load.bound == "T table"


def test_a_gsi_with_more_writes_than_its_table_sets_the_time() -> None:
    # 100 items x 1 WCU in the table; the ALL GSI entry of each is larger: 3 WCU -> 300
    profile = _profile("T", "t", 1.0, (GsiLoad("Big", "ALL", 1.0, 3.0, 2500.0),))
    client = Client(1.0, 1, "test")
    [load] = load_tables([profile], {"t": 100}, {"T": Capacity(10, "provisioned", "x")}, client)
    assert load.capacity_seconds == 30.0  # 300 / 10, not 100 / 10
    assert load.bound == "T GSI Big"


def test_entities_add_up_in_their_table_and_tables_load_one_after_another() -> None:
    profiles = [
        _profile("A", "a1", 1.0),
        _profile("A", "a2", 2.0, per_row=0.5),  # half its rows are quarantined
        _profile("B", "b", 1.0),
    ]
    client = Client(1.0, 1, "test")
    capacities = {"A": Capacity(10, "provisioned", "x"), "B": Capacity(10, "provisioned", "x")}
    rows = {"a1": 100, "a2": 40, "b": 50}
    loads = load_tables(profiles, rows, capacities, client)
    assert [(x.table, x.rows, x.items, x.table_wcu) for x in loads] == [
        ("A", 140, 120, 140),  # 100 x 1 + (40 x 0.5) x 2
        ("B", 50, 50, 50),
    ]
    scenario = Scenario("contract", rows, loads)
    assert scenario.seconds == 14 + 5  # A then B
    assert scenario.to_dict()["wcu_per_row"] == pytest.approx(190 / 190)


def test_scaling_keeps_the_mix_and_adds_up_exactly() -> None:
    assert scale_rows({"a": 1, "b": 2}, 10) == {"a": 3, "b": 7}  # 3.33 / 6.67
    scaled = scale_rows({"a": 2000, "b": 3002, "c": 79}, 1_000_000_000)
    assert sum(scaled.values()) == 1_000_000_000
    # exact shares: a 393,623,302.4995, b 590,828,577.0518, c 15,548,120.4487; the floors add
    # up to 999,999,999 and the one row left goes to the largest remainder, a's
    assert scaled == {"a": 393_623_303, "b": 590_828_577, "c": 15_548_120}


def test_parse_rows() -> None:
    assert parse_rows(["orders=5_000_000", "1e9", "users=1,000"]) == (
        {"orders": 5_000_000, "users": 1000},
        1_000_000_000,
    )
    assert parse_rows(None) == ({}, None)
    for bad in ("orders=", "=5", "x", "orders=-3"):
        with pytest.raises(ConfigError, match="is not a row count"):
            parse_rows([bad])


def test_duration() -> None:
    assert [duration(s) for s in (0.3, 65, 3 * 3600 + 20 * 60, 4 * 86400 + 6 * 3600)] == [
        "0.3 s",
        "1m 05s",
        "3h 20m",
        "4d 06h",
    ]


# --- the client and the offline estimate -----------------------------------------------------


def test_client_cpu_comes_from_the_last_bench(tmp_path: Path) -> None:
    bench = tmp_path / "bench.json"
    assert client_cpu(bench)[0] == 52.0
    bench.write_text(json.dumps({"loader_cpu_us_per_item": 38.5, "rows": 200000}))
    cpu, origin = client_cpu(bench)
    assert cpu == 38.5 and "cutover bench" in origin
    bench.write_text("{")
    assert client_cpu(bench) == (52.0, f"default: {bench} is not readable JSON")


def test_typical_item_has_template_keys_attributes_and_version() -> None:
    contract = load_contract(SAMPLE_CONTRACT)
    users = contract.table("Users")
    order = next(s for s in users.sources if s.entity_type == "ORDER")
    item = typical_item(users, order)
    assert item["PK"] == {"S": "USER#12345678"} and item["SK"] == {"S": "ORDER#12345678"}
    assert {a.name for a in order.attributes} <= set(item)
    assert "cutover_version" in item


def test_offline_estimate_scales_from_the_given_mix(tmp_path: Path) -> None:
    contract = load_contract(SAMPLE_CONTRACT)
    options = EstimateOptions(
        rows={"orders": 3000},
        default_rows=1000,
        offline=True,
        cores=2,
        cpu_us_per_item=40.0,
        bench_json=tmp_path / "none.json",
    )
    est = run_estimate(contract, None, options)
    assert est["counts"]["orders"] == {"rows": 3000, "method": "given"}
    assert est["sizes_from"] == ["column types"]
    contract_line, hundred_million, billion = est["scenarios"]
    assert contract_line["rows"] == 7000 and billion["rows"] == 1_000_000_000
    # 3/7 and 1/7 of a billion: 428,571,428.57 and 142,857,142.86 (remainders: users' get the
    # four rows the floors leave)
    assert billion["rows_by_source"]["orders"] == 428_571_428
    assert billion["rows_by_source"]["users"] == 142_857_143
    assert billion["wcu_per_row"] == pytest.approx(contract_line["wcu_per_row"], rel=1e-6)
    assert hundred_million["total_wcu"] * 10 == pytest.approx(billion["total_wcu"], rel=1e-6)
    # on-demand price per million WRU, the GSI writes included
    assert billion["cost_usd"] == pytest.approx(billion["total_wcu"] * 0.625 / 1e6, abs=1e-4)
    assert est["client"]["cpu_us_per_item"] == 40.0
    text = format_estimate(est, "contracts/ecommerce.json")
    assert "guessed from the contract's attribute types" in text
    assert "1,000,000,000" in text


def test_offline_estimate_needs_every_count() -> None:
    contract = load_contract(SAMPLE_CONTRACT)
    with pytest.raises(ConfigError, match="pass --rows TABLE=N for `users`"):
        run_estimate(contract, None, EstimateOptions(rows={"orders": 5}, offline=True))
    with pytest.raises(ConfigError, match="not a source table of contract ecommerce"):
        run_estimate(contract, None, EstimateOptions(rows={"order_items": 5}, offline=True))
