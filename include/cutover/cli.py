"""The `cutover` command. Each subcommand calls the same library function as its DAG task.

Exit codes: 0 success, 1 a check failed (validation), 2 bad input (contract, settings),
3 drift found, 4 a service could not be reached or started.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any

from cutover.errors import ConfigError, ContractError, CutoverError, ServiceError
from cutover.settings import PROJECT_ROOT, Settings

EXIT_FAILED, EXIT_BAD_INPUT, EXIT_DRIFT, EXIT_SERVICE = 1, 2, 3, 4
SAMPLE_CONTRACT = PROJECT_ROOT / "contracts" / "ecommerce.json"


def _print_states(states: list) -> None:
    for s in states:
        state = "running" if s.running else "stopped"
        owner = " (started by cutover)" if s.managed_by_cutover else ""
        detail = f" - {s.detail}" if s.detail else ""
        print(f"{s.name:<10} {state:<8} {s.address}{owner}{detail}")


def cmd_up(args: argparse.Namespace) -> int:
    from cutover.local.services import up

    _print_states(up(Settings.from_env(), in_memory=args.in_memory))
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from cutover.local.services import down

    _print_states(down(Settings.from_env()))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from cutover.local.services import status

    states = status(Settings.from_env())
    _print_states(states)
    return 0 if all(s.running for s in states) else EXIT_SERVICE


def cmd_sample_load(args: argparse.Namespace) -> int:
    from cutover.sample.generator import load_sample

    settings = Settings.from_env()
    report = load_sample(settings, scale=args.scale, seed=args.seed)
    for table, rows in report.rows.items():
        print(f"{table:<16} {rows:>10,} rows")
    print(f"loaded {settings.mysql.url} at scale {args.scale} in {report.seconds:.1f}s")
    return 0


def cmd_sample_workshop(args: argparse.Namespace) -> int:
    """Rows of our own for the workshop's schema.sql (it ships none), in CUTOVER_MYSQL_URL's
    database, created when missing."""
    from cutover.db import connect, query, quote_ident
    from cutover.sample.workshop import load

    settings = Settings.from_env()
    admin = connect(settings.mysql, database=False)
    try:
        query(
            admin,
            f"CREATE DATABASE IF NOT EXISTS {quote_ident(settings.mysql.database)} "
            "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
        )
    finally:
        admin.close()
    counts = load(settings, Path(args.schema), scale=args.scale, seed=args.seed)
    for table, rows in counts.items():
        print(f"{table:<16} {rows:>10,} rows")
    print(f"loaded {settings.mysql.url} from {args.schema} at scale {args.scale}")
    return 0


def cmd_contract_lint(args: argparse.Namespace) -> int:
    from cutover.contract.lint import lint_file

    schema = None
    if args.db:
        from cutover.contract.source_schema import SourceSchema
        from cutover.db import connect

        conn = connect(Settings.from_env().mysql)
        try:
            schema = SourceSchema.from_connection(conn)
        finally:
            conn.close()
    _, problems = lint_file(args.path, schema)
    for problem in problems:
        print(problem)
    errors = sum(1 for p in problems if p.severity == "error")
    if errors:
        print(f"{args.path}: {errors} error(s)", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(
        f"{args.path}: valid" + (" against the source database" if args.db else ""), file=sys.stderr
    )
    return 0


def cmd_contract_fix(args: argparse.Namespace) -> int:
    """Write the contract with every fault cutover knows how to repair rewritten; list what
    is left for a person."""
    import json

    from cutover.contract.fix import apply_fixes, find_fixes
    from cutover.contract.lint import lint
    from cutover.contract.load import load_contract, parse_contract, read_json

    contract = load_contract(args.path)
    data = read_json(args.path)
    fixes = find_fixes(contract, data)
    fixed = apply_fixes(data, fixes)
    Path(args.output).write_text(json.dumps(fixed, indent=2, ensure_ascii=False) + "\n")
    for fix in fixes:
        print(f"fixed {fix.path}: {fix.why}\n  now {fix.describe()}")
    left = [p for p in lint(parse_contract(fixed, contract.name)) if p.severity == "error"]
    for problem in left:
        print(f"left to you: {problem}")
    print(
        f"{args.output}: {len(fixes)} fix(es) written, {len(left)} error(s) left",
        file=sys.stderr,
    )
    return EXIT_BAD_INPUT if left else 0


def cmd_contract_views(args: argparse.Namespace) -> int:
    from cutover.contract.load import load_contract
    from cutover.contract.views import all_view_ddl

    contract = load_contract(args.path)
    for _, ddl in all_view_ddl(contract, args.dialect):
        print(ddl.rstrip().rstrip(";") + ";\n")
    return 0


def _prepare(path: str) -> tuple[int, str]:
    from cutover.contract.load import load_contract
    from cutover.extract.staging import shown
    from cutover.prepare import PrepareReport
    from cutover.stages import run_prepare

    contract = load_contract(path)
    report = run_prepare(contract, Settings.from_env())
    for line in PrepareReport.lines_of(report):
        print(line)
    return (EXIT_DRIFT if report["drifts"] else 0), shown(report["report"])


def cmd_prepare(args: argparse.Namespace) -> int:
    code, report_path = _prepare(args.path)
    print(f"report: {report_path}")
    return code


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
    _print_states(states)
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


def cmd_backfill(args: argparse.Namespace) -> int:
    """Without --resume or --new: resume the latest run when it has not finished, else start
    a new one. A run whose contract or --partitions changed is refused (exit 2)."""
    from cutover.backfill.run import RunRefused
    from cutover.contract.load import load_contract
    from cutover.extract.staging import shown
    from cutover.stages import run_backfill

    contract = load_contract(args.contract)
    try:
        manifest = run_backfill(
            contract,
            Settings.from_env(),
            partitions=args.partitions,
            workers=args.workers,
            rate=args.rate,
            rate_share=args.rate_share,
            run_id=args.resume,
            fresh=args.new,
        )
    except RunRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    for entity, count in manifest["items_per_entity"].items():
        print(f"{entity:<28} {count:>10,} items")
    load = manifest["load"]
    print(
        f"run {manifest['run_id']}: {manifest['items_loaded']:,} items loaded, "
        f"{load['items_per_s']:,.0f} items/s, {load['retried_items']} retried, "
        f"{load['throttles']} throttled"
    )
    print(f"quarantined: {manifest['quarantined']} {manifest['quarantine_reasons']}")
    handed = manifest.get("handoff") or {}
    if handed.get("unavailable"):
        print(f"handoff: {handed['unavailable']}")
    elif handed:
        print(
            f"handoff: {handed['transactions']:,} transactions made during the backfill applied "
            f"({handed['items_written']:,} items written, {handed['items_deleted']:,} deleted)"
        )
    print(f"report: {shown(manifest['report'])}")
    if not manifest["gate"]["passed"]:
        print(
            f"gate failed: {manifest['quarantined']} quarantined rows, the contract allows "
            f"{manifest['gate']['max_quarantined_rows']} (see {manifest['quarantine_files']})",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from cutover.bench.runner import format_table, run_bench, run_memory_bench

    if args.memory_only:
        result = run_memory_bench(Settings.from_env(), args.rows, workers=args.workers)
    else:
        result = run_bench(
            Settings.from_env(),
            args.rows,
            workers=args.workers,
            backfill=not args.no_backfill,
            routing_requests=args.routing_requests,
            sync_changes=args.sync_changes,
            sync_seconds=args.sync_seconds,
        )
    print(format_table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        print(f"json: {args.json}")
    return EXIT_FAILED if result.get("failed") else 0


def _print_validation(report: dict) -> None:
    for table in report["tables"]:
        state = "passed" if table["success"] else "FAILED"
        print(f"{table['table']}: {state}")
        for entity, e in table["parity"]["entities"].items():
            print(
                f"  {entity:<12} expected {e['expected']:>8,} actual {e['actual']:>8,} "
                f"missing {e['missing']:>5} extra {e['extra']:>5} mismatched {e['mismatched']:>5}"
                f" parity {e['value_parity']:.4%}"
            )
        for d in table["parity"]["differences"][:10]:
            attrs = ", ".join(f"{a['attribute']} ({a['kind']})" for a in d["attributes"])
            print(f"  {d['kind']:<8} PK={d['PK']!r} SK={d['SK']!r} {attrs}")
        for c in table["independent_checks"]["failed"][:10]:
            print(
                f"  check {c['entity']} {c['check']}: MySQL {c['source_value']} "
                f"!= DynamoDB {c['export_value']}"
            )


def cmd_validate(args: argparse.Namespace) -> int:
    from cutover.contract.load import load_contract
    from cutover.extract.staging import shown
    from cutover.stages import run_validate

    contract = load_contract(args.contract)
    report = run_validate(
        contract,
        Settings.from_env(),
        report_path=args.report,
        sample=args.sample,
        max_keys=args.max_keys,
    )
    _print_validation(report)
    print(f"report: {shown(report['report'])}")
    print(f"data docs: {shown(report['data_docs'])}")
    return 0 if report["success"] else EXIT_FAILED


def cmd_reconcile(args: argparse.Namespace) -> int:
    from cutover.contract.load import load_contract
    from cutover.extract.staging import shown
    from cutover.stages import run_reconcile

    contract = load_contract(args.contract)
    result = run_reconcile(contract, Settings.from_env(), repair=args.repair, sample=args.sample)
    print(f"phase {result['phase']}: source of truth {result['source_of_truth']}")
    if result["replay"]:
        print(f"outbox replayed: {result['replay']['replayed']}, left {result['replay']['left']}")
    if result.get("skipped"):
        print(result["skipped"])
    else:
        _print_validation(result["after"] or result["before"])
    if result["repaired"]:
        print(f"repaired: {result['repaired']}")
    if result.get("repair_held"):
        print(f"repair held: {result['repair_held']}", file=sys.stderr)
    print(f"report: {shown(result['report'])}")
    return 0 if result["success"] else EXIT_FAILED


def cmd_sync(args: argparse.Namespace) -> int:
    """DynamoDB follows the binlog: until stopped (Ctrl-C, SIGTERM), ``--once`` up to the
    binlog's end as it was at the start, ``--check`` the preflight alone."""
    import signal
    import threading

    from cutover.contract.load import load_contract
    from cutover.sync.mapper import DependencyIndex
    from cutover.sync.preflight import preflight

    contract = load_contract(args.contract)
    settings = Settings.from_env()
    index = DependencyIndex(contract)
    problems = preflight(settings.mysql, sorted(index.tables()))
    for problem in problems:
        print(f"preflight: {problem.line}", file=sys.stderr)
    for reader in index.fallbacks():
        print(f"note: {reader.entity.name} is derived again in full when {reader.table} "
              f"changes ({reader.why})", file=sys.stderr)  # fmt: skip
    if args.check:
        if not problems:
            print(f"preflight: the binlog of {settings.mysql.url} has what the sync needs")
        return EXIT_FAILED if problems else 0
    if problems:
        return EXIT_FAILED
    from cutover.sync.runner import run_sync

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    report = run_sync(contract, settings, once=args.once, max_seconds=args.max_seconds,
                      stop=stop)  # fmt: skip
    if report.get("stood_down"):
        print(f"sync: {report['stood_down']}", file=sys.stderr)
        return EXIT_FAILED
    position = report["position"] or {}
    print(
        f"sync {contract.name}: {report['transactions']:,} transactions, "
        f"{report['items_written']:,} items written, {report['items_deleted']:,} deleted, "
        f"{report['kept_newer']:,} kept newer, {report['rejected']:,} rejected, "
        f"{report['fallbacks']:,} full re-derivations; "
        f"at {position.get('file')}:{position.get('offset')}"
        + (f" (GTID {position['gtid']})" if position.get("gtid") else "")
        + f"; lag {report['lag_seconds']:.1f} s, {report['events_behind']:,} transactions "
        f"and {report['bytes_behind']:,} bytes behind"
    )
    return 0


