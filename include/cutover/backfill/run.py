"""A backfill run's steps: plan (``cutover.backfill.plan``), then per partition extract ->
transform -> load, a global duplicate check between transform and load, then catch-up.

Every step records its checkpoint when it finishes and skips itself when its checkpoint
exists (``cutover.backfill.checkpoints``), so a killed or retried run resumes without redoing
(or re-writing to DynamoDB) finished partitions. The CLI and the DAG tasks call these methods.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cutover.backfill.checkpoints import (
    ITEM_SCHEMA,
    Checkpoints,
    RunPaths,
    items_table,
    list_runs,
    new_run_id,
)
from cutover.backfill.plan import (
    check_partitions,
    contract_sha256,
    new_plan,
    partitions_of,
    resumed_rate,
    snapshot_version,
    verify_plan,
)
from cutover.contract.model import Contract, Table
from cutover.contract.views import view_name
from cutover.db import connect, quote_ident
from cutover.errors import TerminalError
from cutover.extract.plan import Partition, partition_predicate
from cutover.extract.staging import Staging
from cutover.extract.stream import read_batches, select_list, stream_to_parquet
from cutover.load.batch_writer import BatchWriter, LoadStats
from cutover.load.dynamo_http import DynamoHttp
from cutover.load.rate_limit import RunRate, WriteCapacity, WriteCost, share_items_per_s
from cutover.phases.guard import phase_epoch, refuse_mysql_to_dynamodb
from cutover.progress import Progress
from cutover.settings import Settings
from cutover.transform.items import ItemBuilder, Rejection

log = logging.getLogger("cutover.backfill")


class BackfillRun:
    """One run of a contract. Without ``run_id`` it is the latest run when that one has not
    finished, else a new run. Reading the plan of an existing run checks that it was planned
    from this contract and these settings (``RunRefused`` otherwise)."""

    def __init__(self, contract: Contract, settings: Settings, run_id: str | None = None):
        self.contract = contract
        self.settings = settings
        self.staging = Staging(settings.staging)
        self.contract_sha256 = contract_sha256(contract)
        self.run_id = run_id or self.latest_unfinished() or new_run_id()
        self.paths = RunPaths(contract.name, self.run_id)
        self.checkpoints = Checkpoints(self.staging, self.paths)
        self._plan_doc: dict[str, Any] | None = None

    # --- run bookkeeping -----------------------------------------------------------------

    @staticmethod
    def latest_finished(contract: Contract, settings: Settings) -> str | None:
        """The run that finished last (by its manifest's finished_at)."""
        finished = [r for r in list_runs(contract, settings) if r.finished_at is not None]
        if not finished:
            return None
        return max(finished, key=lambda r: (r.finished_at, r.planned_at)).run_id

    def latest_unfinished(self) -> str | None:
        """The latest run (by planned_at) when it has not finished; None when there is none
        or it finished (an older unfinished run was superseded by it)."""
        runs = list_runs(self.contract, self.settings)
        if runs and not runs[-1].finished:
            return runs[-1].run_id
        return None

    def exists(self) -> bool:
        return self.checkpoints.has_plan()

    def plan_doc(self, *, verify: bool = True) -> dict[str, Any]:
        """The run's plan.json, read once; ``verify`` refuses a plan made from another
        contract or against another MySQL database or table prefix."""
        if self._plan_doc is None:
            doc = self.checkpoints.read_plan()
            if verify:
                verify_plan(doc, self.contract, self.settings, self.run_id)
            self._plan_doc = doc
        return self._plan_doc

    def table(self, name: str) -> Table:
        return self.contract.table(name)

    # --- plan ----------------------------------------------------------------------------

    def plan(
        self,
        partitions: int | None = None,
        *,
        rate: float | None = None,
        rate_share: float | None = None,
        concurrency: int = 1,
    ) -> list[Partition]:
        """Partition every table and record the binlog position before any extraction:
        every item is stamped with it, and the handoff applies every change made since.

        The plan also records the run's rate (``rate`` items/s, ``rate_share`` of each
        table's write capacity) and ``concurrency``, how many partitions may load at once
        (capped at the number of partitions): every load divides the rate by it (see
        ``cutover.load.rate_limit``). Resuming a planned run keeps its recorded rate unless
        one is given, and records the resumer's concurrency."""
        asked = RunRate(rate, rate_share, concurrency)  # bad values refused before any work
        refuse_mysql_to_dynamodb(self.settings, self.contract.name, "the backfill")
        if self.checkpoints.has_plan():
            doc = self.plan_doc()
            check_partitions(doc, partitions, self.contract.name, self.run_id)
            now = resumed_rate(doc, rate, rate_share, concurrency)
            if now is not None:
                log.info("run %s: rate %s (was %s)", self.run_id, now.to_dict(), doc.get("rate"))
                doc["rate"] = now.to_dict()
                self.checkpoints.write_plan(doc)
            return partitions_of(doc)
        epoch = phase_epoch(self.settings, self.contract.name)
        doc = new_plan(self.contract, self.settings, self.run_id, partitions, epoch, asked)
        self.checkpoints.write_plan(doc)
        self._plan_doc = json.loads(json.dumps(doc, default=str))  # as read back
        log.info("run %s: planned %d partitions", self.run_id, len(doc["partitions"]))
        return partitions_of(doc)

    def run_rate(self) -> RunRate:
        """The run's rate as its plan records it (no limit for a plan that records none)."""
        return RunRate.from_dict(self.plan_doc().get("rate"))

    def partitions(self) -> list[Partition]:
        return partitions_of(self.plan_doc())

    def partition(self, pid: str) -> Partition:
        for p in self.partitions():
            if p.id == pid:
                return p
        raise TerminalError(f"run {self.run_id} has no partition {pid!r}")

    # --- extract -------------------------------------------------------------------------

    def extract(self, pid: str) -> dict[str, Any]:
        if done := self.checkpoints.done("extract", pid):
            return done
        part = self.partition(pid)
        table = self.table(part.table)
        view = view_name(self.contract, table)
        conn = connect(self.settings.mysql)
        try:
            where = partition_predicate(conn, part, table.type == "multi-entity")
            sql = f"SELECT {select_list(conn, view)} FROM {quote_ident(view)} WHERE {where}"
        finally:
            conn.close()
        progress = Progress(f"extract {pid}", None)
        result = stream_to_parquet(
            self.settings.mysql,
            sql,
            self.staging,
            self.paths.of("extract", f"{pid}.parquet"),
            view=view,
            partition=pid,
            progress=progress.update,
        )
        progress.done(result.rows)
        return self.checkpoints.mark(
            "extract",
            pid,
            {
                "partition": part.to_dict(),
                "file": result.file,
                "rows": result.rows,
                "bytes": result.bytes,
                "sha256": result.sha256,
                "seconds": round(result.seconds, 3),
            },
        )

    # --- transform -----------------------------------------------------------------------

    def snapshot_version(self) -> int | None:
        """The version of every item the run loads (see ``plan.snapshot_version``)."""
        return snapshot_version(self.plan_doc())

    def transform(self, pid: str) -> dict[str, Any]:
        if done := self.checkpoints.done("transform", pid):
            return done
        extracted = self.checkpoints.done("extract", pid) or self.extract(pid)
        builder = ItemBuilder(self.contract, self.table(self.partition(pid).table),
                              version=self.snapshot_version())  # fmt: skip
        items_rel = self.checkpoints.items_file(pid)
        self.staging.makedirs(*items_rel.split("/")[:-1])
        rejections: list[Rejection] = []
        count = 0
        progress = Progress(f"transform {pid}", extracted["rows"])
        with pq.ParquetWriter(
            self.staging.path(items_rel),
            ITEM_SCHEMA,
            filesystem=self.staging.fs,
            compression="zstd",
        ) as writer:
            for batch in read_batches(self.staging, extracted["file"]):
                items, rejected = builder.build_all(batch.to_pylist())
                rejections.extend(rejected)
                if items:
                    writer.write_table(items_table(items))
                count += len(items)
                progress.update(count + len(rejections))
        progress.done(count + len(rejections))
        self.checkpoints.write_quarantine(f"{pid}.parquet", rejections)
        return self.checkpoints.mark(
            "transform",
            pid,
            {
                "rows": extracted["rows"],
                "items": count,
                "quarantined": len(rejections),
                "reasons": dict(Counter(r.reason for r in rejections)),
            },
        )

    # --- duplicates ----------------------------------------------------------------------

    def check_duplicates(self) -> dict[str, Any]:
        """Find keys produced by more than one source row, across all partitions of a table.
        All such rows are quarantined: which of them is right is for a person to decide."""
        if done := self.checkpoints.done("duplicates", "all"):
            return done
        rejections: list[Rejection] = []
        for table in self.contract.tables:
            files = [
                self.checkpoints.items_file(p.id)
                for p in self.partitions()
                if p.table == table.table
            ]
            # keys only: memory grows with the key count, not with the item bodies
            keys = pa.concat_tables(
                pq.read_table(
                    self.staging.path(f), columns=["pk", "sk"], filesystem=self.staging.fs
                )
                for f in files
            )
            counts = keys.group_by(["pk", "sk"], use_threads=False).aggregate([("pk", "count")])
            dup = counts.filter(pc.greater(counts["pk_count"], 1))
            del keys, counts
            if dup.num_rows == 0:
                continue
            dup_keys = {(r["pk"], r["sk"]) for r in dup.select(["pk", "sk"]).to_pylist()}
            entity_source = {s.entity_type: s.source_table for s in table.sources}
            dup_pks = pa.array(sorted({pk for pk, _ in dup_keys}), pa.string())
            for f in files:
                for batch in read_batches(self.staging, f, 25_000):
                    candidates = batch.filter(pc.is_in(batch.column("pk"), value_set=dup_pks))
                    for row in candidates.to_pylist():
                        if (row["pk"], row["sk"]) not in dup_keys:
                            continue
                        rejections.append(
                            Rejection(
                                table=table.table,
                                entity_type=row["entity_type"],
                                source_table=entity_source.get(row["entity_type"], ""),
                                source_pk=row["source_pk"],
                                reason="duplicate_key",
                                detail=f"PK {row['pk']!r} SK {row['sk']!r} is produced by "
                                "more than one source row",
                                row=row["body"][:8192],
                            )
                        )
        self.checkpoints.write_quarantine("duplicates.parquet", rejections)
        return self.checkpoints.mark(
            "duplicates",
            "all",
            {"quarantined": len(rejections)},
        )

    # --- load ----------------------------------------------------------------------------

    def _items(self, pid: str, skip: set[tuple[str, str]]) -> Iterator[str]:
        for batch in read_batches(self.staging, self.checkpoints.items_file(pid), 25_000):
            if not skip:
                yield from batch.column("body").to_pylist()
                continue
            for entity, source_pk, body in zip(
                batch.column("entity_type").to_pylist(),
                batch.column("source_pk").to_pylist(),
                batch.column("body").to_pylist(),
                strict=True,
            ):
                if (entity, source_pk) not in skip:
                    yield body

    def capacity_rate(self, table: str, share: float, cost: WriteCost | None = None) -> float:
        """Items/s that use ``share`` of DynamoDB table ``table``'s write capacity and of each
        of its GSIs' (provisioned WCU/s, or the on-demand maximum), an item costing ``cost``
        write units (default: one, in the table only)."""
        from cutover.aws import dynamodb_client

        described = dynamodb_client(self.settings).describe_table(TableName=table)["Table"]
        return share_items_per_s(
            WriteCapacity.of_description(described), cost or WriteCost(), share
        )

    def write_cost(self, table: str, sample: int = 2_000) -> WriteCost:
        """Mean write units of an item of contract table ``table`` and of its GSI entries, from
        up to ``sample`` of its transformed items, taken evenly from its partitions in order:
        the same sample, and so the same figure, for every load of the run."""
        parts = [p for p in self.partitions() if p.table == table]
        per_part = max(1, sample // max(1, len(parts)))
        items: list[dict[str, Any]] = []
        for part in parts:
            rel = self.checkpoints.items_file(part.id)
            if not self.checkpoints.has_items(part.id):
                continue
            batches = read_batches(self.staging, rel, per_part)
            try:
                first = next(batches, None)
            finally:
                batches.close()
            if first is not None:
                items.extend(json.loads(body) for body in first.column("body").to_pylist())
        return WriteCost.of_items(self.table(table), items)

    def partition_rate(self, part: Partition) -> float | None:
        """Items/s the load of ``part`` may write (None: no limit): the run's rate divided
        among the partitions that load at once, as the plan records them. A static split:
        when one partition finishes early the others keep their rate, so the run stays at or
        under its rate."""
        rate = self.run_rate()
        if rate.share is None:
            return rate.per_partition()
        table_rate = self.capacity_rate(
            self.settings.table_prefix + part.table, rate.share, self.write_cost(part.table)
        )
        same_table = sum(1 for p in self.partitions() if p.table == part.table)
        return rate.per_partition(table_rate, same_table)

    def load(self, pid: str, workers: int = 4) -> dict[str, Any]:
        """Load one partition at its share of the run's rate (``partition_rate``), which
        every load reads from the plan, so loads in other processes or on other Airflow
        workers agree on it."""
        if done := self.checkpoints.done("load", pid):
            return done
        if not self.checkpoints.done("duplicates", "all"):
            raise TerminalError(
                f"partition {pid} cannot load before the duplicate check of run {self.run_id}"
            )
        # a run planned in phase 3 may reach its loads after the move to phase 4
        refuse_mysql_to_dynamodb(self.settings, self.contract.name, "the backfill")
        part = self.partition(pid)
        transformed = self.checkpoints.done("transform", pid) or self.transform(pid)
        skip = self.checkpoints.duplicate_source_pks()
        table_name = self.settings.table_prefix + part.table
        rate = self.partition_rate(part)
        if rate is not None:
            log.info("run %s: load %s at %.1f items/s", self.run_id, pid, rate)
        progress = Progress(f"load {pid}", transformed["items"], unit="items")
        http = DynamoHttp(self.settings)
        try:
            writer = BatchWriter(
                http,
                workers=workers,
                rate=rate,
                progress=lambda s: progress.update(s.items),
                progress_every=2.0,
            )
            stats = writer.write(table_name, self._items(pid, skip))
        finally:
            http.close()
        progress.done(stats.items)
        limit = None if rate is None else round(rate, 3)
        return self.checkpoints.mark("load", pid, {"table": table_name, "rate_limit": limit,
                                        **stats.to_dict()})  # fmt: skip

    # --- whole run -----------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """Totals of the run so far: rows, items per entity, quarantine by reason, metrics."""
        per_entity: Counter[str] = Counter()
        reasons: Counter[str] = Counter()
        stats = LoadStats()
        extracted = 0
        for part in self.partitions():
            if ex := self.checkpoints.done("extract", part.id):
                extracted += ex["rows"]
            if tr := self.checkpoints.done("transform", part.id):
                reasons.update(tr["reasons"])
            if ld := self.checkpoints.done("load", part.id):
                per_entity[f"{part.table}.{part.entity_type}"] += ld["items"]
                stats.merge(_stats_from(ld))
        dups = self.checkpoints.done("duplicates", "all")
        if dups:
            reasons["duplicate_key"] += dups["quarantined"]
        caught = self.checkpoints.done("handoff", "all")
        if caught:  # rows the handoff could not turn into items count like the backfill's
            reasons.update(caught.get("reasons") or {})
        quarantined = sum(reasons.values())
        gate = self.contract.cutover.gate
        return {
            "run_id": self.run_id,
            "contract": self.contract.name,
            "rows_extracted": extracted,
            "items_loaded": sum(per_entity.values()),
            "items_per_entity": dict(sorted(per_entity.items())),
            "quarantined": quarantined,
            "quarantine_reasons": dict(sorted(reasons.items())),
            "quarantine_files": self.checkpoints.quarantine_uri(),
            "gate": {
                "max_quarantined_rows": gate.max_quarantined_rows,
                "passed": quarantined <= gate.max_quarantined_rows,
            },
            "load": stats.to_dict(),
        }

    def finish(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        manifest = {
            **self.summary(),
            **(extra or {}),
            "finished_at": dt.datetime.now(dt.UTC).isoformat(),
        }
        plan_doc = self.plan_doc()
        manifest["contract_sha256"] = plan_doc.get("contract_sha256")
        manifest["binlog_position"] = plan_doc.get("binlog_position")
        manifest["planned_at"] = plan_doc.get("planned_at")
        manifest["partitions"] = [
            {
                "id": p.id,
                "extract": self.checkpoints.done("extract", p.id),
                "transform": self.checkpoints.done("transform", p.id),
                "load": self.checkpoints.done("load", p.id),
            }
            for p in self.partitions()
        ]
        self.checkpoints.write_manifest(manifest)
        return manifest


def _stats_from(record: dict[str, Any]) -> LoadStats:
    return LoadStats(
        items=record["items"],
        requests=record["requests"],
        retried_items=record["retried_items"],
        throttles=record["throttles"],
        seconds=record["seconds"],
        cpu_seconds=record["cpu_seconds"],
    )
