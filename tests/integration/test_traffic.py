"""The load generator against the real stores: the sample application's traffic in phase 2
runs every action without a failure, touching MySQL only, and once the sync has followed
the binlog DynamoDB is MySQL's derivation, item for item; `cutover traffic` does the same
from the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from tests.routing_checks import parity_failures, synced_parity

from cutover.contract.load import load_contract
from cutover.contract.model import Contract
from cutover.phases.model import Phase
from cutover.phases.store import PhaseStore
from cutover.prepare.control_table import ensure_control_table
from cutover.routing.layer import DualDatabase
from cutover.sample.generator import load_sample
from cutover.sample.traffic import ACTIONS, run_traffic, summary_lines
from cutover.settings import PROJECT_ROOT, Settings
from cutover.stages import run_backfill, run_prepare

pytestmark = [pytest.mark.integration, pytest.mark.mysql, pytest.mark.dynamodb]

CONTRACT = PROJECT_ROOT / "contracts" / "ecommerce.json"


def _sample(scratch_db: Settings, ddb: Any, suffix: str, *, backfill: bool) -> Iterator[Any]:
    """The sample in the scratch database, prepared (and backfilled) under a table prefix of
    its own, at phase 2; the tables are dropped afterwards."""
    contract = load_contract(CONTRACT)
    settings = replace(scratch_db, table_prefix=f"{scratch_db.table_prefix}{suffix}_")
    load_sample(settings, scale=1)
    try:
        run_prepare(contract, settings)  # creates the control table too
        if backfill:
            run_backfill(contract, settings)
        ensure_control_table(ddb, settings.table_prefix)
        store = PhaseStore(ddb, settings.table_prefix)
        store.move(store.get(contract.name), Phase.DUAL_WRITE, actor="test", kind="advance")
        yield contract, settings
    finally:
        for table in [*(t.table for t in contract.tables), "cutover_control"]:
            with suppress(ddb.exceptions.ResourceNotFoundException):
                ddb.delete_table(TableName=settings.table_prefix + table)


@pytest.fixture
def migrated(scratch_db: Settings, ddb: Any) -> Iterator[tuple[Contract, Settings]]:
    yield from _sample(scratch_db, ddb, "traffic", backfill=True)


@pytest.fixture
def prepared(scratch_db: Settings, ddb: Any) -> Iterator[tuple[Contract, Settings]]:
    yield from _sample(scratch_db, ddb, "trafficcli", backfill=False)


def test_phase_2_traffic_writes_mysql_only_and_the_sync_brings_dynamodb_to_it(
    migrated: tuple[Contract, Settings], ddb: Any, tmp_path: Path
) -> None:
    contract, settings = migrated
    log = tmp_path / "traffic.jsonl"
    seen: list[dict[str, Any]] = []
    layer = DualDatabase(contract, settings)
    try:
        summary = run_traffic(
            layer, rate=20, duration=8, threads=3, log_path=log, flush_every=3, progress=seen.append
        )
    finally:
        layer.close()
    print("\n".join(summary_lines(summary)))  # shown with -s, or when an assert fails

    assert summary["failed"] == 0, summary["errors"]
    assert summary["requests"] > 100, summary
    assert set(ACTIONS) <= set(summary["by_operation"]), sorted(summary["by_operation"])
    assert summary["phases"] == [2] and summary["by_phase"][2]["requests"] == summary["requests"]
    assert summary["errors"]["flush_failures"] == 0 and seen and seen[-1]["phase"] == 2
    assert all(f["p50_ms"] is not None for f in summary["by_operation"].values())
    # every request of phase 2 went to MySQL alone: no DynamoDB call, no second write
    latency = summary["routing"]["2"]["latency"]
    assert set(latency) == {"mysql"} and latency["mysql"]["write"]["count"] > 50, latency
    assert summary["routing"]["2"]["writes"] == 0 and summary["outboxed"] == 0
    assert not any("outbox" in line for line in summary_lines(summary))
    evidence = PhaseStore(ddb, settings.table_prefix).evidence(contract.name)
    assert "dual_writes" not in evidence and "shadow_reads" not in evidence

    entries = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    assert {e["op"] for e in entries} == set(summary["by_operation"])
    assert all(e["phase"] == 2 for e in entries)
    writes = [e for e in entries if "items" in e]
    assert writes and any("answer" in e for e in entries)
    assert all(e["items"] == [] and "outboxed" not in e for e in writes)  # the layer wrote no item

    synced, report = synced_parity(contract, settings)
    # a write that changed no row (a quantity set to what it was) leaves no binlog event
    assert synced["transactions"] > len(writes) // 2, (len(writes), synced)
    assert synced["items_written"] > len(writes) // 2, (len(writes), synced)
    assert report["success"], parity_failures(report)


def _cutover_command() -> list[str]:
    script = Path(sys.executable).parent / "cutover"
    return [str(script)] if script.exists() else [sys.executable, "-m", "cutover.cli"]


def test_cutover_traffic_writes_its_summary(
    prepared: tuple[Contract, Settings], tmp_path: Path
) -> None:
    _, settings = prepared
    m = settings.mysql
    auth = quote(m.user, safe="") + (f":{quote(m.password, safe='')}" if m.password else "")
    env = {
        **os.environ,
        "CUTOVER_MYSQL_URL": f"mysql://{auth}@{m.host}:{m.port}/{m.database}",
        "CUTOVER_DYNAMODB_ENDPOINT": settings.dynamodb_endpoint or "",
        "CUTOVER_TABLE_PREFIX": settings.table_prefix,
    }
    out = tmp_path / "out.json"
    done = subprocess.run(
        [*_cutover_command(), "traffic", str(CONTRACT), "--rate", "10", "--duration", "3",
         "--json", str(out)],
        env=env, capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(out.read_text())
    assert isinstance(summary["requests"], int) and summary["requests"] > 0
    assert isinstance(summary["failed"], int) and summary["failed"] == 0
    assert "requests in" in done.stdout and "p99 ms" in done.stdout
    assert "phase 2" in done.stdout and "outbox" not in done.stdout
