"""Catch-up: re-load the rows whose version moved past the run's high-water mark, so writes
made while the backfill ran are not lost; each put is version-guarded.

Changed rows are streamed from the views in chunks of ``batch_rows``: a chunk is built into
items, its rejects are appended to the run's quarantine (``quarantine/catch_up.parquet``,
the format of the transform's quarantine files) and its items are put from ``workers``
threads before the next chunk is read, so memory holds one chunk whatever the number of
changed rows."""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow.parquet as pq

from cutover.backfill.run import QUARANTINE_SCHEMA, BackfillRun, _rejections_table
from cutover.contract.views import view_name
from cutover.db import connect, literal, quote_ident
from cutover.errors import TerminalError
from cutover.extract.stream import arrow_stream, select_list
from cutover.load.dynamo_http import DynamoHttp
from cutover.load.guarded_put import guarded_put
from cutover.progress import Progress
from cutover.routing.replay import converge_since
from cutover.settings import MySQLSettings
from cutover.transform.items import Item, ItemBuilder, Rejection, version_number

log = logging.getLogger("cutover.catch_up")
NO_VERSION = (
    "unavailable: no version column (rows changed during the backfill are not caught up; "
    "set cutover.version_column, or let reconcile repair them)"
)
BATCH_ROWS = 5_000  # changed rows held at once
RUN_QUARANTINE = "catch_up.parquet"  # the run's own catch-up; nightly ones add a timestamp


def changed_rows(
    mysql: MySQLSettings, sql: str, view: str, batch_rows: int = BATCH_ROWS
) -> Iterator[list[dict[str, Any]]]:
    """The rows of ``sql`` as lists of at most ``batch_rows`` rows, read as they are needed."""
    for batch in arrow_stream(mysql, sql, batch_rows, view=view):
        for offset in range(0, batch.num_rows, batch_rows):
            chunk = batch.slice(offset, batch_rows).to_pylist()
            if chunk:
                yield chunk


def catch_up(
    run: BackfillRun,
    since_last: bool = False,
    *,
    batch_rows: int = BATCH_ROWS,
    workers: int = 4,
) -> dict[str, Any]:
    """Re-reads changed rows from the views and puts them where no newer item exists.
    Records and returns counts and the new high-water marks (for the next catch-up).
    ``since_last`` starts from the marks of the run's previous catch-up (nightly runs).

    Rows that cannot become items are quarantined (once: a row already in the run's
    quarantine is not added nor counted again) and counted in the checkpoint's ``reasons``,
    which the run's manifest adds to the backfill's for the gate."""
    if batch_rows < 1 or workers < 1:
        raise TerminalError(
            f"catch-up needs batch_rows and workers of at least 1, not {batch_rows} and {workers}"
        )
    # a nightly catch-up of a finished run goes on when the contract changed since (the
    # reconcile after it re-derives every item); a run's own catch-up refuses, as its steps do
    plan_doc = run.plan_doc(verify=not since_last)
    if plan_doc.get("contract_sha256") != run.contract_sha256:
        log.warning(
            "catch-up of run %s: the contract changed since the run was planned; changed rows "
            "are written as the current contract maps them",
            run.run_id,
        )
    marks: dict[str, Any] = plan_doc["high_water_marks"]
    previous = run._done("catch_up", "all") if since_last else None
    if previous:
        marks = {**marks, **{k: v for k, v in previous["high_water_marks"].items() if v}}
    skip = run._duplicate_source_pks()
    if since_last:
        name = f"catch_up-{dt.datetime.now(dt.UTC).strftime('%Y%m%dT%H%M%S%fZ')}.parquet"
    else:
        name = RUN_QUARANTINE
    known = run.quarantined_keys(exclude=name)
    quarantine_rel = run.paths.of("quarantine", name)

    new_marks: dict[str, Any] = {}
    unavailable: dict[str, str] = {}
    http = DynamoHttp(run.settings)
    conn = connect(run.settings.mysql)
    pool = ThreadPoolExecutor(workers, thread_name_prefix="cutover-catch-up")
    sink = _Sink(run, quarantine_rel, http, pool, skip, known)
    try:
        for table in run.contract.tables:
            view = view_name(run.contract, table)
            builder = ItemBuilder(run.contract, table)
            columns = select_list(conn, view)
            table_name = run.settings.table_prefix + table.table
            for source in table.sources:
                key = f"{table.table}.{source.entity_type}"
                if not source.options.version_column:
                    unavailable[key] = NO_VERSION
                    continue
                clauses = ["`__version` IS NOT NULL"]
                if marks.get(key) is not None:
                    clauses.append(f"`__version` >= {literal(conn, marks[key])}")
                if table.type == "multi-entity":
                    clauses.append(f"`__entity` = {literal(conn, source.entity_type)}")
                where = " AND ".join(clauses)
                sql = f"SELECT {columns} FROM {quote_ident(view)} WHERE {where}"
                progress = Progress(f"catch-up {key}", None)
                best, done = marks.get(key), 0
                for rows in changed_rows(run.settings.mysql, sql, view, batch_rows):
                    best = sink.chunk(rows, builder, table_name, best)
                    done += len(rows)
                    progress.update(done)
                progress.done(done)
                new_marks[key] = best
        # the run's own catch-up always leaves its file (empty when nothing was quarantined),
        # as the transform does; a nightly one only when it quarantined rows
        sink.close(keep_empty=not since_last)
    finally:
        pool.shutdown(cancel_futures=True)
        sink.close()
        conn.close()
        http.close()
    # changes the application made through the routing layer while this run copied its
    # snapshot (dual writes) are applied again over it: see cutover.routing.replay
    converged = converge_since(run.contract, run.settings, plan_doc["planned_at"])
    record = {
        "converged": converged,
        "rows": sink.rows,
        **sink.counts,
        "quarantined": sum(sink.reasons.values()),
        "reasons": dict(sorted(sink.reasons.items())),
        "quarantine_file": run.staging.uri(quarantine_rel) if sink.wrote else None,
        "high_water_marks": new_marks,
        "unavailable": unavailable,
    }
    return run._mark("catch_up", "all", record)


