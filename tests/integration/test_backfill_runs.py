"""Backfill runs against MariaDB and DynamoDB Local, on a small table of its own: which run
`cutover backfill` resumes (by the time runs were planned, an Airflow run id beside a CLI one),
a changed contract refused, `--new` and `--resume RUN_ID`, and the handoff to the binlog sync
(changes made while the run copied, deletes included, applied over the snapshot; rows that
cannot become items quarantined)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from tests.dynamo_tables import drop_tables

from cutover.backfill.checkpoints import list_runs, new_run_id
from cutover.backfill.driver import backfill
from cutover.backfill.handoff import handoff
from cutover.backfill.plan import contract_sha256
from cutover.backfill.run import BackfillRun
from cutover.binlog.position import Position
from cutover.cli import EXIT_BAD_INPUT, main
from cutover.contract.load import load_contract
from cutover.contract.model import Contract
from cutover.db import connect, query
from cutover.prepare import prepare
from cutover.settings import Settings
from cutover.sync import runner as sync_runner
from cutover.sync.applier import Applier
from cutover.sync.runner import run_sync
from cutover.transform.items import VERSION_ATTRIBUTE

pytestmark = [pytest.mark.integration, pytest.mark.mysql, pytest.mark.dynamodb]

ROWS = 60
CONTRACT_DOC: dict[str, Any] = {
    "cutover": {"name": "widgets", "gate": {"max_quarantined_rows": 0}},
    "tables": [
        {
            "table": "Widgets",
            "type": "single-entity",
            "source_table": "widgets",
            "pk": "code",
            "attributes": [
                {"name": "code", "type": "S", "source_table": "widgets", "source_column": "code"},
                {"name": "id", "type": "N", "source_table": "widgets", "source_column": "id"},
                {"name": "name", "type": "S", "source_table": "widgets", "source_column": "name"},
            ],
            "cutover": {"version_column": "updated_at"},
        }
    ],
}


@dataclass
class World:
    contract_path: Path
    settings: Settings
    ddb: Any

    @property
    def contract(self) -> Contract:
        return load_contract(self.contract_path)

    def run(self, run_id: str | None = None) -> BackfillRun:
        return BackfillRun(self.contract, self.settings, run_id)

    def sql(self, statement: str, params: tuple[Any, ...] | None = None) -> list[Any]:
        conn = connect(self.settings.mysql)
        try:
            return list(query(conn, statement, params))
        finally:
            conn.close()

    def item(self, code: str) -> dict[str, Any] | None:
        table = self.settings.table_prefix + "Widgets"
        return self.ddb.get_item(TableName=table, Key={"code": {"S": code}}).get("Item")


@pytest.fixture
def world(
    scratch_db: Settings,
    ddb: Any,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[World]:
    """``widgets`` (ROWS rows, versioned by updated_at) in a scratch database, its contract in
    a file, prepared into DynamoDB tables of a prefix of its own; the CLI's environment
    points at the same places."""
    settings = replace(
        scratch_db,
        staging=(tmp_path / "staging").as_uri(),
        table_prefix=f"{scratch_db.table_prefix}{request.node.name[-12:].strip('_[]')}_",
    )
    conn = connect(settings.mysql)
    try:
        query(conn, "CREATE TABLE widgets (id INT PRIMARY KEY, code VARCHAR(40) NOT NULL, "
                    "name VARCHAR(100) NOT NULL, updated_at DATETIME(6) NOT NULL "
                    "DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6))")  # fmt: skip
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO widgets VALUES (%s, %s, %s, "
                "TIMESTAMP('2024-01-01') + INTERVAL %s SECOND)",
                [(i, f"W{i:04d}", f"widget {i}", i) for i in range(1, ROWS + 1)],
            )
        conn.commit()
    finally:
        conn.close()
    path = tmp_path / "widgets.json"
    path.write_text(json.dumps(CONTRACT_DOC))
    prepare(load_contract(path), settings)
    m = settings.mysql
    monkeypatch.setenv("CUTOVER_MYSQL_URL", f"mysql://{m.user}@{m.host}:{m.port}/{m.database}")
    monkeypatch.setenv("CUTOVER_STAGING", settings.staging)
    monkeypatch.setenv("CUTOVER_TABLE_PREFIX", settings.table_prefix)
    monkeypatch.setenv("CUTOVER_DYNAMODB_ENDPOINT", settings.dynamodb_endpoint or "")
    yield World(path, settings, ddb)
    drop_tables(ddb, settings.table_prefix)


def _cli(world: World, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["backfill", str(world.contract_path), "--workers", "2", *args])
    out, err = capsys.readouterr()
    return code, out, err


def _finished(world: World, run_id: str) -> bool:
    return world.run(run_id).staging.exists(world.run(run_id).paths.of("manifest.json"))


def test_the_latest_run_is_the_one_planned_last_not_the_last_by_name(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """An Airflow run planned first, a CLI run planned after it: as text the af- id sorts
    last, by start time the CLI run is the latest, and `cutover backfill` resumes it."""
    airflow = world.run("af-manual__2026-03-01T12_00_00+00_00")
    airflow.plan()
    cli = world.run(new_run_id())
    cli.plan()
    assert sorted([airflow.run_id, cli.run_id])[-1] == airflow.run_id
    assert [r.run_id for r in list_runs(world.contract, world.settings)] == [
        airflow.run_id,
        cli.run_id,
    ]
    assert world.run().run_id == cli.run_id

    code, out, err = _cli(world, capsys=capsys)
    assert code == 0, err
    assert f"run {cli.run_id}:" in out
    assert _finished(world, cli.run_id) and not _finished(world, airflow.run_id)
    assert world.item("W0001") is not None

    # planned last and not finished, the Airflow run is left to its DAG
    later = world.run("af-manual__2026-03-01T13_00_00+00_00")
    later.plan()
    code, _, err = _cli(world, capsys=capsys)
    assert code == EXIT_BAD_INPUT
    assert f"--resume {later.run_id}" in err and "--new" in err


def test_a_changed_contract_refuses_the_resume_and_new_starts_a_new_plan(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    old = world.run(new_run_id())
    old.plan(2)
    old_hash = contract_sha256(world.contract)
    changed = {**CONTRACT_DOC, "cutover": {"name": "widgets", "gate": {"max_quarantined_rows": 5}}}
    world.contract_path.write_text(json.dumps(changed))
    new_hash = contract_sha256(world.contract)
    assert new_hash != old_hash

    code, out, err = _cli(world, capsys=capsys)
    assert code == EXIT_BAD_INPUT, out
    assert old.run_id in err and old_hash[:12] in err and new_hash[:12] in err
    assert "start a new run with --new" in err
    assert world.item("W0001") is None, "nothing may be loaded from the refused run"

    code, out, err = _cli(world, "--new", capsys=capsys)
    assert code == 0, err
    match = re.search(r"^run (\S+):", out, re.MULTILINE)
    assert match is not None and match.group(1) != old.run_id
    plan_doc = world.run(match.group(1)).plan_doc()
    assert plan_doc["contract_sha256"] == new_hash
    assert plan_doc["settings"]["partitions"] is None
    assert plan_doc["settings"]["mysql"]["database"] == world.settings.mysql.database
    assert plan_doc["settings"]["table_prefix"] == world.settings.table_prefix
    assert not _finished(world, old.run_id)
    assert world.item("W0001") is not None


def test_resume_run_id_resumes_that_run_with_its_partitions(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    first = world.run(new_run_id())
    first.plan(2)
    first.extract(first.partitions()[0].id)
    second = world.run(new_run_id())
    second.plan(3)

    code, _, err = _cli(world, "--resume", first.run_id, "--partitions", "3", capsys=capsys)
    assert code == EXIT_BAD_INPUT
    assert f"run {first.run_id}" in err and "--partitions 2" in err and "--new" in err

    before = first.checkpoints.done("extract", first.partitions()[0].id)
    code, out, err = _cli(world, "--resume", first.run_id, capsys=capsys)
    assert code == 0, err
    assert f"run {first.run_id}:" in out
    assert _finished(world, first.run_id) and not _finished(world, second.run_id)
    assert first.checkpoints.done("extract", first.partitions()[0].id) == before, "extracted again"
    assert len(first.partitions()) == 2

    code, _, err = _cli(world, "--resume", first.run_id, capsys=capsys)
    assert code == EXIT_BAD_INPUT and "finished" in err


def _copy(run: BackfillRun, between: Any = None) -> None:
    """Plan, extract, transform and load every partition; ``between`` runs after the extracts
    and before the loads (a writer changing rows the snapshot already copied)."""
    parts = run.plan()
    for part in parts:
        run.extract(part.id)
    if between is not None:
        between()
    for part in parts:
        run.transform(part.id)
    run.check_duplicates()
    for part in parts:
        run.load(part.id, workers=2)


def test_the_handoff_applies_what_changed_while_the_backfill_copied(world: World) -> None:
    """Rows changed after the snapshot's binlog position, by plain SQL, between the extract
    and the load of their partition: a row deleted is absent at the end, a row updated twice
    holds its second value, an insert arrives, a row that lost its key is quarantined and its
    old item removed; no version column is involved (the contract has one: it is not read)."""
    run = world.run(new_run_id())

    def writer() -> None:
        world.sql("DELETE FROM widgets WHERE id = 9")
        world.sql("UPDATE widgets SET name = 'first' WHERE id = 11")
        world.sql("UPDATE widgets SET name = 'second' WHERE id = 11")
        world.sql("INSERT INTO widgets (id, code, name) VALUES (100, 'W0100', 'new one')")
        world.sql("UPDATE widgets SET code = '' WHERE id = 7")
        world.sql("UPDATE widgets SET name = 'renamed' WHERE id = 3")

    _copy(run, writer)
    # the snapshot copied the rows as they were: the loads brought W0009 and W0007 back
    assert world.item("W0009") is not None and world.item("W0007") is not None
    assert world.item("W0011")["name"] == {"S": "widget 11"}  # type: ignore[index]

    handed = handoff(run)
    assert handed["transactions"] == 6 and handed["unavailable"] is None
    assert world.item("W0009") is None, "a row deleted during the backfill came back"
    assert world.item("W0007") is None, "the item of a row that lost its key stayed"
    assert world.item("W0011")["name"] == {"S": "second"}  # type: ignore[index]
    assert world.item("W0100")["name"] == {"S": "new one"}  # type: ignore[index]
    assert world.item("W0003")["name"] == {"S": "renamed"}  # type: ignore[index]
    assert handed["quarantined"] == 1 and handed["reasons"] == {"empty_key": 1}
    rows = pq.read_table(
        run.staging.path(run.paths.of("quarantine", "handoff.parquet")),
        filesystem=run.staging.fs,
    ).to_pylist()
    assert [(r["table"], r["reason"], json.loads(r["source_pk"])["id"]) for r in rows] == [
        ("Widgets", "empty_key", 7)
    ]
    transform_file = run.paths.of("quarantine", f"{run.partitions()[0].id}.parquet")
    assert pq.read_schema(run.staging.path(transform_file), filesystem=run.staging.fs).equals(
        pq.read_schema(
            run.staging.path(run.paths.of("quarantine", "handoff.parquet")),
            filesystem=run.staging.fs,
        )
    )
    # a resumed run does not hand off twice; the gate counts the quarantined row
    assert handoff(world.run(run.run_id)) == handed
    manifest = run.finish({"handoff": handed})
    assert manifest["quarantined"] == 1
    assert manifest["gate"] == {"max_quarantined_rows": 0, "passed": False}


def test_a_row_the_snapshot_quarantined_counts_once_when_the_handoff_derives_it_again(
    world: World,
) -> None:
    """A row with no key at the snapshot, changed again during the copy (still without a
    key): the handoff rejects it too, and the gate's count still has it once."""
    world.sql("UPDATE widgets SET code = '' WHERE id = 5")
    run = world.run(new_run_id())
    _copy(run, lambda: world.sql("UPDATE widgets SET name = 'still no key' WHERE id = 5"))
    handed = handoff(run)
    assert handed["transactions"] == 1
    assert handed["quarantined"] == 0
    manifest = run.finish({"handoff": handed})
    reasons = {k: v for k, v in manifest["quarantine_reasons"].items() if v}
    assert manifest["quarantined"] == 1 and reasons == {"empty_key": 1}


