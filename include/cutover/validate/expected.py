"""The expected side of parity: the items MySQL should produce, computed from the views by
the transform stage, written to Parquet a batch at a time.

Deriving items is Python work per row, so a table the extract stage splits into several
partitions is derived by several processes at once (``CUTOVER_VALIDATE_PROCESSES``, default
one per CPU), one Parquet file per partition; a table of one partition is derived in this
process."""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections import Counter
from concurrent.futures import FIRST_EXCEPTION, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from cutover.contract.model import Contract, Table
from cutover.contract.views import view_name
from cutover.db import connect, quote_ident
from cutover.errors import ConfigError
from cutover.extract.plan import partition_predicate, plan_table
from cutover.extract.stream import arrow_stream, select_list
from cutover.progress import Progress
from cutover.settings import MySQLSettings, Settings
from cutover.transform.items import Item, ItemBuilder
from cutover.validate.export import SIDE_SCHEMA

log = logging.getLogger("cutover.validate")


@dataclass(frozen=True)
class _Part:
    """One partition of a view to derive: its query, and the file its items go to."""

    id: str
    sql: str
    out_file: Path


@dataclass
class _Derived:
    rows: int
    rejected: Counter[str]
    rejected_pks: dict[str, list[str]]


def validate_processes() -> int:
    """``CUTOVER_VALIDATE_PROCESSES``: processes deriving one table's expected side."""
    raw = os.environ.get("CUTOVER_VALIDATE_PROCESSES", "")
    if not raw:
        return os.cpu_count() or 1
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(
            f"CUTOVER_VALIDATE_PROCESSES={raw!r} is not a whole number of processes above 0"
        )
    return int(raw)


def _derive(contract: Contract, table_name: str, mysql: MySQLSettings, view: str,
            part: _Part) -> _Derived:  # fmt: skip
    """The items of one partition, to ``part.out_file``; runs in a worker process too."""
    builder = ItemBuilder(contract, contract.table(table_name))
    derived = _Derived(0, Counter(), {})
    with pq.ParquetWriter(part.out_file, SIDE_SCHEMA) as writer:
        for batch in arrow_stream(mysql, part.sql, 5_000, view=view, partition=part.id):
            rows: dict[str, list[Any]] = {k: [] for k in SIDE_SCHEMA.names}
            for row in batch.to_pylist():
                result = builder.build(row)
                if not isinstance(result, Item):
                    derived.rejected[result.reason] += 1
                    derived.rejected_pks.setdefault(result.entity_type, []).append(result.source_pk)
                    continue
                rows["pk"].append(result.pk)
                rows["sk"].append(result.sk)
                rows["entity"].append(result.entity_type)
                rows["canon"].append(result.canonical)
                rows["source_pk"].append(result.source_pk)
            writer.write_table(pa.table(rows, schema=SIDE_SCHEMA))
            derived.rows += batch.num_rows
    return derived


def _parts(table: Table, view: str, mysql: MySQLSettings, out_dir: Path) -> list[_Part]:
    conn = connect(mysql)
    try:
        select = f"SELECT {select_list(conn, view)} FROM {quote_ident(view)}"
        planned = plan_table(conn, table)
        multi = table.type == "multi-entity"
        return [
            _Part(
                p.id,
                f"{select} WHERE {partition_predicate(conn, p, multi)}",
                out_dir / f"part-{n:04d}.parquet",
            )
            for n, p in enumerate(planned)
        ]
    finally:
        conn.close()


def _in_processes(contract: Contract, table: Table, mysql: MySQLSettings, view: str,
                  parts: list[_Part], processes: int, results: list[_Derived],
                  progress: Progress) -> list[_Part]:  # fmt: skip
    """Derives ``parts`` in worker processes into ``results``; returns the parts left to
    derive here when the pool broke (a worker killed, say, or none could start). An error
    of a partition itself (the view cannot be read) is raised as it is."""
    context = multiprocessing.get_context("spawn")  # not forked: the Scan's threads run here
    with ProcessPoolExecutor(processes, mp_context=context) as pool:
        pending: dict[Future[_Derived], _Part] = {
            pool.submit(_derive, contract, table.table, mysql, view, part): part for part in parts
        }
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_EXCEPTION)
                for future in done:
                    part = pending.pop(future)
                    try:
                        results.append(future.result())  # a failed partition raises here
                    except BrokenProcessPool as exc:
                        left = [part]
                        for other, other_part in pending.items():
                            if other.done() and not other.cancelled() and other.exception() is None:
                                results.append(other.result())  # finished before the break
                            else:
                                left.append(other_part)
                        log.warning(
                            "expected %s: the worker processes failed (%s); deriving %d "
                            "partitions in this process", table.table, exc, len(left),
                        )  # fmt: skip
                        return left
                progress.update(sum(r.rows for r in results))
        except BaseException:
            for future in pending:
                future.cancel()
            raise
    return []


def expected_items(
    contract: Contract, table: Table, settings: Settings, out_dir: Path
) -> tuple[Counter[str], dict[str, list[str]]]:
    """Writes the expected items of ``table`` into ``out_dir`` (Parquet files); returns the
    rows rejected by reason, and their source primary keys by entity (they are in the
    backfill's quarantine, not in DynamoDB)."""
    view = view_name(contract, table)
    out_dir.mkdir(parents=True, exist_ok=True)
    parts = _parts(table, view, settings.mysql, out_dir)
    progress = Progress(f"expected {table.table}", None)
    results: list[_Derived] = []
    processes = min(validate_processes(), len(parts))
    left = list(parts)
    # a daemonic process (a Celery prefork child, say) may not start processes of its own
    if processes > 1 and not multiprocessing.current_process().daemon:
        left = _in_processes(contract, table, settings.mysql, view, parts, processes, results,
                             progress)  # fmt: skip
    for part in left:
        results.append(_derive(contract, table.table, settings.mysql, view, part))
        progress.update(sum(r.rows for r in results))
    rejected: Counter[str] = Counter()
    rejected_pks: dict[str, list[str]] = {}
    for result in results:
        rejected.update(result.rejected)
        for entity, pks in result.rejected_pks.items():
            rejected_pks.setdefault(entity, []).extend(pks)
    progress.done(sum(r.rows for r in results))
    return rejected, rejected_pks
