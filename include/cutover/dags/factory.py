"""Builds each contract's DAGs. Parse time does no I/O beyond reading the contract files'
JSON, imports no heavy library (pandas, pyarrow, boto3, GX) and opens no connection: every
task imports and calls the `cutover.stages` function the CLI uses."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import DAG, Asset, Param, task

from cutover.dags import tasks

log = logging.getLogger("cutover.dags")


def retry_delay_seconds() -> int:
    """``CUTOVER_TASK_RETRY_DELAY`` (seconds, default 30): a task's first retry waits this
    long, later ones twice as long each, at most 10 minutes. Read from the environment, as the
    scheduler and every worker parse the DAGs with the same one."""
    raw = os.environ.get("CUTOVER_TASK_RETRY_DELAY", "30")
    if not raw.isdigit() or int(raw) < 1:
        log.warning("CUTOVER_TASK_RETRY_DELAY=%r is not a whole number of seconds; using 30", raw)
        return 30
    return int(raw)


DEFAULT_ARGS = {
    "owner": "data-platform",
    "retries": 3,  # transient errors only: terminal ones raise AirflowFailException
    "retry_delay": pendulum.duration(seconds=retry_delay_seconds()),
    "retry_exponential_backoff": True,
    "max_retry_delay": pendulum.duration(minutes=10),
}
START = pendulum.datetime(2024, 1, 1, tz="UTC")
# mapped load tasks of the backfill DAG that run at once (max_active_tis_per_dag; the DAG
# runs one run at a time): the plan divides the run's rate by min(this, partitions), so the
# loads together write at most the rate, and less when fewer of them get a worker slot
LOAD_CONCURRENCY = 4
# The binlog sync runs as a bounded task every minute rather than one that never ends: a run
# lost with its worker leaves the checkpoint, and the next run simply starts from it; no run
# holds a worker slot forever; and a lost run costs about a minute of lag. A deferrable
# trigger could not hold a binlog connection across triggerer restarts either.
SYNC_SCHEDULE = "* * * * *"
# a run stops itself after tasks.SYNC_TASK_SECONDS; this only frees a slot from a hung one
SYNC_TIMEOUT = dt.timedelta(minutes=5)
PHASES = ["dual_write", "dual_read_mysql_primary", "dual_read_dynamodb_primary", "dynamodb_only"]


def contracts_dir() -> Path:
    default = Path(__file__).resolve().parents[3] / "contracts"
    return Path(os.environ.get("CUTOVER_CONTRACTS_DIR", default))


def backfill_asset(name: str) -> Asset:
    return Asset(f"cutover://{name}/backfill", group="cutover")


def _doc(title: str, what: str, path: Path) -> str:
    return (
        f"### {title}\n\n{what}\n\nContract: `{path}`. Every task calls the same library "
        "function as the matching `cutover` command."
    )


def build_contract_dags(path: Path) -> dict[str, DAG]:
    """The seven DAGs of one contract file, keyed by dag_id."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    options = doc.get("cutover", {})
    name = options.get("name") or path.stem
    schedule = options.get("reconcile_schedule", "0 2 * * *")
    tags = ["cutover", name]
    contract = str(path)
    # the validate DAG maps a task over the tables: their names, read with the file
    table_names = [str(t["table"]) for t in doc.get("tables", []) if isinstance(t, dict)]
    dags: dict[str, DAG] = {}

    def dag(suffix: str, doc_md: str, **kwargs: Any) -> DAG:
        built = DAG(
            dag_id=f"{name}__{suffix}",
            start_date=START,
            catchup=False,
            tags=tags,
            default_args=DEFAULT_ARGS,
            doc_md=doc_md,
            max_active_runs=1,
            **kwargs,
        )
        dags[built.dag_id] = built
        return built

    with dag(
        "prepare",
        _doc(
            "Prepare",
            "Lint the contract against the source, apply its "
            "views, create or check its DynamoDB tables (drift fails the run).",
            path,
        ),
        schedule=None,
    ):
        task(task_id="prepare")(tasks.prepare)(contract)

    with dag(
        "backfill",
        _doc(
            "Backfill",
            "Plan partitions, then extract, transform and load "
            "each as a mapped task, check duplicate keys, catch up, and publish the backfill "
            "Asset. `rate` (items/s) and `rate_share` (of each table's write capacity, "
            "counting item sizes and GSI writes) limit the whole run: the plan records them "
            f"and every load writes at the rate divided by min(partitions, {LOAD_CONCURRENCY}), "
            "the load tasks that run at once.",
            path,
        ),
        schedule=None,
        params={
            "partitions": Param(None, type=["null", "integer"], minimum=1),
            "workers": Param(4, type="integer", minimum=1),
            "rate": Param(None, type=["null", "number"], exclusiveMinimum=0),
            "rate_share": Param(None, type=["null", "number"], exclusiveMinimum=0, maximum=1),
        },
    ):
        plan = task(task_id="plan")(tasks.plan)(contract, load_concurrency=LOAD_CONCURRENCY)
        extracted = (
            task(task_id="extract")(tasks.extract).partial(contract=contract).expand(partition=plan)
        )
        transformed = (
            task(task_id="transform")(tasks.transform)
            .partial(contract=contract)
            .expand(partition=extracted)
        )
        dups = task(task_id="check_duplicates")(tasks.check_duplicates)(contract)
        transformed >> dups
        loaded = (
            task(task_id="load", max_active_tis_per_dag=LOAD_CONCURRENCY)(tasks.load)
            .partial(contract=contract)
            .expand(partition=transformed)
        )
        dups >> loaded
        finish = task(task_id="handoff_and_finish", outlets=[backfill_asset(name)])(tasks.finish)(
            contract
        )
        loaded >> finish

    with dag(
        "validate",
        _doc(
            "Validate",
            "After each backfill: read both sides of each table once and write them to the "
            "storage URL by hash bucket of the item key, compare each bucket in a task of its "
            "own (signatures first, items only where they differ), then judge with the Great "
            "Expectations parity suites; fails when a suite fails.",
            path,
        ),
        schedule=[backfill_asset(name)],
    ):
        started = task(task_id="start")(tasks.validate_start)(contract)
        sides = (
            task(task_id="read_sides")(tasks.validate_sides)
            .partial(contract_path=contract, started=started)
            .expand(table=table_names)
        )
        work = task(task_id="plan_buckets")(tasks.validate_buckets)(sides)
        compared = (
            task(task_id="compare_bucket")(tasks.validate_compare)
            .partial(contract_path=contract)
            .expand(work=work)
        )
        task(task_id="report")(tasks.validate_report)(contract, started, sides, compared)

    with dag(
        "reconcile",
        _doc(
            "Nightly reconciliation",
            "Compare the items that changed since the last full validation (binlog, point "
            "reads); every CUTOVER_FULL_VALIDATION_DAYS days (7), after a failure, or with "
            "full=true, run parity in full, repair drift from the source of truth, and report "
            "(the sync DAG keeps DynamoDB following the binlog in between).",
            path,
        ),
        schedule=schedule,
        params={"full": Param(False, type="boolean")},
    ):
        task(task_id="reconcile")(tasks.reconcile)(contract, full="{{ params.full }}")

    with dag(
        "sync",
        _doc(
            "Binlog sync",
            "Keep DynamoDB following MySQL in phases 1-3: every minute, one run at a time, "
            f"apply the binlog from the checkpoint for up to {tasks.SYNC_TASK_SECONDS} s, "
            "then record the lag as the gates' sync evidence.",
            path,
        ),
        schedule=SYNC_SCHEDULE,
    ):
        task(task_id="sync", execution_timeout=SYNC_TIMEOUT)(tasks.sync)(contract)

    with dag(
        "phase_gate",
        _doc(
            "Phase gate",
            "Check the evidence against the gate policy, "
            "ask a person to approve, then record the phase. A rejected or timed-out approval "
            "changes nothing.",
            path,
        ),
        schedule=None,
        params={"target_phase": Param("dual_write", enum=PHASES)},
    ):
        from airflow.providers.standard.operators.hitl import ApprovalOperator

        evidence = task(task_id="check_evidence")(tasks.check_evidence)(contract)
        approval = ApprovalOperator(
            task_id="approve",
            subject=f"{name}: move to {{{{ params.target_phase }}}}?",
            body="{{ ti.xcom_pull(task_ids='check_evidence')['body'] }}",
            response_timeout=dt.timedelta(days=2),
            defaults=["Reject"],  # no answer in time changes nothing
            retries=0,
        )
        record = task(task_id="record_phase")(tasks.record_phase)(
            contract, evidence, approval.output
        )
        evidence >> approval >> record

    with dag(
        "rollback",
        _doc(
            "Rollback",
            "Move the contract one phase back. No gate; a reason is required and recorded.",
            path,
        ),
        schedule=None,
        params={"reason": Param(type="string", minLength=3)},
    ):
        task(task_id="rollback")(tasks.rollback)(contract)

    return dags


def build_all(directory: Path | None = None) -> dict[str, DAG]:
    """Every contract's DAGs. A contract file that cannot be read is logged and skipped, so
    one broken file never takes the other contracts' DAGs down (the Migrations panel lists
    it with its error)."""
    out: dict[str, DAG] = {}
    for path in sorted((directory or contracts_dir()).glob("*.json")):
        try:
            out.update(build_contract_dags(path))
        except Exception as exc:
            log.error("contract %s builds no DAGs: %s", path, exc)
    return out
