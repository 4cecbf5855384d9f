"""Where a backfill run keeps what it did, in its staging folder: its plan, one checkpoint
file per finished step of a partition (``done``/``mark``), its items and quarantine as
Parquet, its manifest once it finished; and the list of a contract's runs.

A step that finds its checkpoint skips itself, so a killed or retried run resumes without
redoing (or re-writing to DynamoDB) finished partitions. The backfill's steps and the
catch-up read and write checkpoints through ``Checkpoints``, never the files."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from cutover.contract.model import Contract
from cutover.extract.staging import Staging
from cutover.settings import Settings
from cutover.transform.items import Item, Rejection

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
AIRFLOW_RUN_PREFIX = "af-"  # run ids the backfill DAG derives from its Airflow run id


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


def write_parquet(staging: Staging, relpath: str, table: pa.Table) -> None:
    staging.makedirs(*relpath.split("/")[:-1])
    pq.write_table(table, staging.path(relpath), filesystem=staging.fs, compression="zstd")


def items_table(items: list[Item]) -> pa.Table:
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


def rejections_table(rejections: list[Rejection]) -> pa.Table:
    rows = [r.to_dict() for r in rejections]
    return pa.Table.from_pylist(rows, schema=QUARANTINE_SCHEMA)


class Checkpoints:
    """One run's records in ``staging`` (see the module's docstring)."""

    def __init__(self, staging: Staging, paths: RunPaths) -> None:
        self.staging = staging
        self.paths = paths

    # --- steps ---------------------------------------------------------------------------

    def done(self, step: str, pid: str) -> dict[str, Any] | None:
        """The record of ``step`` of partition ``pid`` (or ``all``), None when not done."""
        rel = self.paths.of("checkpoints", step, f"{pid}.json")
        return self.staging.read_json(rel) if self.staging.exists(rel) else None

    def mark(self, step: str, pid: str, record: dict[str, Any]) -> dict[str, Any]:
        """Record that ``step`` of partition ``pid`` (or ``all``) is done, with its figures;
        the record as kept (with ``finished_at``)."""
        record = {**record, "finished_at": dt.datetime.now(dt.UTC).isoformat()}
        self.staging.write_json(record, self.paths.of("checkpoints", step, f"{pid}.json"))
        return record

    # --- plan and manifest ---------------------------------------------------------------

    def has_plan(self) -> bool:
        return self.staging.exists(self.paths.of("plan.json"))

    def read_plan(self) -> dict[str, Any]:
        return self.staging.read_json(self.paths.of("plan.json"))

    def write_plan(self, doc: dict[str, Any]) -> None:
        self.staging.write_json(doc, self.paths.of("plan.json"))

    def write_manifest(self, doc: dict[str, Any]) -> None:
        self.staging.write_json(doc, self.paths.of("manifest.json"))

    # --- items and quarantine ------------------------------------------------------------

    def items_file(self, pid: str) -> str:
        """The run-relative path of partition ``pid``'s transformed items."""
        return self.paths.of("items", f"{pid}.parquet")

    def has_items(self, pid: str) -> bool:
        return self.staging.exists(self.items_file(pid))

    def quarantine_uri(self) -> str:
        return self.staging.uri(self.paths.of("quarantine"))

    def write_quarantine(self, name: str, rejections: list[Rejection]) -> str:
        """Keep ``rejections`` in the run's quarantine as ``name``; the file's URI."""
        rel = self.paths.of("quarantine", name)
        write_parquet(self.staging, rel, rejections_table(rejections))
        return self.staging.uri(rel)

    def duplicate_source_pks(self) -> set[tuple[str, str]]:
        """(entity type, source pk) of every row the duplicate check quarantined."""
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
