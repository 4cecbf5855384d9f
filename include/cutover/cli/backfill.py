"""`cutover backfill`: extract, transform and load a contract's data, then hand off to the
binlog sync."""

from __future__ import annotations

import argparse
import sys

from cutover.cli.common import EXIT_BAD_INPUT, EXIT_FAILED, Subparsers, add_command
from cutover.settings import Settings


def cmd_backfill(args: argparse.Namespace) -> int:
    """Without --resume or --new: resume the latest run when it has not finished, else start
    a new one. A run whose contract or --partitions changed is refused (exit 2)."""
    from cutover.backfill.plan import RunRefused
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


def register(sub: Subparsers) -> None:
    p = add_command(sub, "backfill", cmd_backfill, "extract, transform and load a contract's data")
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
