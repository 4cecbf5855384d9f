"""`cutover sync`: DynamoDB follows MySQL's binlog."""

from __future__ import annotations

import argparse
import sys

from cutover.cli.common import EXIT_FAILED, Subparsers, add_command
from cutover.settings import Settings


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


def register(sub: Subparsers) -> None:
    p = add_command(
        sub, "sync", cmd_sync, "DynamoDB follows MySQL's binlog (until stopped, or --once)"
    )
    p.add_argument("contract", help="path of the contract JSON")
    p.add_argument("--once", action="store_true",
                   help="apply up to the binlog's end as it is now, then exit 0")  # fmt: skip
    p.add_argument("--check", action="store_true",
                   help="only check the server's binlog settings and privileges")  # fmt: skip
    p.add_argument("--max-seconds", type=float, help="stop after this long")
