"""The callables of the DAG tasks. Each imports its stage at run time (parse time stays
light) and calls the same function as the `cutover` command. A terminal error (bad contract,
bad row, failed parity, refused gate) fails the task at once; anything else may be retried."""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

log = logging.getLogger("cutover.dags")

# how long one run of the <contract>__sync DAG (scheduled every minute) follows the binlog
SYNC_TASK_SECONDS = 50


def terminal_fails_fast(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from airflow.sdk.exceptions import AirflowFailException

        from cutover.errors import TerminalError

        try:
            return fn(*args, **kwargs)
        except TerminalError as exc:
            raise AirflowFailException(str(exc)) from exc
        except Exception as exc:
            # botocore's credential errors fail at once; an unreachable endpoint may retry.
            translated = _aws_error(exc)
            if translated is None:
                raise
            if isinstance(translated, TerminalError):
                raise AirflowFailException(str(translated)) from exc
            raise translated from exc

    return wrapper  # type: ignore[return-value]


def _aws_error(exc: Exception) -> Any:
    """``exc`` as cutover's ConfigError or ServiceError when it is a botocore credential or
    connection error (see ``cutover.aws.translate_aws_error``), else None."""
    import sys

    if "botocore.exceptions" not in sys.modules:
        return None
    from cutover.aws import translate_aws_error

    return translate_aws_error(exc)


def _context() -> dict[str, Any]:
    from airflow.sdk import get_current_context

    return get_current_context()  # type: ignore[return-value]


def _load(contract_path: str) -> tuple[Any, Any]:
    """The contract and its Settings, from the Airflow connections the contract names (see
    ``cutover.airflow_connections`` for the fallback to the environment)."""
    from cutover.airflow_connections import settings_for_contract
    from cutover.contract.load import load_contract

    contract = load_contract(contract_path)
    return contract, settings_for_contract(contract)


def _run(contract_path: str) -> Any:
    """The backfill run of this DAG run: retries and mapped tasks share it."""
    from cutover.backfill.run import BackfillRun

    contract, settings = _load(contract_path)
    run_id = "af-" + re.sub(r"[^A-Za-z0-9_.-]", "_", _context()["run_id"])
    return BackfillRun(contract, settings, run_id)


def _fail(message: str) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    raise AirflowFailException(message)


@terminal_fails_fast
def prepare(contract_path: str) -> dict[str, Any]:
    from cutover.stages import run_prepare

    contract, settings = _load(contract_path)
    report = run_prepare(contract, settings)
    if report["drifts"]:
        _fail("table drift: " + "; ".join(report["drifts"]))
    return {"report": report["report"], "changed": report["changed"]}


@terminal_fails_fast
def plan(contract_path: str, load_concurrency: int = 1) -> list[str]:
    """Plan the run, recording its rate params and how many load tasks run at once."""
    params = _context()["params"]
    run = _run(contract_path)
    planned = run.plan(
        params.get("partitions"),
        rate=params.get("rate"),
        rate_share=params.get("rate_share"),
        concurrency=load_concurrency,
    )
    return [p.id for p in planned]


@terminal_fails_fast
def extract(contract: str, partition: str) -> str:
    _run(contract).extract(partition)
    return partition


@terminal_fails_fast
def transform(contract: str, partition: str) -> str:
    _run(contract).transform(partition)
    return partition


@terminal_fails_fast
def check_duplicates(contract_path: str) -> dict[str, Any]:
    return _run(contract_path).check_duplicates()


@terminal_fails_fast
def load(contract: str, partition: str) -> dict[str, Any]:
    """Load one partition; its rate is the plan's (never this task's params), so every
    mapped load agrees on it."""
    workers = int(_context()["params"].get("workers") or 4)
    return _run(contract).load(partition, workers=workers)


@terminal_fails_fast
def finish(contract_path: str) -> dict[str, Any]:
    from cutover.backfill.handoff import handoff
    from cutover.stages import backfill_evidence, record, write_report

    run = _run(contract_path)
    manifest = run.finish({"handoff": handoff(run)})
    report = write_report(run.staging, "backfill", run.contract.name, manifest)
    record(run.settings, run.contract, "backfill", backfill_evidence(manifest))
    if not manifest["gate"]["passed"]:
        _fail(
            f"{manifest['quarantined']} rows quarantined, the contract allows "
            f"{manifest['gate']['max_quarantined_rows']}: see {manifest['quarantine_files']}"
        )
    return {"run_id": run.run_id, "items": manifest["items_loaded"], "report": report}


@terminal_fails_fast
def validate_start(contract_path: str) -> dict[str, Any]:
    """The bucketed validation's name, start and binlog position (``validate.distributed``)."""
    from cutover.validate.distributed import start

    _, settings = _load(contract_path)
    return start(settings)


@terminal_fails_fast
def validate_sides(contract_path: str, table: str, started: dict[str, Any]) -> dict[str, Any]:
    """Both sides of one table, read once and written to the storage URL by bucket."""
    from cutover.validate.distributed import write_sides

    contract, settings = _load(contract_path)
    return write_sides(contract, settings, table, started["run"])


def validate_buckets(sides: Any) -> list[dict[str, Any]]:
    """The buckets of every table in groups the compare tasks map over, as many as Airflow's
    ``max_map_length`` allows."""
    from airflow.configuration import conf

    from cutover.validate.distributed import bucket_work

    return bucket_work(list(sides), conf.getint("core", "max_map_length", fallback=1024))


@terminal_fails_fast
def validate_compare(contract_path: str, work: dict[str, Any]) -> list[dict[str, Any]]:
    """A group of buckets: signatures, then items only where they differ."""
    from cutover.validate.distributed import compare_work

    contract, settings = _load(contract_path)
    return compare_work(contract, settings, work)


@terminal_fails_fast
def validate_report(contract_path: str, started: dict[str, Any], sides: Any,
                    compared: Any) -> dict[str, Any]:  # fmt: skip
    """The buckets' results judged by the GX suites: the report and the gates' evidence."""
    from cutover.stages import record_validation
    from cutover.validate.distributed import assemble

    contract, settings = _load(contract_path)
    report = assemble(contract, settings, started, list(sides), list(compared))
    report = record_validation(contract, settings, report)
    differing = sum(t["parity"]["differing_buckets"] for t in report["tables"])
    log.info("%s: %d of %d buckets differ", contract.name, differing,
             sum(t["buckets"]["count"] for t in report["tables"]))  # fmt: skip
    if not report["success"]:
        _fail(f"parity suites failed; report {report['report']}, data docs {report['data_docs']}")
    return {"report": report["report"], "data_docs": report["data_docs"]}


@terminal_fails_fast
def reconcile(contract_path: str, full: bool | str = False) -> dict[str, Any]:
    """The nightly comparison: changed-key parity when a full one passed recently
    (``CUTOVER_FULL_VALIDATION_DAYS``, default 7), else (or with ``full``) a full reconcile
    that repairs drift."""
    import datetime as dt
    import os

    from cutover.stages import phase_store, run_changed_keys, run_reconcile
    from cutover.validate.changed_keys import FULL_EVERY_DAYS, full_validation_due

    contract, settings = _load(contract_path)
    every = float(os.environ.get("CUTOVER_FULL_VALIDATION_DAYS") or FULL_EVERY_DAYS)
    evidence = phase_store(settings).evidence(contract.name)
    asked = str(full).strip().lower() == "true"  # the DAG's param, rendered as text
    due = "asked for" if asked else full_validation_due(evidence, dt.datetime.now(dt.UTC), every)
    if due is None:
        changed = run_changed_keys(contract, settings)
        differ = changed["missing"] + changed["extra"] + changed["mismatched"]
        if not changed["success"]:
            compared = changed["items_compared"]
            _fail(f"changed-key parity: {differ} of {compared} changed items differ; report "
                  f"{changed['report']}; the next run reconciles in full")  # fmt: skip
        return {"report": changed["report"], "changed_keys": changed["items_compared"]}
    log.info("%s: a full reconcile (%s)", contract.name, due)
    result = run_reconcile(contract, settings, repair=True)
    if result.get("repair_held"):
        _fail(f"repair held: {result['repair_held']}; report {result['report']}")
    if not result["success"]:
        _fail(f"drift remains after repair; report {result['report']}")
    return {"report": result["report"], "repaired": result["repaired"]}


@terminal_fails_fast
def sync(contract_path: str) -> dict[str, Any]:
    """Follow the binlog from the checkpoint for up to ``SYNC_TASK_SECONDS``, then stop
    cleanly with the checkpoint saved; the next scheduled run starts from it. A report with
    an error fails the run without a retry: the next minute's run is the retry."""
    from cutover.sync.runner import run_sync

    contract, settings = _load(contract_path)
    report = run_sync(contract, settings, max_seconds=SYNC_TASK_SECONDS)
    if report.get("stood_down"):
        from airflow.sdk.exceptions import AirflowSkipException

        raise AirflowSkipException(report["stood_down"])
    log.info("%s", _sync_line(contract.name, report))
    if report.get("error"):
        _fail(f"the sync of {contract.name} stopped: {report['error']}")
    return report


def _sync_line(name: str, report: dict[str, Any]) -> str:
    position = report.get("position") or {}
    return (
        f"sync of {name}: {report.get('transactions', 0)} transactions, "
        f"{report.get('items_written', 0)} items written, "
        f"{report.get('items_deleted', 0)} deleted, {report.get('kept_newer', 0)} kept newer, "
        f"{report.get('fallbacks', 0)} fallbacks, "
        f"{report.get('applied_per_second', 0)} applied/s; "
        f"lag {report.get('lag_seconds')} s ({report.get('events_behind')} events, "
        f"{report.get('bytes_behind')} bytes behind) at "
        f"{position.get('file')}:{position.get('offset')}"
    )


def _evidence_body(decision: Any) -> str:
    lines = [f"**{decision.current.slug} → {decision.target.slug}**", ""]
    for kind, ev in decision.evidence.items():
        figures = {k: v for k, v in ev.items()
                   if k not in ("kind", "entities", "mismatched", "latency")}  # fmt: skip
        lines.append(f"- **{kind}**: " + ", ".join(f"{k}={v}" for k, v in figures.items()))
        for miss in ev.get("mismatched", [])[:5]:
            lines.append(f"  - mismatch {miss.get('entity')} {miss.get('key') or miss.get('pk')}"
                         f": {', '.join(miss.get('attributes', []))}")  # fmt: skip
        for store, ops in (ev.get("latency") or {}).items():
            shown = ", ".join(f"{op} p50 {v['p50_ms']} ms / p99 {v['p99_ms']} ms"
                              for op, v in ops.items())  # fmt: skip
            lines.append(f"  - {store}: {shown}")
    return "\n".join(lines)


@terminal_fails_fast
def check_evidence(contract_path: str) -> dict[str, Any]:
    from cutover.phases.model import Phase
    from cutover.phases.transitions import check_gate
    from cutover.stages import phase_store

    contract, settings = _load(contract_path)
    target = Phase.parse(_context()["params"]["target_phase"])
    state, decision = check_gate(phase_store(settings), contract, target)
    if not decision.allowed:
        _fail("gate refused, no approval asked: " + decision.summary())
    return {"target": target.value, "version": state.version, "body": _evidence_body(decision)}


@terminal_fails_fast
def record_phase(
    contract_path: str, evidence: dict[str, Any], approval: dict[str, Any]
) -> dict[str, Any]:
    from cutover.moves import phase_mover
    from cutover.phases.model import Phase
    from cutover.phases.transitions import advance
    from cutover.stages import phase_store

    contract, settings = _load(contract_path)
    user = approval.get("responded_by_user") or {}
    approver = str(user.get("name") or user.get("id") or "unknown")
    actor = f"airflow:{_context()['run_id']}"
    store = phase_store(settings)
    if done := already_moved_by(store, contract.name, actor, Phase(evidence["target"])):
        return done.to_dict()
    state = advance(
        store,
        contract,
        Phase(evidence["target"]),
        approved_by=approver,
        actor=actor,
        expected_version=evidence["version"],
        move=phase_mover(contract, settings),
    )
    return state.to_dict()


@terminal_fails_fast
def rollback(contract_path: str) -> dict[str, Any]:
    from cutover.moves import phase_mover
    from cutover.phases.transitions import rollback as roll_back
    from cutover.stages import phase_store

    contract, settings = _load(contract_path)
    reason = _context()["params"]["reason"]
    actor = f"airflow:{_context()['run_id']}"
    store = phase_store(settings)
    if done := already_moved_by(store, contract.name, actor):
        return done.to_dict()
    state = roll_back(
        store, contract, reason=reason, actor=actor, move=phase_mover(contract, settings)
    )
    return state.to_dict()


def already_moved_by(store: Any, contract: str, actor: str, target: Any = None) -> Any:
    """The contract's state when this DAG run already made its move (an earlier try that
    failed after the move, e.g. reporting it): a retry then changes nothing. None otherwise."""
    state = store.get(contract)
    if state.updated_by != actor or state.moving_to is not None:
        return None
    return state if target is None or state.phase == target else None