def cmd_outbox_replay(args: argparse.Namespace) -> int:
    from cutover.contract.load import load_contract
    from cutover.routing.replay import replay

    result = replay(load_contract(args.contract), Settings.from_env())
    print(f"replayed: {result['replayed'] or 'nothing'}; left in DynamoDB's outbox: "
          f"{result['left']}; refused by MySQL (quarantined): {result['quarantined']}")  # fmt: skip
    if result["error"]:
        print(f"stopped: {result['error']}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def cmd_outbox_quarantine(args: argparse.Namespace) -> int:
    from cutover.contract.load import load_contract
    from cutover.routing.layer import DualDatabase
    from cutover.routing.mysql_follower import quarantined

    layer = DualDatabase(load_contract(args.contract), Settings.from_env(), shadow_rate=0.0)
    try:
        kept = quarantined(layer)
    finally:
        layer.close()
    for entry in kept:
        print(json.dumps(entry, ensure_ascii=False, default=str))
    print(f"{len(kept)} change record(s) MySQL refused in phase 4", file=sys.stderr)
    return 0


def cmd_traffic(args: argparse.Namespace) -> int:
    """The sample application's traffic through the routing layer; Ctrl-C stops it cleanly."""
    import signal
    import threading

    from cutover.contract.load import load_contract
    from cutover.routing.layer import DualDatabase
    from cutover.routing.traffic import progress_line, run_traffic, summary_lines

    contract = load_contract(args.contract)
    # one warning per request while a store is down would bury the progress lines: the
    # layer's own log goes to a file, the summary counts what it says
    from cutover.settings import LOCAL_DIR

    log_file = LOCAL_DIR / "logs" / contract.name / "traffic.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_file)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    for name in ("cutover.routing", "cutover.phases"):
        logging.getLogger(name).addHandler(handler)
        logging.getLogger(name).propagate = False
    print(f"layer log: {log_file}", file=sys.stderr)
    layer = DualDatabase(contract, Settings.from_env(), shadow_rate=args.shadow_rate)
    stop = threading.Event()

    def interrupted(signum: int, frame: object) -> None:
        print("stopping (Ctrl-C again to abort) ...", file=sys.stderr, flush=True)
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = signal.signal(signal.SIGINT, interrupted)
    try:
        summary = run_traffic(
            layer,
            rate=args.rate,
            duration=args.duration,
            threads=args.threads,
            seed=args.seed,
            log_path=Path(args.log) if args.log else None,
            stop=stop,
            progress=lambda p: print(progress_line(p), file=sys.stderr, flush=True),
        )
    finally:
        signal.signal(signal.SIGINT, previous)
        layer.close()
    for line in summary_lines(summary):
        print(line)
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2, default=str) + "\n")
        print(f"json: {args.json}")
    return 0 if summary["failed"] == 0 else EXIT_FAILED


