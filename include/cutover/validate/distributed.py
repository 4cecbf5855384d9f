"""A validation spread over tasks by hash bucket of the item key, as the validate DAG runs it:

1. ``write_sides`` (a task per table): MySQL's side derived and DynamoDB's side read (Scan or
   export) once, the counts per entity, the keys two source rows make (excluded, as the
   backfill quarantines them) and the independent checks taken, then both sides written to
   the storage URL as Parquet per bucket (``cutover.validate.buckets``);
2. ``compare_work`` (a task per bucket, or per few buckets where the tables have more than
   Airflow maps at once): the bucket's signatures, and its items only when they differ:
   memory bounded by the bucket, not the table;
3. ``assemble`` (one task): the buckets' results per table into the report ``validate``
   writes, judged by the same GX suites.

The work is the same as ``cutover validate``'s in one process; only where it runs differs."""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cutover.contract.model import Contract
from cutover.db import connect
from cutover.errors import ConfigError
from cutover.extract.staging import Staging
from cutover.settings import Settings
from cutover.validate.buckets import BucketWriter, choose_buckets, compare_bucket
from cutover.validate.canonical import EntityClassifier
from cutover.validate.independent import independent_checks
from cutover.validate.parity import KEEP_DIFFERING, TableParity
from cutover.validate.sides import read_sides
from cutover.validate.suites import GxWorkspace, ensure_suites, suite_path

ITEMS_PER_BUCKET = 200_000


def start(settings: Settings) -> dict[str, Any]:
    """Step 0: the validation's name (its folder and export tag), when it started and where
    MySQL's binlog stood then (where changed-key parity takes over from)."""
    from cutover.validate.run import binlog_position

    started = dt.datetime.now(dt.UTC)
    return {"run": started.strftime("%Y%m%dT%H%M%S%fZ"), "started_at": started.isoformat(),
            "binlog_position": binlog_position(settings)}  # fmt: skip


def items_per_bucket() -> int:
    """``CUTOVER_VALIDATE_BUCKET_ITEMS`` (default 200,000): the items a bucket task compares,
    about; a table gets as many buckets as that makes (at most 1,024)."""
    raw = os.environ.get("CUTOVER_VALIDATE_BUCKET_ITEMS", "")
    if not raw:
        return ITEMS_PER_BUCKET
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(
            f"CUTOVER_VALIDATE_BUCKET_ITEMS={raw!r} is not a whole number of items above 0"
        )
    return int(raw)


def run_base(contract: str, run: str, table: str) -> str:
    """Where one table's buckets of one validation are kept under the storage URL."""
    return f"validate/{contract}/{run}/{table}"


