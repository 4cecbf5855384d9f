"""The `cutover` argument parser, put together from the command groups."""

from __future__ import annotations

import argparse

from cutover.cli import (
    backfill,
    bench,
    contract,
    demo,
    estimate,
    outbox,
    phase,
    prepare,
    reconcile,
    sample,
    services,
    sync,
    traffic,
    validate,
)

# in the order `cutover --help` lists them
GROUPS = (
    services,
    sample,
    contract,
    prepare,
    backfill,
    validate,
    sync,
    outbox,
    reconcile,
    traffic,
    phase,
    estimate,
    bench,
    demo,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cutover",
        description="Contract-driven, zero-downtime migration from MySQL to DynamoDB.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.register(sub)
    return parser