def _actor() -> str:
    import getpass

    return os.environ.get("CUTOVER_ACTOR") or getpass.getuser()


def cmd_phase(args: argparse.Namespace) -> int:
    from cutover.contract.load import load_contract
    from cutover.moves import phase_mover, unfence
    from cutover.phases.model import FLAGS, Phase
    from cutover.phases.transitions import GateRefused, advance, check_gate, rollback
    from cutover.stages import phase_store

    contract = load_contract(args.contract)
    settings = Settings.from_env()
    store = phase_store(settings)
    if args.phase_command == "show":
        state = store.get(contract.name)
        print(
            json.dumps(
                {**state.to_dict(), "evidence": store.evidence(contract.name)},
                indent=2,
                default=str,
            )
        )
        return 0
    if args.phase_command == "unfence":
        state = unfence(contract, settings, actor=_actor(), reason=args.reason)
        print(f"{contract.name}: at {state.phase.value} {state.phase.slug}, epoch "
              f"{state.version}, no move in progress; writes are open")  # fmt: skip
        return 0
    mover = phase_mover(contract, settings, timeout_seconds=args.timeout)
    if args.phase_command == "rollback":
        state = rollback(store, contract, reason=args.reason, actor=_actor(), move=mover)
        print(f"{contract.name}: rolled back to {state.phase.value} {state.phase.slug} "
              f"(writes fenced {state.fenced_seconds} s)")  # fmt: skip
        return 0
    target = Phase.parse(args.to) if args.to else Phase(store.get(contract.name).phase + 1)
    if not args.approved_by:
        _, decision = check_gate(store, contract, target)
        print(decision.summary())
        print(
            "not moved: an advance needs a person's approval (the phase_gate DAG asks for it;"
            " or pass --approved-by NAME to record who approved it)",
            file=sys.stderr,
        )
        return EXIT_FAILED
    try:
        state = advance(store, contract, target, approved_by=args.approved_by, actor=_actor(),
                        move=mover)  # fmt: skip
    except GateRefused as exc:
        print(exc.decision.summary(), file=sys.stderr)
        return EXIT_FAILED
    print(
        f"{contract.name}: now at {state.phase.value} {state.phase.slug} "
        f"(approved by {args.approved_by}) flags {FLAGS[state.phase].to_dict()}; writes "
        f"fenced {state.fenced_seconds} s"
    )
    return 0


