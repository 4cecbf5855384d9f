"""One rate for the whole run: four partitions load side by side (as the DAG's mapped load
tasks do, each with its own BackfillRun and two writer threads) into DynamoDB Local, each
with a quarter of the run's rate, given as items/s or as a share of a provisioned table's
write capacity whose items take 2 WCUs each and 1 in a GSI. What makes the aggregate rate
so is asserted here (each load's limiter gets run rate / concurrency) and in
tests/unit/test_run_rate_split.py (what a limiter grants per interval, on an injected
clock); the rates measured on this shared machine are printed, never asserted."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from tests.dynamo_tables import drop_tables
from tests.helpers import RATED_CONTRACT, create_rated

from cutover.backfill.checkpoints import new_run_id
from cutover.backfill.run import BackfillRun
from cutover.contract.load import load_contract
from cutover.contract.model import Contract
from cutover.load.rate_limit import RunRate, WriteCost
from cutover.prepare import prepare
from cutover.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.mysql, pytest.mark.dynamodb]

ROWS = 800  # 4 partitions of 200 items: 2 s at 100 items/s each
PARTITIONS = 4
TARGET = 400.0


@dataclass
class World:
    contract: Contract
    settings: Settings


@pytest.fixture
def world(
    scratch_db: Settings, ddb: Any, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[World]:
    """``rated`` (ROWS rows of about 1.2 KB) in a scratch database, prepared into a
    provisioned DynamoDB table with a GSI, under a table prefix of its own."""
    settings = replace(
        scratch_db,
        staging=(tmp_path / "staging").as_uri(),
        table_prefix=f"{scratch_db.table_prefix}{request.node.name[-10:].strip('_[]')}_",
    )
    create_rated(settings, ROWS)
    path = tmp_path / "rated.json"
    path.write_text(json.dumps(RATED_CONTRACT))
    contract = load_contract(path)
    prepare(contract, settings)
    yield World(contract, settings)
    drop_tables(ddb, settings.table_prefix)


def _load_in_parallel(world: World, **rate: Any) -> tuple[BackfillRun, list[dict[str, Any]], float]:
    """Plan a run with ``rate`` for PARTITIONS loads at once, extract and transform it, then
    load every partition at once, each in a BackfillRun of its own (as a mapped task has).
    Returns the run, the loads' records and the aggregate items/s over the load phase."""
    run = BackfillRun(world.contract, world.settings, new_run_id())
    parts = run.plan(PARTITIONS, concurrency=PARTITIONS, **rate)
    assert len(parts) == PARTITIONS
    for part in parts:
        run.transform(part.id)
    run.check_duplicates()
    start = threading.Barrier(PARTITIONS)

    def load(pid: str) -> dict[str, Any]:
        own = BackfillRun(world.contract, world.settings, run.run_id)
        own.partition(pid)  # the plan read before the race starts
        start.wait()
        return own.load(pid, workers=2)

    with ThreadPoolExecutor(PARTITIONS) as pool:
        records = list(pool.map(load, [p.id for p in parts]))
    items = sum(r["items"] for r in records)
    assert items == ROWS
    # the load phase: all four start together, so it lasts as long as the longest load
    return run, records, items / max(r["seconds"] for r in records)


def _report(what: str, aggregate: float, records: list[dict[str, Any]]) -> None:
    per_partition = [r["items_per_s"] for r in records]
    print(f"{what}: target {TARGET:.0f}, aggregate {aggregate:.1f} items/s, {per_partition}")


def test_four_partitions_at_once_keep_the_runs_item_rate(world: World) -> None:
    _, records, aggregate = _load_in_parallel(world, rate=TARGET)
    assert [r["rate_limit"] for r in records] == [TARGET / PARTITIONS] * PARTITIONS
    _report(f"rate {TARGET:.0f} items/s", aggregate, records)


def test_four_partitions_at_once_keep_the_runs_share_of_capacity(world: World) -> None:
    run, records, aggregate = _load_in_parallel(world, rate_share=0.25)
    assert run.run_rate() == RunRate(None, 0.25, PARTITIONS)
    assert run.write_cost("Rated") == WriteCost(2.0, {"by_shelf": 1.0})
    assert [r["rate_limit"] for r in records] == [TARGET / PARTITIONS] * PARTITIONS
    _report("share 0.25 of 3200 WCU, 2 WCU an item", aggregate, records)