def write_sides(contract: Contract, settings: Settings, table_name: str, run: str,
                read: str = "auto") -> dict[str, Any]:  # fmt: skip
    """Step 1 for one table (see the module's docstring); what the other steps need."""
    table = contract.table(table_name)
    staging = Staging(settings.staging)
    base = run_base(contract.name, run, table.table)
    with tempfile.TemporaryDirectory(prefix="cutover-validate-") as tmp:
        sides = read_sides(contract, settings, table, Path(tmp), read, run)
        expected_dir, actual_dir = sides.expected_dir, sides.actual_dir
        export, items, rejected = sides.export, sides.items, sides.rejected
        rejected_pks = sides.rejected_pks
        expected, actual = str(expected_dir / "*.parquet"), str(actual_dir / "*.parquet")
        db = duckdb.connect()
        try:
            duplicated = db.execute(
                "SELECT pk, coalesce(sk, ''), entity, source_pk FROM read_parquet(?) "
                "WHERE (pk, coalesce(sk, '')) IN (SELECT pk, coalesce(sk, '') FROM "
                "read_parquet(?) GROUP BY 1, 2 HAVING count(*) > 1)",
                [expected, expected],
            ).fetchall()
            counts = {
                side: dict(db.execute("SELECT entity, count(*) FROM read_parquet(?) "
                                      "GROUP BY entity", [path]).fetchall())
                for side, path in (("expected", expected), ("actual", actual))
            }  # fmt: skip
        finally:
            db.close()
        dup_keys = {(pk, sk) for pk, sk, _, _ in duplicated}
        dup_pks: dict[str, list[str]] = defaultdict(list)
        for _, _, entity, source_pk in duplicated:
            dup_pks[entity].append(source_pk)
            counts["expected"][entity] -= 1
        total = max(sum(counts["expected"].values()), sum(counts["actual"].values()), 1)
        buckets = choose_buckets(total, items_per_bucket())
        for side, path in (("expected", expected_dir), ("actual", actual_dir)):
            with BucketWriter(staging, base, side, "w0", buckets) as writer:
                for file in sorted(path.glob("*.parquet")):
                    for batch in pq.ParquetFile(file).iter_batches(65_536):
                        rows = batch.select(["pk", "sk", "canon"])
                        if side == "expected" and dup_keys:
                            keep = [(pk, sk or "") not in dup_keys for pk, sk in zip(
                                batch.column("pk").to_pylist(), batch.column("sk").to_pylist(),
                                strict=True)]  # fmt: skip
                            rows = rows.filter(pa.array(keep))
                        writer.write_table(rows)
        conn = connect(settings.mysql)
        try:
            checks = independent_checks(conn, table, dict(dup_pks), rejected_pks, actual_dir)
        finally:
            conn.close()
    return {
        "table": table.table,
        "base": base,
        "buckets": buckets,
        "counts": counts,
        "duplicate_keys_in_source": len(dup_keys),
        "duplicate_source_pks": dict(dup_pks),
        "quarantined_in_source": dict(rejected),
        "independent": checks,
        "export": export,
        "exported_items": items,
    }


