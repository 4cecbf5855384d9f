"""A backfill run: plan, then per partition extract -> transform -> load, a global duplicate
check between transform and load, then catch-up.

Every step records a checkpoint file in the run's staging folder when it finishes, and skips
itself when its checkpoint exists, so a killed or retried run resumes without redoing (or
re-writing to DynamoDB) finished partitions. The CLI and the DAG tasks call these methods.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cutover.binlog.position import Position, current_position
from cutover.contract.model import Contract, Table
from cutover.contract.views import view_name
from cutover.db import connect, quote_ident
from cutover.errors import ServiceError, TerminalError
from cutover.extract.plan import Partition, partition_predicate, plan
from cutover.extract.staging import Staging
from cutover.extract.stream import read_batches, select_list, stream_to_parquet
from cutover.load.batch_writer import BatchWriter, LoadStats
from cutover.load.dynamo_http import DynamoHttp
from cutover.load.rate_limit import RunRate, WriteCapacity, WriteCost, share_items_per_s
from cutover.phases.guard import phase_epoch, refuse_mysql_to_dynamodb
from cutover.progress import Progress
from cutover.settings import Settings
from cutover.transform.items import Item, ItemBuilder, Rejection, item_version

log = logging.getLogger("cutover.backfill")

ITEM_SCHEMA = pa.schema(
    [
        ("pk", pa.string()),
        ("sk", pa.string()),
        ("body", pa.large_string()),
        ("entity_type", pa.string()),
        ("source_pk", pa.string()),
        ("version", pa.int64()),
    ]
)
QUARANTINE_SCHEMA = pa.schema(
    [
        (name, pa.string())
        for name in ("table", "entity_type", "source_table", "source_pk", "reason", "detail", "row")
    ]
)


@dataclass(frozen=True)
class RunPaths:
    contract: str
    run_id: str

    @property
    def base(self) -> str:
        return f"{self.contract}/runs/{self.run_id}"

    def of(self, *parts: str) -> str:
        return "/".join([self.base, *parts])


def new_run_id() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


AIRFLOW_RUN_PREFIX = "af-"  # run ids the backfill DAG derives from its Airflow run id


class RunRefused(TerminalError):
    """A backfill run cannot be resumed as asked (its contract or settings changed, it does
    not exist, it finished): the message names the run and says what to do instead."""


def contract_sha256(contract: Contract) -> str:
    """sha256 of the contract's canonical JSON (keys sorted): equal contracts, equal hash,
    whatever the order or layout of their files."""
    canonical = json.dumps(
        contract.model_dump(mode="json", by_alias=True), sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _short(digest: str | None) -> str:
    return (digest or "none")[:12]


def _without_userinfo(url: str | None) -> str | None:
    """``url`` without any user:password@ part (a plan records where, never secrets)."""
    if not url or "@" not in url:
        return url
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1]))


def _when(text: Any) -> dt.datetime | None:
    """An ISO time of a plan or manifest as an aware UTC datetime (None when absent)."""
    if not text:
        return None
    try:
        when = dt.datetime.fromisoformat(str(text))
    except ValueError:
        return None
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)


@dataclass(frozen=True)
class RunInfo:
    """One planned run of a contract, as its plan.json (and manifest.json) record it."""

    run_id: str
    planned_at: dt.datetime
    finished_at: dt.datetime | None
    contract_sha256: str | None

    @property
    def finished(self) -> bool:
        return self.finished_at is not None

    @property
    def from_airflow(self) -> bool:
        return self.run_id.startswith(AIRFLOW_RUN_PREFIX)


def list_runs(contract: Contract, settings: Settings) -> list[RunInfo]:
    """The planned runs of ``contract`` in the staging area, oldest first by the time they
    were planned (``planned_at``), never by name: an Airflow run id (``af-...``) and a CLI
    timestamp id do not sort by time as text. A folder without a plan is not a run yet."""
    staging = Staging(settings.staging)
    runs: list[RunInfo] = []
    for run_id in staging.listdir(contract.name, "runs"):
        base = (contract.name, "runs", run_id)
        if not staging.exists(*base, "plan.json"):
            continue
        plan_doc = staging.read_json(*base, "plan.json")
        planned_at = _when(plan_doc.get("planned_at"))
        if planned_at is None:
            continue
        finished_at = None
        if staging.exists(*base, "manifest.json"):
            manifest = staging.read_json(*base, "manifest.json")
            finished_at = _when(manifest.get("finished_at")) or planned_at
        runs.append(RunInfo(run_id, planned_at, finished_at, plan_doc.get("contract_sha256")))
    return sorted(runs, key=lambda r: (r.planned_at, r.run_id))


def _write_parquet(staging: Staging, relpath: str, table: pa.Table) -> None:
    staging.makedirs(*relpath.split("/")[:-1])
    pq.write_table(table, staging.path(relpath), filesystem=staging.fs, compression="zstd")


def _items_table(items: list[Item]) -> pa.Table:
    return pa.table(
        {
            "pk": [i.pk for i in items],
            "sk": [i.sk for i in items],
            "body": [i.body for i in items],
            "entity_type": [i.entity_type for i in items],
            "source_pk": [i.source_pk for i in items],
            "version": [i.version for i in items],
        },
        schema=ITEM_SCHEMA,
    )


def _rejections_table(rejections: list[Rejection]) -> pa.Table:
    rows = [r.to_dict() for r in rejections]
    return pa.Table.from_pylist(rows, schema=QUARANTINE_SCHEMA)


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
        return self.staging.exists(self.paths.of("plan.json"))

    def plan_doc(self, *, verify: bool = True) -> dict[str, Any]:
        """The run's plan.json, read once; ``verify`` refuses a plan made from another
        contract or against another MySQL database or table prefix."""
        if self._plan_doc is None:
            doc = self.staging.read_json(self.paths.of("plan.json"))
            if verify:
                self._verify(doc)
            self._plan_doc = doc
        return self._plan_doc

    def _verify(self, doc: dict[str, Any]) -> None:
        name, run_id = self.contract.name, self.run_id
        recorded = doc.get("contract_sha256")
        if recorded is None:
            raise RunRefused(
                f"run {run_id} of contract {name} was planned by an earlier cutover that did "
                "not record the contract's hash, so resuming it cannot be checked against this "
                "contract; start a new run with --new"
            )
        if recorded != self.contract_sha256:
            raise RunRefused(
                f"run {run_id} of contract {name} was planned from another version of the "
                f"contract (sha256 {_short(recorded)}, now {_short(self.contract_sha256)}): "
                "resuming it would mix items of both; start a new run with --new"
            )
        planned = doc.get("settings") or {}
        was = ((planned.get("mysql") or {}).get("database"), planned.get("table_prefix"))
        now = (self.settings.mysql.database, self.settings.table_prefix)
        if was != now:
            raise RunRefused(
                f"run {run_id} of contract {name} was planned against MySQL database "
                f"{was[0]!r} and table prefix {was[1]!r}, these settings name {now[0]!r} and "
                f"{now[1]!r}: resume it with the settings it was planned with, or start a new "
                "run with --new"
            )

    def _check_partitions(self, doc: dict[str, Any], partitions: int | None) -> None:
        """``--partitions`` cannot re-plan a run: a different count than planned is refused
        (none given resumes with the plan's)."""
        if partitions is None:
            return
        planned = (doc.get("settings") or {}).get("partitions")
        if partitions != planned:
            how = (
                f"--partitions {planned}"
                if planned is not None
                else "the contract's partitioning (no --partitions)"
            )
            raise RunRefused(
                f"run {self.run_id} of contract {self.contract.name} was planned with {how} "
                f"into {len(doc['partitions'])} partitions, not --partitions {partitions}: "
                "resume it without --partitions, or start a new run with --new to plan it "
                "again"
            )

    def _planned_settings(self, partitions: int | None) -> dict[str, Any]:
        """What the plan depends on, recorded with it; never a password."""
        m = self.settings.mysql
        return {
            "partitions": partitions,
            "mysql": {"host": m.host, "port": m.port, "user": m.user, "database": m.database},
            "table_prefix": self.settings.table_prefix,
            "staging": _without_userinfo(self.settings.staging),
            "dynamodb_endpoint": _without_userinfo(self.settings.dynamodb_endpoint),
            "region": self.settings.region,
        }

    def _done(self, step: str, pid: str) -> dict[str, Any] | None:
        rel = self.paths.of("checkpoints", step, f"{pid}.json")
        return self.staging.read_json(rel) if self.staging.exists(rel) else None

    def _mark(self, step: str, pid: str, record: dict[str, Any]) -> dict[str, Any]:
        record = {**record, "finished_at": dt.datetime.now(dt.UTC).isoformat()}
        self.staging.write_json(record, self.paths.of("checkpoints", step, f"{pid}.json"))
        return record

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
        RunRate(rate, rate_share, concurrency)  # bad values refused before any work
        refuse_mysql_to_dynamodb(self.settings, self.contract.name, "the backfill")
        rel = self.paths.of("plan.json")
        if self.staging.exists(rel):
            doc = self.plan_doc()
            self._check_partitions(doc, partitions)
            self._record_rate(doc, rate, rate_share, concurrency)
            return [Partition.from_dict(p) for p in doc["partitions"]]
        epoch = phase_epoch(self.settings, self.contract.name)
        conn = connect(self.settings.mysql)
        try:
            position = snapshot_position(conn, self.contract.name)
            planned = plan(conn, self.contract, partitions)
        finally:
            conn.close()
        doc = {
            "run_id": self.run_id,
            "contract": self.contract.name,
            "contract_sha256": self.contract_sha256,
            "planned_at": dt.datetime.now(dt.UTC).isoformat(),
            "settings": self._planned_settings(partitions),
            "binlog_position": position,
            "phase_epoch": epoch,
            "partitions": [p.to_dict() for p in planned],
            "rate": RunRate(rate, rate_share, max(1, min(concurrency, len(planned)))).to_dict(),
        }
        self.staging.write_json(doc, rel)
        self._plan_doc = json.loads(json.dumps(doc, default=str))  # as read back
        log.info("run %s: planned %d partitions", self.run_id, len(planned))
        return planned

    def _record_rate(
        self,
        doc: dict[str, Any],
        rate: float | None,
        rate_share: float | None,
        concurrency: int,
    ) -> None:
        """On resume: the rate given replaces the recorded one (none given keeps it), and the
        concurrency is the resumer's (the CLI loads one partition at a time, the DAG up to
        its load concurrency); plan.json is rewritten when either changed."""
        was = RunRate.from_dict(doc.get("rate"))
        now = RunRate(
            was.items_per_s if rate is None else rate,
            was.share if rate_share is None else rate_share,
            max(1, min(concurrency, len(doc["partitions"]))),
        )
        if now == was and "rate" in doc:
            return
        doc["rate"] = now.to_dict()
        self.staging.write_json(doc, self.paths.of("plan.json"))
        log.info("run %s: rate %s (was %s)", self.run_id, now.to_dict(), was.to_dict())

    def run_rate(self) -> RunRate:
        """The run's rate as its plan records it (no limit for a plan that records none)."""
        return RunRate.from_dict(self.plan_doc().get("rate"))

    def partitions(self) -> list[Partition]:
        return [Partition.from_dict(p) for p in self.plan_doc()["partitions"]]

    def partition(self, pid: str) -> Partition:
        for p in self.partitions():
            if p.id == pid:
                return p
        raise TerminalError(f"run {self.run_id} has no partition {pid!r}")

    # --- extract -------------------------------------------------------------------------

    def extract(self, pid: str) -> dict[str, Any]:
        if done := self._done("extract", pid):
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
        return self._mark(
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
        """The ordinal of the binlog position the run's snapshot starts from (None without a
        binlog): the version of every item the run loads."""
        doc = self.plan_doc()
        position = doc.get("binlog_position")
        if position is None:
            return None
        return item_version(int(doc.get("phase_epoch") or 0), Position.from_dict(position).ordinal)

    def mark(self, step: str, pid: str, record: dict[str, Any]) -> dict[str, Any]:
        """Record that ``step`` of partition ``pid`` (or ``all``) is done, with its figures."""
        return self._mark(step, pid, record)

    def done(self, step: str, pid: str) -> dict[str, Any] | None:
        return self._done(step, pid)

    def write_quarantine(self, name: str, rejections: list[Rejection]) -> str:
        """Keep ``rejections`` in the run's quarantine as ``name``; the file's URI."""
        rel = self.paths.of("quarantine", name)
        _write_parquet(self.staging, rel, _rejections_table(rejections))
        return self.staging.uri(rel)

    def transform(self, pid: str) -> dict[str, Any]:
        if done := self._done("transform", pid):
            return done
        extracted = self._done("extract", pid) or self.extract(pid)
        builder = ItemBuilder(self.contract, self.table(self.partition(pid).table),
                              version=self.snapshot_version())  # fmt: skip
        items_rel = self.paths.of("items", f"{pid}.parquet")
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
                    writer.write_table(_items_table(items))
                count += len(items)
                progress.update(count + len(rejections))
        progress.done(count + len(rejections))
        _write_parquet(
            self.staging,
            self.paths.of("quarantine", f"{pid}.parquet"),
            _rejections_table(rejections),
        )
        return self._mark(
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
        if done := self._done("duplicates", "all"):
            return done
        rejections: list[Rejection] = []
        for table in self.contract.tables:
            files = [
                self.paths.of("items", f"{p.id}.parquet")
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
        _write_parquet(
            self.staging,
            self.paths.of("quarantine", "duplicates.parquet"),
            _rejections_table(rejections),
        )
        return self._mark(
            "duplicates",
            "all",
            {"quarantined": len(rejections)},
        )

    def _duplicate_source_pks(self) -> set[tuple[str, str]]:
        table = pq.read_table(
            self.staging.path(self.paths.of("quarantine", "duplicates.parquet")),
            columns=["table", "entity_type", "source_pk"],
            filesystem=self.staging.fs,
        )
        return {(r["entity_type"], r["source_pk"]) for r in table.to_pylist()}

    def quarantined_keys(self, *, exclude: str | None = None) -> set[tuple[str, str, str]]:
        """(table, entity type, source pk) of every row in the run's quarantine files (but
        ``exclude``): a row quarantined once is not quarantined, nor counted, again."""
        folder = self.paths.of("quarantine")
        keys: set[tuple[str, str, str]] = set()
        for name in self.staging.listdir(folder):
            if name == exclude or not name.endswith(".parquet"):
                continue
            table = pq.read_table(
                self.staging.path(folder, name),
                columns=["table", "entity_type", "source_pk"],
                filesystem=self.staging.fs,
            )
            keys.update(
                zip(
                    table.column("table").to_pylist(),
                    table.column("entity_type").to_pylist(),
                    table.column("source_pk").to_pylist(),
                    strict=True,
                )
            )
        return keys

    # --- load ----------------------------------------------------------------------------

    def _items(self, pid: str, skip: set[tuple[str, str]]) -> Iterator[str]:
        for batch in read_batches(self.staging, self.paths.of("items", f"{pid}.parquet"), 25_000):
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
            rel = self.paths.of("items", f"{part.id}.parquet")
            if not self.staging.exists(rel):
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
        if done := self._done("load", pid):
            return done
        if not self._done("duplicates", "all"):
            raise TerminalError(
                f"partition {pid} cannot load before the duplicate check of run {self.run_id}"
            )
        # a run planned in phase 3 may reach its loads after the move to phase 4
        refuse_mysql_to_dynamodb(self.settings, self.contract.name, "the backfill")
        part = self.partition(pid)
        transformed = self._done("transform", pid) or self.transform(pid)
        skip = self._duplicate_source_pks()
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
        return self._mark("load", pid, {"table": table_name, "rate_limit": limit,
                                        **stats.to_dict()})  # fmt: skip

    # --- whole run -----------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """Totals of the run so far: rows, items per entity, quarantine by reason, metrics."""
        per_entity: Counter[str] = Counter()
        reasons: Counter[str] = Counter()
        stats = LoadStats()
        extracted = 0
        for part in self.partitions():
            if ex := self._done("extract", part.id):
                extracted += ex["rows"]
            if tr := self._done("transform", part.id):
                reasons.update(tr["reasons"])
            if ld := self._done("load", part.id):
                per_entity[f"{part.table}.{part.entity_type}"] += ld["items"]
                stats.merge(_stats_from(ld))
        dups = self._done("duplicates", "all")
        if dups:
            reasons["duplicate_key"] += dups["quarantined"]
        caught = self._done("handoff", "all")
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
            "quarantine_files": self.staging.uri(self.paths.of("quarantine")),
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
                "extract": self._done("extract", p.id),
                "transform": self._done("transform", p.id),
                "load": self._done("load", p.id),
            }
            for p in self.partitions()
        ]
        self.staging.write_json(manifest, self.paths.of("manifest.json"))
        return manifest


def snapshot_position(conn: Any, contract: str) -> dict[str, Any] | None:
    """The binlog position now, as the plan records it; None (with a warning) when the
    server has no binlog: then nothing follows the changes made during the backfill."""
    try:
        return current_position(conn).to_dict()
    except ServiceError as exc:
        log.warning(
            "contract %s: %s; changes made during this backfill will not be applied "
            "(`cutover sync --check` lists what the sync needs)",
            contract,
            exc,
        )
        return None


def _stats_from(record: dict[str, Any]) -> LoadStats:
    return LoadStats(
        items=record["items"],
        requests=record["requests"],
        retried_items=record["retried_items"],
        throttles=record["throttles"],
        seconds=record["seconds"],
        cpu_seconds=record["cpu_seconds"],
    )