class _Sink:
    """Where the chunks of changed rows go: items to guarded puts from the pool's threads,
    rejects to the quarantine file; counts what became of each row."""

    def __init__(
        self,
        run: BackfillRun,
        quarantine_rel: str,
        http: DynamoHttp,
        pool: ThreadPoolExecutor,
        skip: set[tuple[str, str]],
        known: set[tuple[str, str, str]],
    ) -> None:
        self.run = run
        self.quarantine_rel = quarantine_rel
        self.http = http
        self.pool = pool
        self.writer: pq.ParquetWriter | None = None
        self.wrote = False
        self.skip = skip
        self.known = known
        self.rows = 0
        self.counts: Counter[str] = Counter({"written": 0, "kept_newer": 0})
        self.reasons: Counter[str] = Counter()

    def chunk(
        self, rows: list[dict[str, Any]], builder: ItemBuilder, table_name: str, best: Any
    ) -> Any:
        """Build, quarantine and put one chunk of changed rows; returns the highest version
        seen so far, once every put of the chunk is done."""
        items: list[Item] = []
        rejected: list[Rejection] = []
        for row in rows:
            version = row.get("__version")
            if best is None or (version_number(version) or 0) > (version_number(best) or 0):
                best = version
            result = builder.build(row)
            if isinstance(result, Rejection):
                ident = (result.table, result.entity_type, result.source_pk)
                if ident in self.known:
                    self.counts["already_quarantined"] += 1
                else:
                    self.known.add(ident)
                    rejected.append(result)
            elif (result.entity_type, result.source_pk) in self.skip:
                self.counts["skipped_duplicates"] += 1  # the run quarantined its key
            else:
                items.append(result)
        if rejected:
            self._open().write_table(_rejections_table(rejected))
            self.reasons.update(r.reason for r in rejected)

        def put(item: Item) -> str:
            return guarded_put(self.http, table_name, item.body, item.version or 0)

        for outcome in self.pool.map(put, items):
            self.counts[outcome] += 1
        self.rows += len(rows)
        return best

    def _open(self) -> pq.ParquetWriter:
        if self.writer is None:
            staging = self.run.staging
            staging.makedirs(*self.quarantine_rel.split("/")[:-1])
            self.writer = pq.ParquetWriter(
                staging.path(self.quarantine_rel),
                QUARANTINE_SCHEMA,
                filesystem=staging.fs,
                compression="zstd",
            )
            self.wrote = True
        return self.writer

    def close(self, keep_empty: bool = False) -> None:
        if keep_empty:
            self._open()
        if self.writer is not None:
            self.writer.close()
            self.writer = None
