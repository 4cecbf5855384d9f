"""The whole backfill in one call, as `cutover backfill` runs it; the DAG runs the same
steps as separate (mapped) tasks."""

from __future__ import annotations

import logging
from typing import Any

from cutover.backfill.catch_up import catch_up
from cutover.backfill.run import BackfillRun, new_run_id
from cutover.contract.model import Contract
from cutover.settings import Settings

log = logging.getLogger("cutover.backfill")


def backfill(
    contract: Contract,
    settings: Settings,
    *,
    partitions: int | None = None,
    workers: int = 4,
    rate: float | None = None,
    rate_share: float | None = None,
    run_id: str | None = None,
    fresh: bool = False,
) -> dict[str, Any]:
    """Plan (or resume) a run, move every partition, check duplicates, catch up, and write
    the run manifest. Returns the manifest."""
    run = BackfillRun(contract, settings, run_id or (new_run_id() if fresh else None))
    log.info("backfill %s: run %s", contract.name, run.run_id)
    parts = run.plan(partitions)
    for part in parts:
        run.extract(part.id)
        run.transform(part.id)
    run.check_duplicates()
    for part in parts:
        run.load(part.id, workers=workers, rate=rate, rate_share=rate_share)
    caught = catch_up(run)
    return run.finish({"catch_up": caught})