def _positive(kind: type[int] | type[float]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text.replace("_", ""))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text} is not above 0")
        return value

    return parse


def cmd_estimate(args: argparse.Namespace) -> int:
    """WCUs, time, client cores and on-demand cost of a contract's load, for the rows at
    hand and for 100 million and 1 billion rows in the same mix."""
    from cutover.contract.load import load_contract
    from cutover.estimate import EstimateOptions, parse_rows, run_estimate
    from cutover.estimate.report import format_estimate

    contract = load_contract(args.contract)
    rows, default_rows = parse_rows(args.rows)
    options = EstimateOptions(
        rows=rows,
        default_rows=default_rows,
        exact=args.exact,
        offline=args.offline,
        sample=args.sample,
        capacity=args.capacity,
        on_demand=args.on_demand,
        cores=args.cores,
        cpu_us_per_item=args.cpu_us_per_item,
        **({"price_per_million_wru": args.price} if args.price is not None else {}),
    )
    settings = None if args.offline else Settings.from_env()
    estimate = run_estimate(contract, settings, options)
    print(json.dumps(estimate, indent=2) if args.json else format_estimate(estimate, args.contract))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cutover",
        description="Contract-driven, zero-downtime migration from MySQL to DynamoDB.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        name: str,
        func: Callable[[argparse.Namespace], int],
        help: str,
        parent: argparse._SubParsersAction = sub,
    ) -> argparse.ArgumentParser:
        p = parent.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        return p

    p = add("up", cmd_up, "start the local MariaDB and DynamoDB Local when nothing answers")
    p.add_argument(
        "--in-memory",
        action="store_true",
        help="keep DynamoDB Local's data in memory (fast, gone when it stops)",
    )
    add("down", cmd_down, "stop the local services that cutover started")
    add("status", cmd_status, "show where each service runs")

    sample = sub.add_parser("sample", help="the sample e-commerce database")
    sample_sub = sample.add_subparsers(dest="sample_command", required=True, metavar="COMMAND")
    p = add("load", cmd_sample_load, "(re)create and fill the sample database", sample_sub)
    p.add_argument("--scale", type=int, default=1, help="row-count multiplier (default 1)")
    p.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    p = add(
        "workshop",
        cmd_sample_workshop,
        "fill the DynamoDB modernizer workshop's schema (schema.sql) with generated rows",
        sample_sub,
    )
    p.add_argument("schema", help="the workshop's schema.sql")
    p.add_argument("--scale", type=int, default=1, help="row-count multiplier (default 1)")
    p.add_argument("--seed", type=int, default=7, help="random seed (default 7)")

    contract = sub.add_parser("contract", help="check and inspect migration contracts")
    contract_sub = contract.add_subparsers(
        dest="contract_command", required=True, metavar="COMMAND"
    )
    p = add(
        "lint", cmd_contract_lint, "check a contract; exit 2 listing each problem", contract_sub
    )
    p.add_argument("path")
    p.add_argument(
        "--db",
        action="store_true",
        help="also check tables, columns and types against CUTOVER_MYSQL_URL",
    )
    p = add(
        "fix",
        cmd_contract_fix,
        "write the contract with the faults cutover can repair rewritten; list the rest",
        contract_sub,
    )
    p.add_argument("path")
    p.add_argument("-o", "--output", required=True, help="where to write the fixed contract")
    p = add("views", cmd_contract_views, "print the SQL of the contract's views", contract_sub)
    p.add_argument("path")
    p.add_argument("--dialect", choices=["mariadb", "mysql"], default="mariadb")

    p = add("prepare", cmd_prepare, "apply views and create or check DynamoDB tables")
    p.add_argument("path")

    p = add("backfill", cmd_backfill, "extract, transform and load a contract's data")
    p.add_argument("contract", help="path of the contract JSON")
    p.add_argument("--partitions", type=int, help="partitions per source (default: contract)")
    p.add_argument("--workers", type=int, default=4, help="parallel load workers (default 4)")
    p.add_argument("--rate", type=float, help="limit the whole run to this many items/s")
    p.add_argument(
        "--rate-share",
        type=float,
        help="limit the whole run to this share (0-1] of each table's (and GSI's) write "
        "capacity: provisioned WCU, or an on-demand table's maximum write rate",
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--resume",
        "--run-id",
        dest="resume",
        metavar="RUN_ID",
        help="resume this unfinished run (refused when the contract or --partitions changed "
        "since it was planned); default: the latest run when it has not finished, else a new one",
    )
    which.add_argument(
        "--new",
        "--fresh",
        dest="new",
        action="store_true",
        help="start a new run, planned anew, whatever runs exist",
    )

    p = add("validate", cmd_validate, "run the parity suites; exit 1 when they fail")
    p.add_argument("contract")
    p.add_argument("--sample", type=float, help="compare only this fraction of keys (0-1]")
    p.add_argument("--report", help="write the JSON report here")
    p.add_argument("--max-keys", type=int, default=50, help="differing keys listed per table")

    p = add("sync", cmd_sync, "DynamoDB follows MySQL's binlog (until stopped, or --once)")
    p.add_argument("contract", help="path of the contract JSON")
    p.add_argument("--once", action="store_true",
                   help="apply up to the binlog's end as it is now, then exit 0")  # fmt: skip
    p.add_argument("--check", action="store_true",
                   help="only check the server's binlog settings and privileges")  # fmt: skip
    p.add_argument("--max-seconds", type=float, help="stop after this long")

    outbox = sub.add_parser("outbox", help="the routing layer's phase-4 outbox (in DynamoDB)")
    outbox_sub = outbox.add_subparsers(dest="outbox_command", required=True, metavar="COMMAND")
    p = add("replay", cmd_outbox_replay,
            "apply the phase-4 writes MySQL missed (DynamoDB's outbox), oldest first; phases "
            "1-3 have no outbox: DynamoDB follows the binlog (`cutover sync`)",
            outbox_sub)  # fmt: skip
    p.add_argument("contract", help="path of the contract JSON")
    p = add("quarantine", cmd_outbox_quarantine,
            "the phase-4 changes MySQL refused (unique key, foreign key, length), one JSON "
            "line each with MySQL's reason; they stand in DynamoDB", outbox_sub)  # fmt: skip
    p.add_argument("contract", help="path of the contract JSON")
    p = add("reconcile", cmd_reconcile, "find drift between MySQL and DynamoDB; --repair fixes it")
    p.add_argument("contract")
    p.add_argument("--repair", action="store_true", help="re-put, delete, then validate again")
    p.add_argument("--sample", type=float, help="compare only this fraction of keys (0-1]")

    p = add("traffic", cmd_traffic, "act as the sample application through the routing layer")
    p.add_argument("contract", help="path of the contract JSON")
    p.add_argument("--rate", type=float, required=True, help="requests per second, all threads")
    p.add_argument("--duration", type=float, required=True, help="seconds to run")
    p.add_argument("--threads", type=int, default=4, help="application threads (default 4)")
    p.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    p.add_argument(
        "--shadow-rate",
        type=float,
        default=1.0,
        help="share of reads compared with the other store in phases 3-4 (default 1)",
    )
    p.add_argument("--log", help="write one JSON line per committed write and read answer here")
    p.add_argument("--json", help="also write the summary to this JSON file")

    phase = sub.add_parser("phase", help="show or move a contract's migration phase")
    phase_sub = phase.add_subparsers(dest="phase_command", required=True, metavar="COMMAND")
    p = add("show", cmd_phase, "the current phase, its flags and the recorded evidence", phase_sub)
    p.add_argument("contract")
    p = add(
        "advance", cmd_phase, "move one phase forward when the evidence meets the gate", phase_sub
    )
    p.add_argument("contract")
    p.add_argument("--to", help="target phase (number or name); default: the next one")
    p.add_argument("--approved-by", help="record NAME as the approver (no approval step)")
    p.add_argument("--timeout", type=_positive(float), default=60.0,
                   help="seconds the move may wait for writers and the follower store "
                   "(default 60); the phase stays when they run out")  # fmt: skip
    p = add("rollback", cmd_phase, "move one phase back; no gate, a reason is required", phase_sub)
    p.add_argument("contract")
    p.add_argument("--reason", required=True)
    p.add_argument("--timeout", type=_positive(float), default=60.0,
                   help="seconds the move may wait for writers and the follower store "
                   "(default 60)")  # fmt: skip
    p = add("unfence", cmd_phase, "clear the fence a failed or killed phase move left: abort "
            "the move in progress and open writes at the current phase", phase_sub)  # fmt: skip
    p.add_argument("contract")
    p.add_argument("--reason", required=True)

    p = add(
        "estimate",
        cmd_estimate,
        "size a contract's load: WCUs, time, client cores and on-demand cost, as it is and "
        "at 100 million and 1 billion rows",
    )
    p.add_argument("contract", help="path of the contract JSON")
    p.add_argument(
        "--rows",
        action="append",
        metavar="[TABLE=]N",
        help="rows of a source table, or N for every one not named; repeatable "
        "(default: counted in CUTOVER_MYSQL_URL)",
    )
    p.add_argument(
        "--exact",
        action="store_true",
        help="COUNT(*) every source table (default: information_schema's estimate from 1M rows)",
    )
    p.add_argument(
        "--offline",
        action="store_true",
        help="read no MySQL: counts from --rows, item sizes guessed from the contract's types",
    )
    p.add_argument(
        "--sample", type=_positive(int), default=5000, help="rows sized per source (default 5000)"
    )
    capacity = p.add_mutually_exclusive_group()
    capacity.add_argument(
        "--capacity",
        type=_positive(float),
        metavar="WCU",
        help="provisioned write capacity of each table and each GSI, in WCU/s",
    )
    capacity.add_argument(
        "--on-demand",
        type=_positive(float),
        nargs="?",
        const=40_000.0,
        metavar="WRU",
        help="on-demand limit of each table and each GSI in WRU/s (default 40,000, the default "
        "table quota; also used when the contract's tables are on-demand)",
    )
    p.add_argument("--cores", type=_positive(int), help="client cores (default: this machine's)")
    p.add_argument(
        "--cpu-us-per-item",
        type=_positive(float),
        metavar="US",
        help="client CPU per item (default: `cutover bench`'s in .local/bench.json, else 52)",
    )
    p.add_argument(
        "--price-per-million-wru",
        dest="price",
        type=_positive(float),
        metavar="USD",
        help="on-demand write price (default 0.625: us-east-1, standard table class)",
    )
    p.add_argument("--json", action="store_true", help="print the figures as JSON")

    p = add("bench", cmd_bench, "measure loader and extract against their reference points")
    p.add_argument("--rows", type=int, default=200_000, help="synthetic rows (default 200k)")
    p.add_argument("--workers", type=int, default=6, help="load threads (default 6)")
    p.add_argument("--json", help="also write the figures to this JSON file")
    p.add_argument("--no-backfill", action="store_true", help="skip the backfill memory run")
    p.add_argument(
        "--routing-requests",
        type=int,
        default=300,
        metavar="N",
        help="sequential requests per routing-layer case (default 300; 0 skips the routing line)",
    )
    p.add_argument(
        "--sync-changes",
        type=int,
        default=20_000,
        metavar="N",
        help="row changes of the sync's backlog, read then applied (default 20,000; 0 skips "
        "the sync line)",
    )
    p.add_argument(
        "--sync-seconds",
        type=_positive(float),
        default=20.0,
        metavar="S",
        help="seconds of writes at 200 changes/s while the sync follows, for its lag (default 20)",
    )
    p.add_argument(
        "--memory-only",
        action="store_true",
        help="only the peak memory of a backfill and a validation (for millions of rows)",
    )

    p = add("demo", cmd_demo, "start services, seed the sample and migrate it end to end")
    p.add_argument("--scale", type=int, default=1)
    return parser


