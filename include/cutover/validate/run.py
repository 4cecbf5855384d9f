"""One validation of a contract: for each table, the expected side, the export, parity, the
independent checks, and the GX suites over them; a JSON report and Data Docs."""

from __future__ import annotations

import datetime as dt
import functools
import logging
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from cutover.binlog.position import current_position
from cutover.contract.model import Contract, Table
from cutover.db import connect
from cutover.errors import ServiceError
from cutover.extract.staging import Staging
from cutover.settings import Settings
from cutover.validate.export_read import recheck
from cutover.validate.independent import independent_checks
from cutover.validate.parity import TableParity, compare_table
from cutover.validate.sides import read_sides
from cutover.validate.suites import GxRunner, GxWorkspace, ensure_suites, suite_path

log = logging.getLogger("cutover.validate")


def parity_frame(parity: TableParity) -> pd.DataFrame:
    rows = [
        {
            "entity": e.entity,
            "expected": e.expected,
            "actual": e.actual,
            "missing": e.missing,
            "extra": e.extra,
            "mismatched": e.mismatched,
            "value_parity": e.value_parity,
        }
        for e in parity.entities.values()
    ]
    columns = ["entity", "expected", "actual", "missing", "extra", "mismatched", "value_parity"]
    return pd.DataFrame(rows, columns=columns)


def validate_table(
    contract: Contract,
    table: Table,
    settings: Settings,
    work: Path,
    gx: GxRunner,
    *,
    sample: float | None = None,
    max_keys: int = 50,
    read: str = "auto",
    tag: str = "",
) -> dict[str, Any]:
    """Validate one table. ``read`` says how DynamoDB's side is read: a Scan, an export to
    the storage URL (``cutover.validate.export_read``), or "auto" (an export where it pays);
    ``tag`` names the validation (its export's folder)."""
    table_name = settings.table_prefix + table.table
    sides = read_sides(contract, settings, table, work / table.table, read, tag)
    expected_dir, actual_dir = sides.expected_dir, sides.actual_dir
    rejected, rejected_pks = sides.rejected, sides.rejected_pks
    export, exported_items = sides.export, sides.items
    parity = compare_table(table.table, expected_dir, actual_dir, sample=sample, max_keys=max_keys)
    if sides.exported:
        export["recheck"] = recheck(parity, sides.client, table, table_name, max_keys)
    conn = connect(settings.mysql)
    try:
        checks = independent_checks(
            conn, table, parity.duplicate_source_pks, rejected_pks, actual_dir
        )
    finally:
        conn.close()
    frame = pd.DataFrame(checks, columns=["entity", "check", "source_value", "export_value"])
    suites = [
        gx.validate(
            suite_path(contract, table, "parity"),
            parity_frame(parity),
            f"{contract.name}.{table.table}.parity",
        ),
        gx.validate(
            suite_path(contract, table, "independent"),
            frame,
            f"{contract.name}.{table.table}.independent",
        ),
    ]
    failed_checks = [c for c in checks if c["source_value"] != c["export_value"]]
    return {
        "table": table.table,
        "success": all(s["success"] for s in suites),
        "exported_items": exported_items,
        "export": export,
        "quarantined_in_source": dict(rejected),
        "parity": parity.to_dict(),
        "independent_checks": {"total": len(checks), "failed": failed_checks},
        "suites": suites,
    }


def validate(
    contract: Contract,
    settings: Settings,
    *,
    sample: float | None = None,
    max_keys: int = 50,
    work_dir: Path | None = None,
    tables: list[str] | None = None,
    read: str = "auto",
) -> dict[str, Any]:
    """Validate every table of the contract (or those named in ``tables``), DynamoDB's side
    read as ``read`` says (see ``validate_table``); ``report["success"]`` says whether every
    GX suite passed."""
    if sample is not None and not 0 < sample <= 1:
        raise ValueError("--sample is a fraction in (0, 1]")
    ensure_suites(contract)
    workspace = GxWorkspace(Staging(settings.staging), contract.name)
    workspace.pull()  # an s3:// storage URL: the GX project comes down to a local cache
    gx = gx_runner(workspace.root)
    started = dt.datetime.now(dt.UTC)
    tag = started.strftime("%Y%m%dT%H%M%S%fZ")
    position = binlog_position(settings)  # where changed-key parity takes over from
    with tempfile.TemporaryDirectory(dir=work_dir, prefix="cutover-validate-") as tmp:
        results = [
            validate_table(
                contract,
                t,
                settings,
                Path(tmp),
                gx,
                sample=sample,
                max_keys=max_keys,
                read=read,
                tag=tag,
            )
            for t in contract.tables
            if tables is None or t.table in tables
        ]
    workspace.push()  # and its results and Data Docs go back up
    return {
        "contract": contract.name,
        "started_at": started.isoformat(),
        "finished_at": dt.datetime.now(dt.UTC).isoformat(),
        "sample": sample,
        "binlog_position": position,
        "success": all(t["success"] for t in results),
        "tables": results,
        "data_docs": workspace.uri(gx.docs_index()),
    }


def binlog_position(settings: Settings) -> dict[str, Any] | None:
    """MySQL's binlog position as a validation starts (None without a binlog): every change
    committed before it is in the rows the validation derives."""
    conn = connect(settings.mysql)
    try:
        return current_position(conn).to_dict()
    except ServiceError:
        return None
    finally:
        conn.close()


@functools.cache
def gx_runner(root: Path) -> GxRunner:
    """One GX context per process and project root: building it costs seconds."""
    return GxRunner(root)


def differing_keys(report: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(table, difference) for every listed difference of a report."""
    return [(t["table"], d) for t in report["tables"] for d in t["parity"]["differences"]]
