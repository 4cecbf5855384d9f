"""Catch-up: re-load the rows whose version moved past the run's high-water mark, so writes
made while the backfill ran are not lost; each put is version-guarded."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from cutover.backfill.run import BackfillRun
from cutover.contract.views import view_name
from cutover.db import connect, literal, quote_ident
from cutover.extract.stream import arrow_stream, select_list
from cutover.load.dynamo_http import DynamoHttp
from cutover.load.guarded_put import guarded_put
from cutover.progress import Progress
from cutover.routing.replay import converge_since
from cutover.transform.items import Item, ItemBuilder, version_number

log = logging.getLogger("cutover.catch_up")
NO_VERSION = (
    "unavailable: no version column (rows changed during the backfill are not caught up; "
    "set cutover.version_column, or let reconcile repair them)"
)


def catch_up(run: BackfillRun, since_last: bool = False) -> dict[str, Any]:
    """Re-reads changed rows from the views and puts them where no newer item exists.
    Records and returns counts and the new high-water marks (for the next catch-up).
    ``since_last`` starts from the marks of the run's previous catch-up (nightly runs)."""
    plan_doc = run.staging.read_json(run.paths.of("plan.json"))
    marks: dict[str, Any] = plan_doc["high_water_marks"]
    previous = run._done("catch_up", "all") if since_last else None
    if previous:
        marks = {**marks, **{k: v for k, v in previous["high_water_marks"].items() if v}}
    skip = run._duplicate_source_pks()
    counts: Counter[str] = Counter()
    new_marks: dict[str, Any] = {}
    unavailable: dict[str, str] = {}
    http = DynamoHttp(run.settings)
    conn = connect(run.settings.mysql)
    try:
        for table in run.contract.tables:
            view = view_name(run.contract, table)
            builder = ItemBuilder(run.contract, table)
            columns = select_list(conn, view)
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
                sql = f"SELECT {columns} FROM {quote_ident(view)} WHERE {' AND '.join(clauses)}"
                rows = arrow_stream(run.settings.mysql, sql, view=view).read_all().to_pylist()
                progress = Progress(f"catch-up {key}", len(rows))
                best = marks.get(key)
                for n, row in enumerate(rows, 1):
                    result = builder.build(row)
                    if not isinstance(result, Item):
                        counts["rejected"] += 1
                        continue
                    if (result.entity_type, result.source_pk) in skip:
                        continue
                    table_name = run.settings.table_prefix + table.table
                    counts[guarded_put(http, table_name, result.body, result.version or 0)] += 1
                    version = row.get("__version")
                    if best is None or version_number(version) > version_number(best):
                        best = version
                    progress.update(n)
                progress.done(len(rows))
                new_marks[key] = best
    finally:
        conn.close()
        http.close()
    # changes the application made through the routing layer while this run copied its
    # snapshot (dual writes) are applied again over it: see cutover.routing.replay
    converged = converge_since(run.contract, run.settings, plan_doc["planned_at"])
    record = {
        "converged": converged,
        "rows": sum(counts.values()),
        **counts,
        "high_water_marks": new_marks,
        "unavailable": unavailable,
    }
    return run._mark("catch_up", "all", record)