# MySQL client error codes meaning the server cannot be reached or the connection was lost.
_MYSQL_CONNECTION_LOST = {1053, 1927, 2002, 2003, 2005, 2006, 2013, 2026, 2055, 4031}


def _as_cutover_error(exc: Exception) -> CutoverError | None:
    """A botocore or MySQLdb error that reached ``main`` as the domain error its exit code
    names; None for anything else. Only modules already imported are consulted."""
    if "botocore.exceptions" in sys.modules:
        from botocore.exceptions import BotoCoreError, ClientError

        from cutover.aws import translate_aws_error

        if (translated := translate_aws_error(exc)) is not None:
            return translated
        if isinstance(exc, ClientError):  # the fallback: one line, exit 1
            error = exc.response.get("Error", {})
            message = " ".join(str(error.get("Message", "")).split())
            return CutoverError(
                f"DynamoDB {exc.operation_name} failed: {error.get('Code', '?')}: {message}"
            )
        if isinstance(exc, BotoCoreError):
            return CutoverError("AWS: " + " ".join(str(exc).split()))
    if "MySQLdb" in sys.modules:
        import MySQLdb

        lost = isinstance(exc, MySQLdb.OperationalError) and exc.args
        if lost and exc.args[0] in _MYSQL_CONNECTION_LOST:
            try:
                where = f" at {Settings.from_env().mysql.url}"
            except CutoverError:
                where = ""
            return ServiceError(
                f"lost the connection to MySQL{where}: {exc.args[-1]}; check that it runs "
                "(`cutover status`) and run the command again"
            )
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    logging.getLogger("cutover").setLevel(logging.INFO)
    try:
        try:
            return int(args.func(args))
        except CutoverError:
            raise
        except Exception as exc:
            translated = _as_cutover_error(exc)
            if translated is None:
                raise
            raise translated from exc
    except ContractError as exc:
        for path, message in exc.problems:
            print(f"{path}: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_SERVICE
    except CutoverError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
