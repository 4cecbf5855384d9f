"""`cutover sync` killed with SIGKILL at five random moments while two writers change the
same rows by plain SQL: each restart resumes from the checkpoint, no item's version ever goes
back (checked from versions this test reads from DynamoDB itself, not from the sync's log),
and once the writers stop and the sync reaches the binlog's end, parity is full."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from tests.dynamo_tables import drop_tables

from cutover.backfill.driver import backfill
from cutover.binlog.checkpoint import CheckpointStore
from cutover.cli import EXIT_FAILED
from cutover.contract.load import load_contract
from cutover.db import connect, query
from cutover.prepare import prepare
from cutover.settings import Settings
from cutover.sync.runner import run_sync
from cutover.transform.items import VERSION_ATTRIBUTE
from cutover.validate.run import validate

pytestmark = [pytest.mark.integration, pytest.mark.mysql, pytest.mark.dynamodb]

KEYS = 30
CONTRACT = {
    "cutover": {"name": "gadgets"},
    "tables": [{
        "table": "Gadgets", "type": "single-entity", "source_table": "gadgets", "pk": "code",
        "attributes": [
            {"name": "code", "type": "S", "source_table": "gadgets", "source_column": "code"},
            {"name": "n", "type": "N", "source_table": "gadgets", "source_column": "n"},
            {"name": "label", "type": "S", "source_table": "gadgets", "source_column": "label"},
        ],
    }],
}  # fmt: skip


@dataclass
class Versions:
    """The versions this test has seen of each item, and every time one went back."""

    seen: dict[str, int] = field(default_factory=dict)
    backwards: list[tuple[str, int, int]] = field(default_factory=list)
    reads: int = 0

    def observe(self, code: str, version: int) -> None:
        before = self.seen.get(code)
        if before is not None and version < before:
            self.backwards.append((code, before, version))
        self.seen[code] = max(version, before or 0)


@pytest.fixture
def world(scratch_db: Settings, ddb: Any, tmp_path: Path) -> Iterator[tuple[Settings, Path]]:
    settings = replace(scratch_db, staging=(tmp_path / "staging").as_uri(),
                       table_prefix=f"{scratch_db.table_prefix}kill_")  # fmt: skip
    conn = connect(settings.mysql)
    try:
        query(conn, "CREATE TABLE gadgets (id INT PRIMARY KEY, code VARCHAR(20) NOT NULL, "
                    "n INT NOT NULL, label VARCHAR(40) NOT NULL)")  # fmt: skip
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO gadgets VALUES (%s, %s, 0, 'seed')",
                            [(i, f"G{i:03d}") for i in range(1, KEYS + 1)])  # fmt: skip
    finally:
        conn.close()
    path = tmp_path / "gadgets.json"
    path.write_text(json.dumps(CONTRACT))
    prepare(load_contract(path), settings)
    yield settings, path
    drop_tables(ddb, settings.table_prefix)


def _writer(settings: Settings, seed: int, stop: threading.Event, errors: list[Any]) -> None:
    """Updates, deletes and re-inserts of the same KEYS rows as the other writer."""
    import MySQLdb

    rng = random.Random(seed)
    conn = connect(settings.mysql)
    try:
        while not stop.is_set():
            i = rng.randint(1, KEYS)
            op = rng.random()
            try:
                if op < 0.15:
                    query(conn, "DELETE FROM gadgets WHERE id = %s", (i,))
                elif op < 0.3:
                    query(conn, "INSERT IGNORE INTO gadgets VALUES (%s, %s, 0, 'again')",
                          (i, f"G{i:03d}"))  # fmt: skip
                else:
                    query(conn, "UPDATE gadgets SET n = n + 1, label = %s WHERE id = %s",
                          (f"w{seed}", i))  # fmt: skip
            except MySQLdb.OperationalError as exc:
                # two writers of the same rows: InnoDB may pick this one as a deadlock's
                # victim and roll it back, as it would an application's; the next one goes on
                if exc.args[0] not in (1213, 1205):
                    raise
    except BaseException as exc:
        errors.append(exc)
    finally:
        conn.close()


def _observer(ddb: Any, table: str, versions: Versions, stop: threading.Event) -> None:
    while not stop.is_set():
        pages = ddb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True)
        for page in pages:
            for item in page["Items"]:
                versions.observe(item["code"]["S"], int(item[VERSION_ATTRIBUTE]["N"]))
        versions.reads += 1


def _sync_process(settings: Settings, contract: Path, log: Path) -> subprocess.Popen[bytes]:
    m = settings.mysql
    env = {**os.environ, "CUTOVER_MYSQL_URL": f"mysql://{m.user}@{m.host}:{m.port}/{m.database}",
           "CUTOVER_STAGING": settings.staging, "CUTOVER_TABLE_PREFIX": settings.table_prefix,
           "CUTOVER_DYNAMODB_ENDPOINT": settings.dynamodb_endpoint or ""}  # fmt: skip
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "cutover.cli", "sync", str(contract)],
                                stdout=out, stderr=subprocess.STDOUT, env=env)  # fmt: skip


def _wait_for(check: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)  # poll: until check() holds


def _moved(checkpoints: CheckpointStore, contract: str, saved: Any) -> bool:
    now = checkpoints.load(contract)
    return now is not None and now.ordinal > saved.ordinal


def test_a_sync_killed_five_times_resumes_from_its_checkpoint_and_converges(
    world: tuple[Settings, Path], ddb: Any, tmp_path: Path
) -> None:
    settings, path = world
    contract = load_contract(path)
    backfill(contract, settings, workers=2)
    checkpoints = CheckpointStore(ddb, settings.table_prefix)
    versions = Versions()
    stop, errors = threading.Event(), []
    threads = [threading.Thread(target=_writer, args=(settings, s, stop, errors), daemon=True)
               for s in (1, 2)]  # fmt: skip
    threads.append(threading.Thread(target=_observer, daemon=True, args=(
        ddb, settings.table_prefix + "Gadgets", versions, stop)))  # fmt: skip
    for t in threads:
        t.start()
    rng = random.Random(99)
    resumed_from = []
    try:
        for kill in range(6):
            saved = checkpoints.load(contract.name)
            log = tmp_path / f"sync-{kill}.log"
            proc = _sync_process(settings, path, log)
            try:
                assert saved is not None  # the backfill's handoff made it
                _wait_for(lambda p=saved: _moved(checkpoints, contract.name, p),
                          "the sync to apply a batch")  # fmt: skip
                text = log.read_text()
                assert f"from {saved}" in text, text[-2000:]
                resumed_from.append(saved)
                if kill < 5:
                    time.sleep(rng.uniform(0.0, 1.5))  # a random moment, mid-batch or not
            finally:
                proc.send_signal(signal.SIGKILL if kill < 5 else signal.SIGTERM)
                proc.wait(30)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert errors == []
    assert len(resumed_from) >= 5
    final = run_sync(contract, settings, once=True)
    assert final["lag_seconds"] == 0
    assert versions.reads > 5 and versions.backwards == [], versions.backwards[:5]
    report = validate(contract, settings)
    figures = report["tables"][0]["parity"]["entities"]["GADGETS"]
    assert (figures["missing"], figures["extra"], figures["mismatched"]) == (0, 0, 0), figures
    assert report["success"]


def test_from_phase_four_the_sync_and_the_backfill_write_nothing_into_dynamodb(
    world: tuple[Settings, Path], ddb: Any
) -> None:
    """In phase 4 DynamoDB is authoritative: a change made in MySQL then is not the sync's to
    carry (MySQL follows DynamoDB), so the sync applies nothing and says why, and the CLI
    exits 1 with the same sentence; a backfill, new or one planned before the move, is
    refused before it writes an item."""
    from cutover.backfill.run import BackfillRun
    from cutover.phases.guard import PhaseRefused
    from cutover.phases.model import Phase
    from cutover.phases.store import PhaseStore

    settings, path = world
    contract = load_contract(path)
    backfill(contract, settings, workers=1, fresh=True)
    run_sync(contract, settings, once=True)  # the checkpoint, at the binlog's end
    planned = BackfillRun(contract, settings)  # planned in phase 1, loaded after the move
    for part in planned.plan():
        planned.extract(part.id)
        planned.transform(part.id)
    planned.check_duplicates()
    store = PhaseStore(ddb, settings.table_prefix)
    state = store.get(contract.name)
    for phase in (Phase.DUAL_WRITE, Phase.DUAL_READ_MYSQL_PRIMARY,
                  Phase.DUAL_READ_DYNAMODB_PRIMARY):  # fmt: skip
        state = store.move(state, phase, actor="test", kind="advance")
    conn = connect(settings.mysql)
    try:
        query(conn, "UPDATE gadgets SET label = 'from mysql in phase 4' WHERE id = 1")
    finally:
        conn.close()
    report = run_sync(contract, settings, once=True)
    assert "phase 4" in report["stood_down"] and report["transactions"] == 0
    table = settings.table_prefix + "Gadgets"
    item = ddb.get_item(TableName=table, Key={"code": {"S": "G001"}}, ConsistentRead=True)
    assert item["Item"]["label"]["S"] == "seed"
    with pytest.raises(PhaseRefused, match="phase 4"):
        planned.load(planned.partitions()[0].id)
    with pytest.raises(PhaseRefused, match="the backfill does not write DynamoDB"):
        backfill(contract, settings, workers=1, fresh=True)
    item = ddb.get_item(TableName=table, Key={"code": {"S": "G001"}}, ConsistentRead=True)
    assert item["Item"]["label"]["S"] == "seed"

    m = settings.mysql
    env = {**os.environ, "CUTOVER_MYSQL_URL": f"mysql://{m.user}@{m.host}:{m.port}/{m.database}",
           "CUTOVER_STAGING": settings.staging, "CUTOVER_TABLE_PREFIX": settings.table_prefix,
           "CUTOVER_DYNAMODB_ENDPOINT": settings.dynamodb_endpoint or ""}  # fmt: skip
    cli = subprocess.run([sys.executable, "-m", "cutover.cli", "sync", "--once", str(path)],
                         capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert cli.returncode == EXIT_FAILED, cli.stderr
    assert "does not write DynamoDB from MySQL" in cli.stderr


def test_two_syncs_take_turns_so_a_deleted_row_never_comes_back(
    world: tuple[Settings, Path], ddb: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sync A derives a row's item, then stalls before writing it; the row is deleted and
    sync B, which reads past the delete, runs meanwhile. Were both to write at once, B would
    delete the item and A then put back what it derived before the delete (a put cannot see
    an item that is gone). They take turns batch by batch (the lease): B's batch waits for
    A's, then deletes."""
    from cutover.binlog.lease import SyncLease
    from cutover.sync.applier import Applier

    settings, path = world
    contract = load_contract(path)
    backfill(contract, settings, workers=1, fresh=True)
    run_sync(contract, settings, once=True)
    derived, go, b_waiting = threading.Event(), threading.Event(), threading.Event()
    a_thread: list[threading.Thread] = []
    real_apply, real_claim = Applier.apply, SyncLease._claim

    def apply(self: Applier, conn: Any, refs: Any, version: int, **kwargs: Any) -> Any:
        before_write = kwargs.get("before_write")

        def stall() -> None:
            if threading.current_thread() in a_thread:
                derived.set()
                assert go.wait(60)
            if before_write is not None:
                before_write()

        return real_apply(self, conn, refs, version, before_write=stall)

    def claim(self: SyncLease) -> bool:
        won = real_claim(self)
        if not won and threading.current_thread() not in a_thread:
            b_waiting.set()
        return won

    monkeypatch.setattr(Applier, "apply", apply)
    monkeypatch.setattr(SyncLease, "_claim", claim)
    conn = connect(settings.mysql)
    try:
        query(conn, "UPDATE gadgets SET label = 'derived by A' WHERE id = 1")
        errors: list[BaseException] = []

        def sync_run() -> None:
            try:
                run_sync(contract, settings, once=True)
            except BaseException as exc:
                errors.append(exc)

        a = threading.Thread(target=sync_run)
        a_thread.append(a)
        a.start()
        assert derived.wait(60), "sync A did not reach its write"
        query(conn, "DELETE FROM gadgets WHERE id = 1")
        b = threading.Thread(target=sync_run)
        b.start()
        deadline = time.monotonic() + 60
        while not (b_waiting.is_set() or not b.is_alive()) and time.monotonic() < deadline:
            b_waiting.wait(0.05)
        go.set()
        a.join(60)
        b.join(60)
        assert errors == []
    finally:
        conn.close()
    table = settings.table_prefix + "Gadgets"
    item = ddb.get_item(TableName=table, Key={"code": {"S": "G001"}}, ConsistentRead=True)
    assert "Item" not in item, "the deleted row's item came back"