def test_every_loaded_item_carries_the_snapshot_position_and_the_sync_moves_it_on(
    world: World,
) -> None:
    """Items are versioned by the binlog position, not by the version column: the backfill
    stamps the position it recorded before its snapshot, and a change the sync applies
    carries a later one."""
    manifest = backfill(world.contract, world.settings, workers=2)
    start = Position.from_dict(manifest["binlog_position"])
    version = int(world.item("W0001")[VERSION_ATTRIBUTE]["N"])  # type: ignore[index]
    assert version == start.ordinal
    world.sql("UPDATE widgets SET name = 'moved on' WHERE id = 1")
    run_sync(world.contract, world.settings, once=True)
    item = world.item("W0001")
    assert item is not None and item["name"] == {"S": "moved on"}
    assert int(item[VERSION_ATTRIBUTE]["N"]) > version


def test_the_sync_applies_a_bounded_batch_of_refs_however_many_rows_changed(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Memory is bounded by the batch, not by the backlog: with batches of 10 refs, 50 rows
    changed in 50 transactions are applied in several batches of at most 10 refs."""
    backfill(world.contract, world.settings, workers=2)
    for i in range(1, 51):
        world.sql("UPDATE widgets SET name = %s WHERE id = %s", (f"changed {i}", i))
    sizes: list[int] = []
    real_apply = Applier.apply

    def apply(self: Applier, conn: Any, refs: Any, version: int, **kwargs: Any) -> Any:
        refs = list(refs)
        sizes.append(len(refs))
        return real_apply(self, conn, refs, version, **kwargs)

    monkeypatch.setattr(sync_runner, "BATCH_REFS", 10)
    monkeypatch.setattr(Applier, "apply", apply)
    report = run_sync(world.contract, world.settings, once=True)
    assert report["transactions"] == 50 and report["items_written"] == 50
    assert len(sizes) >= 5 and max(sizes) <= 10
    assert world.item("W0050")["name"] == {"S": "changed 50"}  # type: ignore[index]
