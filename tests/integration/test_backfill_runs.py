"""Backfill runs against MariaDB and DynamoDB Local, on a small table of its own: which run
`cutover backfill` resumes (by the time runs were planned, an Airflow run id beside a CLI one),
a changed contract refused, `--new` and `--resume RUN_ID`, and catch-up streaming changed rows
in bounded chunks and quarantining the ones that cannot become items."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from cutover.backfill import catch_up as catch_up_module
from cutover.backfill.catch_up import catch_up
from cutover.backfill.driver import backfill
from cutover.backfill.run import BackfillRun, contract_sha256, list_runs, new_run_id
from cutover.cli import EXIT_BAD_INPUT, main
from cutover.contract.load import load_contract
from cutover.contract.model import Contract
from cutover.db import connect, query
from cutover.prepare import prepare
from cutover.settings import Settings

pytestmark = pytest.mark.integration

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
    for name in ddb.list_tables()["TableNames"]:
        if name.startswith(settings.table_prefix):
            ddb.delete_table(TableName=name)


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

    before = first._done("extract", first.partitions()[0].id)
    code, out, err = _cli(world, "--resume", first.run_id, capsys=capsys)
    assert code == 0, err
    assert f"run {first.run_id}:" in out
    assert _finished(world, first.run_id) and not _finished(world, second.run_id)
    assert first._done("extract", first.partitions()[0].id) == before, "extracted again"
    assert len(first.partitions()) == 2

    code, _, err = _cli(world, "--resume", first.run_id, capsys=capsys)
    assert code == EXIT_BAD_INPUT and "finished" in err


def test_catch_up_quarantines_a_bad_changed_row_and_the_gate_counts_it(world: World) -> None:
    run = world.run(new_run_id())
    parts = run.plan()
    for part in parts:
        run.transform(part.id)
    run.check_duplicates()
    for part in parts:
        run.load(part.id, workers=2)
    # written while the run copied: a good change, and a row that lost its key
    world.sql("UPDATE widgets SET name = 'renamed' WHERE id = 3")
    world.sql("UPDATE widgets SET code = '' WHERE id = 7")

    caught = catch_up(run, batch_rows=4)
    assert caught["quarantined"] == 1 and caught["reasons"] == {"empty_key": 1}
    assert world.item("W0003")["name"] == {"S": "renamed"}  # type: ignore[index]
    rows = pq.read_table(
        run.staging.path(run.paths.of("quarantine", "catch_up.parquet")),
        filesystem=run.staging.fs,
    ).to_pylist()
    assert [(r["table"], r["reason"], json.loads(r["source_pk"])["id"]) for r in rows] == [
        ("Widgets", "empty_key", 7)
    ]
    # the same format as the transform's quarantine files
    transform_file = run.paths.of("quarantine", f"{parts[0].id}.parquet")
    assert pq.read_schema(run.staging.path(transform_file), filesystem=run.staging.fs).equals(
        pq.read_schema(
            run.staging.path(run.paths.of("quarantine", "catch_up.parquet")),
            filesystem=run.staging.fs,
        )
    )

    # a retried catch-up quarantines the row once, not twice
    caught = catch_up(run, batch_rows=4)
    assert caught["quarantined"] == 1
    manifest = run.finish({"catch_up": caught})
    assert manifest["quarantined"] == 1
    assert {k: v for k, v in manifest["quarantine_reasons"].items() if v} == {"empty_key": 1}
    assert manifest["gate"] == {"max_quarantined_rows": 0, "passed": False}

    # a nightly catch-up knows the row is in quarantine already
    nightly = catch_up(BackfillRun(run.contract, run.settings, run.run_id), since_last=True)
    assert nightly["quarantined"] == 0 and nightly["quarantine_file"] is None


@dataclass
class Meter:
    """Rows read from MySQL and not yet put: what catch-up holds at once."""

    fetched: int = 0
    put: int = 0
    batches: list[int] = field(default_factory=list)
    most_held: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def held(self) -> int:
        with self.lock:
            self.most_held = max(self.most_held, self.fetched - self.put)
            return self.fetched - self.put


def test_catch_up_holds_one_batch_of_changed_rows_however_many_changed(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = backfill(world.contract, world.settings, workers=2)
    run = world.run(manifest["run_id"])
    world.sql("UPDATE widgets SET name = CONCAT('changed ', id) WHERE id <= 50")

    meter = Meter()
    real_stream, real_put = catch_up_module.arrow_stream, catch_up_module.guarded_put

    class CountingStream:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def __iter__(self) -> Iterator[Any]:
            for batch in self.inner:
                with meter.lock:
                    meter.fetched += batch.num_rows
                    meter.batches.append(batch.num_rows)
                meter.held()
                yield batch

    def stream(*args: Any, **kwargs: Any) -> CountingStream:
        return CountingStream(real_stream(*args, **kwargs))

    def put(*args: Any, **kwargs: Any) -> str:
        assert meter.held() <= 7
        outcome = real_put(*args, **kwargs)
        with meter.lock:
            meter.put += 1
        return outcome

    monkeypatch.setattr(catch_up_module, "arrow_stream", stream)
    monkeypatch.setattr(catch_up_module, "guarded_put", put)
    caught = catch_up(run, batch_rows=7, workers=3)

    # 50 changed rows and the unchanged one at the high-water mark, every one of them put
    assert caught["rows"] == meter.fetched == meter.put == 51
    assert caught["written"] + caught["kept_newer"] == 51 and caught["written"] >= 50
    assert len(meter.batches) >= 8 and max(meter.batches) <= 7
    assert meter.most_held <= 7, "catch-up read the next batch before the last was put"
    assert world.item("W0050")["name"] == {"S": "changed 50"}  # type: ignore[index]