def bucket_work(sides: list[dict[str, Any]], max_tasks: int = 1024) -> list[dict[str, Any]]:
    """Step 2's work: entries of consecutive buckets of one table, one bucket each while the
    tables' buckets together are at most ``max_tasks`` (Airflow's ``max_map_length`` caps
    the mapped tasks of all tables at once), else as few buckets each as keeps under it."""
    if len(sides) > max_tasks:
        raise ConfigError(
            f"the contract has {len(sides)} tables and Airflow maps at most {max_tasks} tasks "
            "(core.max_map_length): raise max_map_length to at least the number of tables"
        )
    per = max(1, -(-sum(s["buckets"] for s in sides) // max_tasks))
    while sum(-(-s["buckets"] // per) for s in sides) > max_tasks:
        per += 1  # each table's last group may be short: one more bucket a group
    return [
        {
            "table": s["table"],
            "base": s["base"],
            "buckets": list(range(first, min(first + per, s["buckets"]))),
        }
        for s in sides
        for first in range(0, s["buckets"], per)
    ]


def compare_work(contract: Contract, settings: Settings, work: dict[str, Any],
                 max_keys: int = 50) -> list[dict[str, Any]]:  # fmt: skip
    """Step 2 for one entry of ``bucket_work``: per bucket, one after another (memory
    bounded by one bucket), its counts per entity and kind and its first differences."""
    return [compare_one(contract, settings, work["table"], work["base"], b, max_keys)
            for b in work["buckets"]]  # fmt: skip


def compare_one(contract: Contract, settings: Settings, table: str, base: str, bucket: int,
                max_keys: int = 50) -> dict[str, Any]:  # fmt: skip
    """One bucket's counts per entity and kind, and its first differences."""
    result = compare_bucket(Staging(settings.staging), base, bucket, max_keys=KEEP_DIFFERING)
    classify = EntityClassifier(contract.table(table))
    kinds: Counter[tuple[str, str]] = Counter()
    shown = []
    for d in result.differences:
        entity = classify(d["PK"], d["SK"])
        kinds[(entity, d["kind"])] += 1
        if len(shown) < max_keys:
            shown.append({**d, "entity": entity})
    unclassified = (
        result.missing
        + result.extra
        + result.mismatched
        - sum(n for (_, kind), n in kinds.items() if kind != "duplicate")
    )
    return {
        "table": table,
        "bucket": bucket,
        "equal": result.equal,
        "items_compared": result.items_compared,
        "kinds": [[e, k, n] for (e, k), n in sorted(kinds.items())],
        "unclassified": unclassified,
        "differences": shown,
    }


def _parity(side: dict[str, Any], compared: list[dict[str, Any]], max_keys: int) -> TableParity:
    parity = TableParity(side["table"], buckets=side["buckets"])
    for column in ("expected", "actual"):
        for entity, n in side["counts"][column].items():
            setattr(parity.entity(entity), column, n)
    parity.duplicate_keys_in_source = side["duplicate_keys_in_source"]
    parity.duplicate_source_pks = side["duplicate_source_pks"]
    field = {"missing": "missing", "extra": "extra", "mismatch": "mismatched"}
    for result in sorted(compared, key=lambda r: r["bucket"]):
        parity.differing_buckets += not result["equal"]
        for entity, kind, n in result["kinds"]:
            if kind in field:
                stats = parity.entity(entity)
                setattr(stats, field[kind], getattr(stats, field[kind]) + n)
        if result["unclassified"]:  # over KEEP_DIFFERING in one bucket: counted, not placed
            parity.entity("(unclassified)").mismatched += result["unclassified"]
        for d in result["differences"]:
            if len(parity.differences) < max_keys and d["kind"] in field:
                parity.differences.append({k: d[k] for k in (
                    "kind", "entity", "PK", "SK", "attributes", "expected", "actual")})  # fmt: skip
    return parity


def assemble(contract: Contract, settings: Settings, started: dict[str, Any],
             sides: list[dict[str, Any]], compared: list[dict[str, Any]],
             max_keys: int = 50) -> dict[str, Any]:  # fmt: skip
    """Step 3: the report ``cutover validate`` writes, from the steps' results (``compared``:
    what each ``compare_work`` returned)."""
    from cutover.validate.run import gx_runner, parity_frame

    compared = [bucket for entry in compared for bucket in entry]

    ensure_suites(contract)
    workspace = GxWorkspace(Staging(settings.staging), contract.name)
    workspace.pull()
    gx = gx_runner(workspace.root)
    results = []
    for side in sorted(sides, key=lambda s: [t.table for t in contract.tables].index(s["table"])):
        table = contract.table(side["table"])
        parity = _parity(side, [c for c in compared if c["table"] == side["table"]], max_keys)
        checks = side["independent"]
        frame = pd.DataFrame(checks, columns=["entity", "check", "source_value", "export_value"])
        suites = [
            gx.validate(suite_path(contract, table, "parity"), parity_frame(parity),
                        f"{contract.name}.{table.table}.parity"),
            gx.validate(suite_path(contract, table, "independent"), frame,
                        f"{contract.name}.{table.table}.independent"),
        ]  # fmt: skip
        results.append({
            "table": table.table,
            "success": all(s["success"] for s in suites),
            "exported_items": side["exported_items"],
            "export": side["export"],
            "quarantined_in_source": side["quarantined_in_source"],
            "parity": parity.to_dict(),
            "independent_checks": {
                "total": len(checks),
                "failed": [c for c in checks if c["source_value"] != c["export_value"]],
            },
            "suites": suites,
            "buckets": {"count": side["buckets"], "compared": len(
                [c for c in compared if c["table"] == side["table"]])},
        })  # fmt: skip
    workspace.push()
    return {
        "contract": contract.name,
        "started_at": started["started_at"],
        "finished_at": dt.datetime.now(dt.UTC).isoformat(),
        "sample": None,
        "binlog_position": started["binlog_position"],
        "success": all(t["success"] for t in results),
        "tables": results,
        "data_docs": workspace.uri(gx.docs_index()),
    }
