"""The sync line of `cutover bench`: how fast and how closely DynamoDB follows MySQL's binlog.

* read ceiling: row changes per second ``BinlogReader`` reads, nothing applied, over a
  backlog of N updates of a plain column (``users.bio``) made beforehand in transactions of
  10 rows;
* apply rate: row changes per second ``run_sync(once=True)`` applies over the same backlog
  from the same start (the report's rows over its seconds), checkpoints included;
* lag: a writer commits single-row updates at a fixed rate while ``run_sync`` follows in a
  thread; after each commit it notes its wall time and GTID (``@@last_gtid``), and each
  batch ``run_sync`` puts in DynamoDB notes its position's GTID and the time. A change's lag
  is the first batch at or past its GTID, less its commit time; p50/p99 in ms.

Everything runs on data of its own, as the routing line's: the sample database (scale 1) in
a MySQL database of its own, prepared and backfilled into DynamoDB tables under a prefix of
its own, both removed afterwards. The lag needs MariaDB (its per-session ``@@last_gtid``).
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from cutover.bench.routing import set_up_sample, tear_down, user_ids
from cutover.bench.synthetic import bench_database
from cutover.binlog.position import Position, current_position, gtid_seq, is_mariadb
from cutover.contract.model import Contract
from cutover.db import connect, query
from cutover.errors import CutoverError
from cutover.settings import PROJECT_ROOT, Settings
from cutover.sync.mapper import DependencyIndex
from cutover.sync.reader import BinlogReader, Commit, Idle, RowChange
from cutover.sync.runner import run_sync

log = logging.getLogger("cutover.bench")

SYNC_DATABASE = "cutover_bench_sync"
SYNC_PREFIX = "bench_sync_"
TRANSACTION_ROWS = 10  # rows per transaction of the backlog
LAG_RATE = 200.0  # changes per second of the lag writer
READ_TIMEOUT = 600.0  # seconds to read the backlog before the bench gives up
CATCH_UP_TIMEOUT = 120.0  # seconds after the writer's last commit for run_sync to apply it


class SyncBenchFailed(CutoverError):
    """The sync bench could not measure what it set out to."""


def sync_settings(settings: Settings, staging: str) -> Settings:
    return replace(
        settings,
        mysql=settings.mysql.with_database(bench_database(SYNC_DATABASE, settings)),
        table_prefix=settings.table_prefix + SYNC_PREFIX,
        staging=staging,
    )


def _backlog(bench: Settings, users: list[int], changes: int) -> int:
    """``changes`` updates of ``users.bio`` in transactions of ``TRANSACTION_ROWS`` rows;
    the rows changed (``updated_at`` moves too, so every row updated is a row event)."""
    conn = connect(bench.mysql, autocommit=False)
    changed = 0
    try:
        with conn.cursor() as cur:
            for n, first in enumerate(range(0, changes, TRANSACTION_ROWS)):
                count = min(TRANSACTION_ROWS, changes - first)
                ids = [users[(first + i) % len(users)] for i in range(count)]
                marks = ", ".join(["%s"] * count)
                cur.execute(f"UPDATE users SET bio = %s WHERE id IN ({marks})",
                            (f"sync bench backlog {n}", *ids))  # fmt: skip
                changed += int(cur.rowcount)
                conn.commit()
    finally:
        conn.close()
    return changed


def read_ceiling(
    bench: Settings, tables: set[str], start: Position, end: Position
) -> tuple[int, float]:
    """Row changes ``BinlogReader`` yields from ``start`` to ``end``, and its seconds."""
    conn = connect(bench.mysql)
    try:
        mariadb = is_mariadb(conn)
    finally:
        conn.close()
    rows = 0
    started = time.perf_counter()
    reader = BinlogReader(bench.mysql, start, schema=bench.mysql.database, tables=tables,
                          mariadb=mariadb)  # fmt: skip
    try:
        for event in reader.events():
            if isinstance(event, RowChange):
                rows += 1
            elif isinstance(event, Commit | Idle) and event.position.ordinal >= end.ordinal:
                break
            if time.perf_counter() - started > READ_TIMEOUT:
                raise SyncBenchFailed(f"reading the backlog took over {READ_TIMEOUT:.0f} s")
    finally:
        reader.close()
    return rows, time.perf_counter() - started


class _Follow:
    """``run_sync`` in a thread until ``stop``; each batch's GTID seq and time noted."""

    def __init__(self, contract: Contract, bench: Settings, start: Position, domain: str):
        self.domain = domain
        self.applied: list[tuple[int, float]] = []  # (GTID seq, applied at), in order
        self.changed = threading.Condition()
        self.stop = threading.Event()
        self.report: dict[str, Any] = {}
        self.error: Exception | None = None
        self.thread = threading.Thread(
            target=self._run, args=(contract, bench, start), name="bench-sync", daemon=True
        )

    def _run(self, contract: Contract, bench: Settings, start: Position) -> None:
        try:
            self.report = run_sync(contract, bench, start=start, stop=self.stop, record=False,
                                   on_batch=self._batch)  # fmt: skip
        except Exception as exc:
            self.error = exc
        finally:
            with self.changed:
                self.changed.notify_all()

    def _batch(self, position: Position, applied_at: float, transactions: int) -> None:
        seq = gtid_seq(position.gtid, self.domain)
        if seq is not None:
            with self.changed:
                self.applied.append((seq, applied_at))
                self.changed.notify_all()

    def wait_for(self, seq: int, timeout: float) -> bool:
        """True once a batch at or past ``seq`` is in DynamoDB."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while not (self.applied and self.applied[-1][0] >= seq):
                left = deadline - time.monotonic()
                if left <= 0 or self.error is not None or not self.thread.is_alive():
                    return False
                self.changed.wait(min(left, 0.5))
        return True

    def finish(self) -> dict[str, Any]:
        self.stop.set()
        self.thread.join(timeout=60)
        if self.error is not None:
            raise SyncBenchFailed(f"run_sync failed while following: {self.error}")
        return self.report


def lags_ms(commits: list[tuple[int, float]], applied: list[tuple[int, float]]) -> list[float]:
    """Each commit's (GTID seq, commit time) lag: the first batch applied at or past its seq,
    less its commit time, in ms; a commit no batch reached has none."""
    out: list[float] = []
    i = 0
    for seq, committed_at in commits:  # both lists ascend by seq
        while i < len(applied) and applied[i][0] < seq:
            i += 1
        if i == len(applied):
            break
        out.append(max(applied[i][1] - committed_at, 0.0) * 1000)
    return out


def _lag(contract: Contract, bench: Settings, users: list[int], seconds: float) -> dict[str, Any]:
    conn = connect(bench.mysql)
    try:
        if not is_mariadb(conn):
            raise SyncBenchFailed("the lag figure needs MariaDB (@@last_gtid after a commit)")
        start = current_position(conn)

        def write(n: int) -> tuple[str, float]:
            query(conn, "UPDATE users SET bio = %s WHERE id = %s",
                  (f"sync bench lag {n}", users[n % len(users)]))  # fmt: skip
            committed_at = time.time()
            return str(query(conn, "SELECT @@last_gtid")[0][0] or ""), committed_at

        gtid, _ = write(0)  # untimed: its domain is that of every write of this session
        domain = gtid.split("-", 1)[0]

        def seq(gtid: str) -> int:
            found = gtid_seq(gtid, domain)
            if found is None:
                raise SyncBenchFailed(f"no GTID after a commit (@@last_gtid = {gtid!r})")
            return found

        follow = _Follow(contract, bench, start, domain)
        follow.thread.start()
        commits: list[tuple[int, float]] = []
        caught_up, wrote = False, 0.0
        try:
            if follow.wait_for(seq(gtid), CATCH_UP_TIMEOUT):
                count = max(2, round(LAG_RATE * seconds))
                began = time.perf_counter()
                for n in range(1, count + 1):
                    pause = began + n / LAG_RATE - time.perf_counter()
                    if pause > 0:
                        time.sleep(pause)
                    written, committed_at = write(n)
                    commits.append((seq(written), committed_at))
                wrote = time.perf_counter() - began
                caught_up = follow.wait_for(commits[-1][0], CATCH_UP_TIMEOUT)
        finally:
            report = follow.finish()
    finally:
        conn.close()
    if not caught_up:
        what = "the writer's changes" if commits else "the writer's first change"
        raise SyncBenchFailed(f"run_sync did not apply {what} within {CATCH_UP_TIMEOUT:.0f} s")
    lags = lags_ms(commits, follow.applied)
    p = statistics.quantiles(lags, n=100, method="inclusive")
    return {
        "p50_ms": p[49],
        "p99_ms": p[98],
        "changes": len(commits),
        "writer_changes_per_s": round(len(commits) / wrote, 1),
        "batches": report.get("batches", 0),
        "max_ms": round(max(lags), 2),
    }


def run_sync_bench(
    settings: Settings, changes: int = 20_000, lag_seconds: float = 20.0, workers: int = 4
) -> dict[str, Any]:
    """The sync's read ceiling, apply rate and lag (see the module's docstring): the figures
    the targets read (``sync_*``) and the sync line's details (``sync``)."""
    from cutover.contract.load import load_contract

    if changes < TRANSACTION_ROWS:
        raise ValueError(f"the sync bench needs at least {TRANSACTION_ROWS} changes")
    contract = load_contract(PROJECT_ROOT / "contracts" / "ecommerce.json")
    with tempfile.TemporaryDirectory() as tmp:
        bench = sync_settings(settings, Path(tmp, "staging").as_uri())
        try:
            set_up_sample(contract, bench, workers, "sync", SyncBenchFailed)
            reads, writes = user_ids(bench)
            users = sorted(reads + writes)
            conn = connect(bench.mysql)
            try:
                start = current_position(conn)
                log.info("sync: a backlog of %d updates in transactions of %d rows", changes,
                         TRANSACTION_ROWS)  # fmt: skip
                made = _backlog(bench, users, changes)
                end = current_position(conn)
            finally:
                conn.close()
            log.info("sync: read ceiling (BinlogReader, nothing applied)")
            tables = DependencyIndex(contract).tables()
            read, read_seconds = read_ceiling(bench, tables, start, end)
            log.info("sync: apply rate (run_sync once over the same backlog)")
            report = run_sync(contract, bench, once=True, start=start, record=False)
            if not report["rows"] or not report["seconds"]:
                raise SyncBenchFailed(f"run_sync applied nothing of the backlog: {report}")
            log.info("sync: lag at %.0f changes/s for %.0f s", LAG_RATE, lag_seconds)
            lag = _lag(contract, bench, users, lag_seconds)
        finally:
            tear_down(contract, bench)
    if not read:
        raise SyncBenchFailed("BinlogReader read no row change of the backlog")
    read_rate = read / read_seconds
    apply_rate = report["rows"] / report["seconds"]
    return {
        "sync_read_changes_per_s": read_rate,
        "sync_apply_changes_per_s": apply_rate,
        "sync_apply_vs_read": apply_rate / read_rate,
        "sync_lag_p50_ms": lag["p50_ms"],
        "sync_lag_p99_ms": lag["p99_ms"],
        "sync": {
            "changes": made,
            "transaction_rows": TRANSACTION_ROWS,
            "read_changes": read,
            "read_seconds": round(read_seconds, 3),
            "applied_changes": report["rows"],
            "applied_transactions": report["transactions"],
            "apply_seconds": report["seconds"],
            "items_written": report["items_written"],
            "lag_rate": LAG_RATE,
            "lag_seconds": lag_seconds,
            "lag_changes": lag["changes"],
            "lag_writer_changes_per_s": lag["writer_changes_per_s"],
            "lag_batches": lag["batches"],
            "lag_max_ms": lag["max_ms"],
        },
    }


def format_sync(result: dict[str, Any]) -> str:
    """The sync line: the read ceiling, the apply rate and their ratio, the lag p50/p99."""
    d = result["sync"]
    return (
        f"sync: {d['changes']:,} changes in transactions of {d['transaction_rows']}: "
        f"read {result['sync_read_changes_per_s']:,.0f} changes/s (BinlogReader, nothing "
        f"applied), applied {result['sync_apply_changes_per_s']:,.0f} changes/s (run_sync "
        f"once, {d['items_written']:,} items written; {result['sync_apply_vs_read']:.2f} of the "
        f"read); lag at "
        f"{d['lag_rate']:.0f} changes/s for {d['lag_seconds']:.0f} s ({d['lag_changes']:,} "
        f"changes, written at {d['lag_writer_changes_per_s']:,.0f}/s): p50 "
        f"{result['sync_lag_p50_ms']:,.0f} ms, p99 "
        f"{result['sync_lag_p99_ms']:,.0f} ms, max {d['lag_max_ms']:,.0f} ms"
    )
