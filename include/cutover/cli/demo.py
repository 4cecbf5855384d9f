"""`cutover demo`: the sample migrated end to end through Airflow."""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import suppress
from pathlib import Path
from typing import Any

from cutover.cli.common import EXIT_FAILED, Subparsers, add_command, print_states
from cutover.settings import PROJECT_ROOT, Settings

SAMPLE_CONTRACT = PROJECT_ROOT / "contracts" / "ecommerce.json"


def _fresh_demo_tables(contract: Any, settings: Settings) -> None:
    """The demo reloads the sample database, so it starts DynamoDB afresh too: the contract's
    tables of an earlier demo go (its sync burst inserted rows the new sample does not
    have), and so does the sync's checkpoint (its position is in the old binlog's history)."""
    from cutover.aws import dynamodb_client
    from cutover.binlog.checkpoint import CheckpointStore

    client = dynamodb_client(settings)
    existing = set(client.list_tables().get("TableNames", []))
    for table in contract.tables:
        physical = settings.table_prefix + table.table
        if physical in existing:
            client.delete_table(TableName=physical)
            client.get_waiter("table_not_exists").wait(TableName=physical)
    with suppress(client.exceptions.ResourceNotFoundException):
        CheckpointStore(client, settings.table_prefix).clear(contract.name)


def cmd_demo(args: argparse.Namespace) -> int:
    """Services, the sample database, then the sample contract's prepare, backfill and
    validate DAGs run through Airflow (dag.test), not around it, then a burst of writes by
    plain SQL that the sync follows from the binlog. Airflow's and Great Expectations' logs
    go to .local/logs/demo.log; the terminal shows cutover's progress lines and ends with a
    summary read from the stage reports, with the sync's figures."""
    import time

    from cutover.contract.load import load_contract
    from cutover.dags.local_run import DagRunFailed, run_dag, sync_burst
    from cutover.extract.staging import Staging
    from cutover.local.services import up
    from cutover.logs import quiet
    from cutover.sample.generator import load_sample
    from cutover.settings import LOCAL_DIR
    from cutover.summary import STAGES, demo_summary

    settings = Settings.from_env()
    states = up(settings)
    print_states(states)
    # started by cutover with a data directory: the backfill's items/s are SQLite's
    on_disk = any(s.name == "dynamodb" and "data in" in s.detail for s in states)
    report = load_sample(settings, scale=args.scale)
    print(f"sample loaded: {sum(report.rows.values()):,} rows in {report.seconds:.1f}s")
    contract = load_contract(SAMPLE_CONTRACT)
    name = contract.name
    _fresh_demo_tables(contract, settings)
    log_file = LOCAL_DIR / "logs" / "demo.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log_file.write_text("")  # this run's log only
    started = time.time()
    failed: tuple[DagRunFailed, list[str]] | None = None
    with quiet(log_file) as out:
        for stage in STAGES:
            out.say(f"running DAG {name}__{stage} through Airflow ...")
            offset = out.offset()
            try:
                run_dag(f"{name}__{stage}")
            except DagRunFailed as exc:
                failed = exc, out.error_lines(offset)
                break
        sync: dict | None = None
        if failed is None:
            out.say("writing to MySQL by plain SQL while DynamoDB follows its binlog ...")
            try:
                sync = sync_burst(contract, settings, scale=args.scale)
            except Exception as exc:  # the migration's summary is still worth showing
                sync = {"error": f"{type(exc).__name__}: {exc}"}
    print()
    for line in demo_summary(
        Staging(settings.staging),
        name,
        log_file=log_file,
        airflow_url=f"http://127.0.0.1:{os.environ.get('AIRFLOW__API__PORT') or 8080}",
        login=("admin", os.environ.get("CUTOVER_AIRFLOW_PASSWORD") or "cutover"),
        fresh_since=started,
        next_step=failed is None,
        sync=sync,
        contract_file=os.path.relpath(SAMPLE_CONTRACT, Path.cwd()),
        dynamodb_on_disk=on_disk,
    ):
        print(line)
    if sync is not None and sync.get("error"):
        return EXIT_FAILED
    if failed is not None:
        exc, error = failed
        sys.stdout.flush()
        print(f"\nFAILED: {exc}", file=sys.stderr)
        for line in error:
            print(f"  {line}", file=sys.stderr)
        print(f"the whole log: {log_file}", file=sys.stderr)
    return EXIT_FAILED if failed is not None else 0


def register(sub: Subparsers) -> None:
    p = add_command(
        sub, "demo", cmd_demo, "start services, seed the sample and migrate it end to end"
    )
    p.add_argument("--scale", type=int, default=1)
