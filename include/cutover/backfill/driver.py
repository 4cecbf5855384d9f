"""The whole backfill in one call, as `cutover backfill` runs it; the DAG runs the same
steps as separate (mapped) tasks.

Which run: ``fresh`` (`--new`) starts a new one; ``run_id`` (`--resume RUN_ID`) resumes that
unfinished run; neither resumes the latest run of the contract (by the time it was planned)
when it has not finished, else starts a new one. Resuming checks that the run was planned from
this contract (its sha256), with the same ``--partitions`` when one is given, against the same
MySQL database and table prefix, and refuses otherwise (``RunRefused``)."""

from __future__ import annotations

import logging
from typing import Any

from cutover.backfill.checkpoints import list_runs, new_run_id
from cutover.backfill.handoff import handoff
from cutover.backfill.plan import RunRefused
from cutover.backfill.run import BackfillRun
from cutover.contract.model import Contract
from cutover.settings import Settings

log = logging.getLogger("cutover.backfill")

# partitions `cutover backfill` loads at once: it loads them one after another, so each load
# writes at the run's whole rate (the DAG loads up to its LOAD_CONCURRENCY at once)
CLI_LOAD_CONCURRENCY = 1


def choose_run(
    contract: Contract, settings: Settings, *, run_id: str | None = None, fresh: bool = False
) -> BackfillRun:
    """The run a backfill works on (see the module's docstring); refuses a run that does not
    exist or finished, and leaves an unfinished run of the Airflow DAG to the DAG."""
    if run_id and fresh:
        raise RunRefused("give either --resume RUN_ID or --new, not both")
    if fresh:
        return BackfillRun(contract, settings, new_run_id())
    runs = list_runs(contract, settings)
    if run_id:
        found = next((r for r in runs if r.run_id == run_id), None)
        if found is None:
            known = ", ".join(r.run_id for r in runs[-5:]) or "none"
            raise RunRefused(
                f"contract {contract.name} has no planned run {run_id!r} in {settings.staging} "
                f"(latest runs, oldest first: {known}); start a new run with --new"
            )
        if found.finished_at is not None:
            raise RunRefused(
                f"run {run_id} of contract {contract.name} finished at "
                f"{found.finished_at.isoformat(timespec='seconds')}: there is nothing to resume; "
                "start a new run with --new"
            )
        return BackfillRun(contract, settings, run_id)
    latest = runs[-1] if runs else None
    if latest is None or latest.finished:
        return BackfillRun(contract, settings, new_run_id())
    if latest.from_airflow:
        raise RunRefused(
            f"the latest run of contract {contract.name}, {latest.run_id}, belongs to a run of "
            "the backfill DAG and has not finished: let the DAG finish it, resume it here with "
            f"--resume {latest.run_id}, or start a new run with --new"
        )
    return BackfillRun(contract, settings, latest.run_id)


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
    the run manifest. Returns the manifest. ``run_id`` resumes that run, ``fresh`` starts a
    new one; see ``choose_run``. ``rate`` (items/s) and ``rate_share`` (of each table's write
    capacity) are the whole run's, recorded in its plan; resuming without them keeps the
    plan's."""
    run = choose_run(contract, settings, run_id=run_id, fresh=fresh)
    resuming = run.exists()
    log.info("backfill %s: %s run %s", contract.name, "resuming" if resuming else "new", run.run_id)
    parts = run.plan(partitions, rate=rate, rate_share=rate_share, concurrency=CLI_LOAD_CONCURRENCY)
    for part in parts:
        run.extract(part.id)
        run.transform(part.id)
    run.check_duplicates()
    for part in parts:  # one at a time: each at the whole rate the plan records
        run.load(part.id, workers=workers)
    return run.finish({"handoff": handoff(run)})
