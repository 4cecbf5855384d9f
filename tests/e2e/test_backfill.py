"""Backfill of the sample contract against MariaDB and DynamoDB Local: counts per entity,
the exact quarantine, resuming after a kill, and catch-up of writes made during the run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from cutover.backfill.driver import backfill
from cutover.backfill.run import BackfillRun
from cutover.contract.load import load_contract
from cutover.contract.model import Contract
from cutover.contract.views import view_name
from cutover.db import connect, query
from cutover.prepare import prepare
from cutover.sample.generator import load_sample, planted_defects
from cutover.settings import PROJECT_ROOT, Settings

pytestmark = [pytest.mark.e2e, pytest.mark.mysql, pytest.mark.dynamodb]

CONTRACT_PATH = PROJECT_ROOT / "contracts" / "ecommerce.json"


@pytest.fixture
def world(
    scratch_db: Settings, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[Contract, Settings]]:
    """The sample at scale 1 in a scratch database, prepared into fresh DynamoDB tables."""
    settings = replace(
        scratch_db,
        staging=(tmp_path / "staging").as_uri(),
        table_prefix=f"{scratch_db.table_prefix}{request.node.name[-12:].strip('_[]')}_",
    )
    load_sample(settings, scale=1)
    contract = load_contract(CONTRACT_PATH)
    prepare(contract, settings)
    yield contract, settings
    from cutover.aws import dynamodb_client

    client = dynamodb_client(settings)
    for table in contract.tables:
        client.delete_table(TableName=settings.table_prefix + table.table)


def _view_counts(contract: Contract, settings: Settings) -> Counter[str]:
    conn = connect(settings.mysql)
    counts: Counter[str] = Counter()
    try:
        for table in contract.tables:
            rows = query(
                conn,
                f"SELECT `__entity`, COUNT(*) FROM `{view_name(contract, table)}` "
                "GROUP BY `__entity`",
            )
            for entity, count in rows:
                counts[f"{table.table}.{entity}"] = count
    finally:
        conn.close()
    return counts


def _items_per_entity(contract: Contract, settings: Settings) -> Counter[str]:
    from cutover.aws import dynamodb_client

    client = dynamodb_client(settings)
    counts: Counter[str] = Counter()
    for table in contract.tables:
        name = settings.table_prefix + table.table
        entity_of = {s.entity_type: s for s in table.sources}
        for page in client.get_paginator("scan").paginate(TableName=name):
            for item in page["Items"]:
                if len(entity_of) == 1:
                    counts[f"{table.table}.{next(iter(entity_of))}"] += 1
                else:
                    counts[f"{table.table}.{_entity_of(table, item)}"] += 1
    return counts


def _entity_of(table: Any, item: dict[str, Any]) -> str:
    """Which entity a multi-entity item came from, by the constant part of its sort key."""
    sk = item[table.sk]["S"]
    for source in table.sources:
        prefix = (source.sk_template or "").split("{", 1)[0]
        if prefix and sk.startswith(prefix):
            return source.entity_type
    raise AssertionError(f"no entity matches sort key {sk!r}")


def _quarantine(run: BackfillRun) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    folder = run.paths.of("quarantine")
    for name in run.staging.listdir(folder):
        rows.extend(
            pq.read_table(run.staging.path(folder, name), filesystem=run.staging.fs).to_pylist()
        )
    return rows


def test_backfill_loads_every_entity_and_quarantines_exactly_the_planted_rows(
    world: tuple[Contract, Settings],
) -> None:
    contract, settings = world
    manifest = backfill(contract, settings, partitions=3, workers=4)
    run = BackfillRun(contract, settings, manifest["run_id"])

    quarantined = _quarantine(run)
    got = sorted(
        (q["table"], q["entity_type"], json.loads(q["source_pk"])["id"], q["reason"])
        for q in quarantined
    )
    want = sorted(
        (d.dynamodb_table, d.entity_type, d.source_pk["id"], d.reason) for d in planted_defects(1)
    )
    assert got == want
    assert manifest["quarantined"] == len(want)
    assert manifest["gate"]["passed"] is (len(want) <= contract.cutover.gate.max_quarantined_rows)

    expected = _view_counts(contract, settings)
    for q in quarantined:
        expected[f"{q['table']}.{q['entity_type']}"] -= 1
    assert _items_per_entity(contract, settings) == +expected
    assert manifest["items_per_entity"] == dict(+expected)
    assert manifest["load"]["items"] == sum(expected.values())


def _env(settings: Settings) -> dict[str, str]:
    m = settings.mysql
    return {
        **os.environ,
        "CUTOVER_MYSQL_URL": f"mysql://{m.user}@{m.host}:{m.port}/{m.database}",
        "CUTOVER_DYNAMODB_ENDPOINT": settings.dynamodb_endpoint or "",
        "CUTOVER_STAGING": settings.staging,
        "CUTOVER_TABLE_PREFIX": settings.table_prefix,
    }


def test_a_killed_backfill_resumes_without_rewriting_finished_partitions(
    world: tuple[Contract, Settings],
) -> None:
    contract, settings = world
    cmd = [sys.executable, "-m", "cutover.cli", "backfill", str(CONTRACT_PATH),
           "--partitions", "4", "--workers", "1", "--rate", "1500"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=_env(settings), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip
    run_dir = None
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        runs = BackfillRun(contract, settings).staging.listdir(contract.name, "runs")
        if runs:
            run_dir = runs[-1]
            loaded = BackfillRun(contract, settings, run_dir).staging.listdir(
                contract.name, "runs", run_dir, "checkpoints", "load"
            )
            if len(loaded) >= 2:
                break
        time.sleep(0.2)  # poll: until two partitions are loaded
    assert proc.poll() is None, "the backfill finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert run_dir is not None

    run = BackfillRun(contract, settings, run_dir)
    before = {
        name: run.staging.read_json(run.paths.of("checkpoints", "load", name))
        for name in run.staging.listdir(run.paths.of("checkpoints", "load"))
    }
    total = len(run.partitions())
    assert 2 <= len(before) < total

    rerun = subprocess.run(cmd, env=_env(settings), capture_output=True, text=True)
    # The resumed run quarantines each planted row once, as an uninterrupted run does, and the
    # contract allows that many (gate.max_quarantined_rows): the gate passes, exit 0. A resume
    # that quarantined a finished partition's rows again would exceed the limit and exit 1.
    planted = planted_defects(1)
    assert len(planted) <= contract.cutover.gate.max_quarantined_rows
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "gate failed" not in rerun.stderr
    assert f"run {run_dir}" in rerun.stdout
    reasons = dict(sorted(Counter(d.reason for d in planted).items()))
    assert f"quarantined: {len(planted)} {reasons}" in rerun.stdout, rerun.stdout

    after = {
        name: run.staging.read_json(run.paths.of("checkpoints", "load", name))
        for name in run.staging.listdir(run.paths.of("checkpoints", "load"))
    }
    assert len(after) == total
    for name, record in before.items():
        assert after[name] == record, f"partition {name} was written again"

    quarantined = _quarantine(run)
    got = sorted(
        (q["table"], q["entity_type"], json.loads(q["source_pk"])["id"], q["reason"])
        for q in quarantined
    )
    want = sorted((d.dynamodb_table, d.entity_type, d.source_pk["id"], d.reason) for d in planted)
    assert got == want, "the resumed run quarantined rows again, or lost some"
    expected = _view_counts(contract, settings)
    for q in quarantined:
        expected[f"{q['table']}.{q['entity_type']}"] -= 1
    assert _items_per_entity(contract, settings) == +expected
