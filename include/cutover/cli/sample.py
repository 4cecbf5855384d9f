"""`cutover sample`: fill a source database with generated rows."""

from __future__ import annotations

import argparse
from pathlib import Path

from cutover.cli.common import Subparsers, add_command, add_group
from cutover.settings import Settings


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


def register(sub: Subparsers) -> None:
    sample_sub = add_group(sub, "sample", "the sample e-commerce database")
    p = add_command(sample_sub, "load", cmd_sample_load, "(re)create and fill the sample database")
    p.add_argument("--scale", type=int, default=1, help="row-count multiplier (default 1)")
    p.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    p = add_command(
        sample_sub,
        "workshop",
        cmd_sample_workshop,
        "fill the DynamoDB modernizer workshop's schema (schema.sql) with generated rows",
    )
    p.add_argument("schema", help="the workshop's schema.sql")
    p.add_argument("--scale", type=int, default=1, help="row-count multiplier (default 1)")
    p.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
