"""`cutover reconcile`: find, and with --repair fix, drift between MySQL and DynamoDB."""

from __future__ import annotations

import argparse
import sys

from cutover.cli.common import EXIT_FAILED, Subparsers, add_command, print_validation
from cutover.settings import Settings


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
        print_validation(result["after"] or result["before"])
    if result["repaired"]:
        print(f"repaired: {result['repaired']}")
    if result.get("repair_held"):
        print(f"repair held: {result['repair_held']}", file=sys.stderr)
    print(f"report: {shown(result['report'])}")
    return 0 if result["success"] else EXIT_FAILED


def register(sub: Subparsers) -> None:
    p = add_command(
        sub, "reconcile", cmd_reconcile, "find drift between MySQL and DynamoDB; --repair fixes it"
    )
    p.add_argument("contract")
    p.add_argument("--repair", action="store_true", help="re-put, delete, then validate again")
    p.add_argument("--sample", type=float, help="compare only this fraction of keys (0-1]")
