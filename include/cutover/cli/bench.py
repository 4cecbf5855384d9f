"""`cutover bench`: measure the loader, extract, routing layer and sync."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cutover.cli.common import EXIT_FAILED, Subparsers, add_command, positive
from cutover.settings import Settings


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


def register(sub: Subparsers) -> None:
    p = add_command(
        sub, "bench", cmd_bench, "measure loader and extract against their reference points"
    )
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
        type=positive(float),
        default=20.0,
        metavar="S",
        help="seconds of writes at 200 changes/s while the sync follows, for its lag (default 20)",
    )
    p.add_argument(
        "--memory-only",
        action="store_true",
        help="only the peak memory of a backfill and a validation (for millions of rows)",
    )
