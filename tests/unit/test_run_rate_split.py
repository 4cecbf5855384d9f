"""One rate for a whole backfill run: the plan records it with the number of partitions that
load at once, every load writes at its share of it, and a share of a table's write capacity
becomes items/s from the items' write units in the table and in each GSI. Expected figures
are worked out by hand in the comments."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from cutover.backfill.checkpoints import ITEM_SCHEMA, write_parquet
from cutover.backfill.plan import contract_sha256, planned_settings
from cutover.backfill.run import BackfillRun
from cutover.contract.load import parse_contract
from cutover.errors import ConfigError
from cutover.extract.plan import Partition
from cutover.extract.staging import Staging
from cutover.load.rate_limit import (
    RateLimiter,
    RunRate,
    WriteCapacity,
    WriteCost,
    share_items_per_s,
)
from cutover.settings import MySQLSettings, Settings


def _attr(name: str, kind: str = "S") -> dict[str, str]:
    return {"name": name, "type": kind, "source_table": "t", "source_column": name}


DOC: dict[str, Any] = {
    "cutover": {"name": "rated"},
    "tables": [
        {
            "table": "Widgets",
            "type": "single-entity",
            "source_table": "t",
            "pk": "code",
            "attributes": [_attr("code"), _attr("name"), _attr("g")],
            "gsis": [{"index_name": "by_g", "pk": "g", "projection": "KEYS_ONLY"}],
        },
        {
            "table": "Gadgets",
            "type": "single-entity",
            "source_table": "u",
            "pk": "id",
            "attributes": [{"name": "id", "type": "N", "source_table": "u", "source_column": "id"}],
        },
    ],
}
CONTRACT = parse_contract(DOC)
WIDGETS = CONTRACT.table("Widgets")


# --- the division ------------------------------------------------------------------------


def test_the_run_rate_is_divided_among_the_partitions_that_load_at_once() -> None:
    assert RunRate(400, None, 4).per_partition() == 100.0  # 400 / 4
    assert RunRate(400, None, 1).per_partition() == 400.0  # the CLI: one at a time
    assert RunRate(None, None, 4).per_partition() is None  # no limit
    # a share: the table's 300 items/s among min(4 at once, its 2 partitions) = 150 each
    assert RunRate(None, 0.5, 4).per_partition(300.0, 2) == 150.0
    # ... among min(3, its 6 partitions) = 100 each
    assert RunRate(None, 0.5, 3).per_partition(300.0, 6) == 100.0
    # both: the lower of 400 / 4 = 100 and 300 / 2 = 150
    assert RunRate(400, 0.5, 4).per_partition(300.0, 2) == 100.0
    assert RunRate(1000, 0.5, 4).per_partition(300.0, 2) == 150.0


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"items_per_s": 0}, "rate"),
        ({"items_per_s": -5}, "rate"),
        ({"items_per_s": math.nan}, "rate"),
        ({"items_per_s": True}, "rate"),
        ({"share": 0}, "rate_share"),
        ({"share": 1.5}, "rate_share"),
        ({"share": math.inf}, "rate_share"),
        ({"concurrency": 0}, "concurrency"),
    ],
)
def test_bad_rates_are_refused_naming_the_param(kwargs: dict[str, Any], param: str) -> None:
    with pytest.raises(ConfigError, match=rf"^(load )?{param} must be"):
        RunRate(**kwargs)


def test_a_rate_survives_its_round_trip_through_the_plan() -> None:
    rate = RunRate(400.0, 0.25, 3)
    assert RunRate.from_dict(json.loads(json.dumps(rate.to_dict()))) == rate
    assert RunRate.from_dict(None) == RunRate()  # a plan made before rates were recorded


# --- a share of capacity -> items/s ---------------------------------------------------------


def test_capacity_of_a_provisioned_table_and_its_gsis() -> None:
    described = {
        "TableName": "p_Widgets",
        "ProvisionedThroughput": {"ReadCapacityUnits": 5, "WriteCapacityUnits": 100},
        "GlobalSecondaryIndexes": [
            {"IndexName": "by_g", "ProvisionedThroughput": {"WriteCapacityUnits": 10}}
        ],
    }
    assert WriteCapacity.of_description(described) == WriteCapacity(100.0, {"by_g": 10.0})


def test_capacity_of_an_on_demand_table_is_its_maximum_and_none_is_refused() -> None:
    described: dict[str, Any] = {
        "TableName": "p_Widgets",
        "BillingModeSummary": {"BillingMode": "PAY_PER_REQUEST"},
        "ProvisionedThroughput": {"WriteCapacityUnits": 0},
        "OnDemandThroughput": {"MaxWriteRequestUnits": 2000},
        "GlobalSecondaryIndexes": [{"IndexName": "by_g"}],  # none of its own: the table's
    }
    assert WriteCapacity.of_description(described) == WriteCapacity(
        2000.0, {"by_g": 2000.0}, "on-demand"
    )
    described["OnDemandThroughput"] = {"MaxWriteRequestUnits": -1}  # -1: no maximum
    with pytest.raises(ConfigError, match=r"p_Widgets is on-demand without a maximum.*--rate"):
        WriteCapacity.of_description(described)


def _widget(i: int, name_bytes: int, g: str | None) -> dict[str, Any]:
    item: dict[str, Any] = {"code": {"S": f"W{i:03d}"}, "name": {"S": "x" * name_bytes}}
    if g is not None:
        item["g"] = {"S": g}
    return item


def test_write_units_per_item_count_size_by_the_kb_and_gsi_entries() -> None:
    items = [
        # "code"(4) + "W000"(4) + "name"(4) + 1500 + "g"(1) + "a"(1) = 1514 bytes: 2 units;
        # its KEYS_ONLY entry (code, g) is 10 bytes: 1 unit
        _widget(0, 1500, "a"),
        # 4 + 4 + 4 + 100 = 112 bytes: 1 unit; no "g", so the sparse index skips it: 0
        _widget(1, 100, None),
    ]
    assert WriteCost.of_items(WIDGETS, items) == WriteCost(1.5, {"by_g": 0.5})
    assert WriteCost.of_items(WIDGETS, []) == WriteCost(1.0, {"by_g": 1.0})


def test_a_share_is_the_lowest_items_per_s_over_the_table_and_each_gsi() -> None:
    cost = WriteCost(1.5, {"by_g": 0.5})
    # table: 0.5 x 100 / 1.5 = 33.33; GSI: 0.5 x 10 / 0.5 = 10 -> the GSI bounds it
    assert share_items_per_s(WriteCapacity(100, {"by_g": 10}), cost, 0.5) == 10.0
    # a GSI as large as the table: 0.5 x 100 / 0.5 = 100 -> the table bounds it, 33.33
    assert share_items_per_s(WriteCapacity(100, {"by_g": 100}), cost, 0.5) == pytest.approx(100 / 3)
    # one unit an item, no GSI: the plain share of the capacity, 0.25 x 80 = 20
    assert share_items_per_s(WriteCapacity(80), WriteCost(), 0.25) == 20.0


# --- the plan records it, every load reads it ------------------------------------------------


def _settings(tmp_path: Path) -> Settings:
    return Settings.from_parts(
        mysql=MySQLSettings.from_url("mysql://root@127.0.0.1:3306/shop"),
        dynamodb_endpoint="http://127.0.0.1:8001",
        env={"CUTOVER_STAGING": (tmp_path / "staging").as_uri(), "CUTOVER_TABLE_PREFIX": "p_"},
    )


PARTS = [
    Partition("Widgets", "WIDGETS", 0, None, "W500"),
    Partition("Widgets", "WIDGETS", 1, "W500", None),
    Partition("Gadgets", "GADGETS", 0, None, None),
]


def _plant(settings: Settings, run_id: str, rate: dict[str, Any] | None) -> BackfillRun:
    """A run as BackfillRun.plan leaves it (``rate`` None: planned before rates were recorded),
    with the transformed items of its Widgets partitions."""
    run = BackfillRun(CONTRACT, settings, run_id)
    doc: dict[str, Any] = {
        "run_id": run_id,
        "contract": CONTRACT.name,
        "contract_sha256": contract_sha256(CONTRACT),
        "planned_at": dt.datetime(2026, 3, 1, tzinfo=dt.UTC).isoformat(),
        "settings": planned_settings(run.settings, None),
        "high_water_marks": {},
        "partitions": [p.to_dict() for p in PARTS],
    }
    if rate is not None:
        doc["rate"] = rate
    Staging(settings.staging).write_json(doc, run.paths.of("plan.json"))
    for part in PARTS[:2]:  # every Widgets item 2 units in the table, 1 in by_g
        first = part.index * 10
        bodies = [json.dumps(_widget(i, 1500, "a")) for i in range(first, first + 10)]
        rows = {"pk": [json.loads(b)["code"]["S"] for b in bodies], "sk": [None] * len(bodies),
                "body": bodies, "entity_type": ["WIDGETS"] * len(bodies),
                "source_pk": ["{}"] * len(bodies), "version": [None] * len(bodies)}  # fmt: skip
        table = pa.table(rows, schema=ITEM_SCHEMA)
        write_parquet(run.staging, run.checkpoints.items_file(part.id), table)
    return run


class _Dynamo:
    def describe_table(self, TableName: str) -> dict[str, Any]:
        capacity = {"p_Widgets": (120, 30), "p_Gadgets": (50, None)}[TableName]
        table: dict[str, Any] = {
            "TableName": TableName,
            "ProvisionedThroughput": {"WriteCapacityUnits": capacity[0]},
        }
        if capacity[1]:
            table["GlobalSecondaryIndexes"] = [
                {"IndexName": "by_g", "ProvisionedThroughput": {"WriteCapacityUnits": capacity[1]}}
            ]
        return {"Table": table}


def test_every_load_reads_its_rate_from_the_plan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cutover.aws

    monkeypatch.setattr(cutover.aws, "dynamodb_client", lambda settings: _Dynamo())
    settings = _settings(tmp_path)
    run = _plant(settings, "r1", {"items_per_s": 300, "share": None, "concurrency": 3})
    assert [run.partition_rate(p) for p in PARTS] == [100.0, 100.0, 100.0]  # 300 / 3

    run = _plant(settings, "r2", {"items_per_s": None, "share": 0.5, "concurrency": 3})
    assert run.write_cost("Widgets") == WriteCost(2.0, {"by_g": 1.0})
    # Widgets: table 0.5 x 120 / 2 = 30, by_g 0.5 x 30 / 1 = 15 -> 15 items/s, among
    # min(3, its 2 partitions) = 2 -> 7.5 each; Gadgets (no items staged: 1 unit, one
    # partition): 0.5 x 50 / 1 = 25
    assert [run.partition_rate(p) for p in PARTS] == [7.5, 7.5, 25.0]

    legacy = _plant(settings, "r3", None)
    assert legacy.run_rate() == RunRate() and legacy.partition_rate(PARTS[0]) is None


def test_resuming_keeps_the_plans_rate_unless_one_is_given(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    _plant(settings, "r1", {"items_per_s": 300, "share": None, "concurrency": 3})

    def resumed(**kwargs: Any) -> RunRate:
        run = BackfillRun(CONTRACT, settings, "r1")
        assert run.plan(**kwargs) == PARTS  # the planned partitions, not planned again
        return BackfillRun(CONTRACT, settings, "r1").run_rate()  # as plan.json now says

    assert resumed(concurrency=3) == RunRate(300, None, 3)
    # the CLI loads one partition at a time: the whole rate for each
    assert resumed(concurrency=1) == RunRate(300, None, 1)
    assert resumed(rate=90, rate_share=0.5, concurrency=8) == RunRate(90, 0.5, 3)  # 3 partitions
    assert resumed(concurrency=2) == RunRate(90, 0.5, 2)
    with pytest.raises(ConfigError, match="rate_share must be"):
        BackfillRun(CONTRACT, settings, "r1").plan(rate_share=2)
    assert BackfillRun(CONTRACT, settings, "r1").run_rate() == RunRate(90, 0.5, 2)


class FakeClock:
    """Time that passes only when the limiter sleeps: what it grants per interval is then
    exact, whatever the machine is doing."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_the_limiter_starts_empty_so_a_short_load_keeps_to_its_rate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(200, clock=clock, sleep=clock.sleep)
    for _ in range(4):
        limiter.acquire(25)
    # 100 items at 200/s take 0.5 s from the start (a full bucket would have let them by at
    # once, twice the rate over this span)
    assert clock.now - 1000.0 == pytest.approx(0.5)


def test_the_limiter_grants_its_rate_per_interval_and_refills_only_a_seconds_worth() -> None:
    clock = FakeClock()
    limiter = RateLimiter(100, clock=clock, sleep=clock.sleep)
    granted: list[float] = []  # the time each batch of 10 was let through
    for _ in range(100):
        limiter.acquire(10)
        granted.append(clock.now - 1000.0)
    per_second = [sum(1 for t in granted if s < t <= s + 1) * 10 for s in range(10)]
    assert per_second == [100] * 10  # 1,000 items in 10 s: 100 in each second, none early
    clock.now += 60  # idle for a minute: the bucket holds one second's worth, not 60
    start = clock.now
    for _ in range(20):
        limiter.acquire(10)
    assert clock.now - start == pytest.approx(1.0)  # 100 at once, the next 100 over 1 s
    big = RateLimiter(100, clock=clock, sleep=clock.sleep)
    big.acquire(250)  # a batch over a second's worth goes once a second's worth is in
    before = clock.now
    big.acquire(10)  # and leaves a debt the next batch waits out
    assert clock.now - before == pytest.approx(1.6)
