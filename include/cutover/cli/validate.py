"""`cutover validate`: the parity suites between MySQL and DynamoDB."""

from __future__ import annotations

import argparse

from cutover.cli.common import EXIT_FAILED, Subparsers, add_command, print_validation
from cutover.settings import Settings


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
        read=args.read,
    )
    print_validation(report)
    print(f"report: {shown(report['report'])}")
    print(f"data docs: {shown(report['data_docs'])}")
    return 0 if report["success"] else EXIT_FAILED


def register(sub: Subparsers) -> None:
    p = add_command(sub, "validate", cmd_validate, "run the parity suites; exit 1 when they fail")
    p.add_argument("contract")
    p.add_argument("--sample", type=float, help="compare only this fraction of keys (0-1]")
    p.add_argument("--report", help="write the JSON report here")
    p.add_argument("--max-keys", type=int, default=50, help="differing keys listed per table")
    p.add_argument(
        "--read",
        choices=("auto", "export", "scan"),
        default="auto",
        help="read DynamoDB with a Scan, or from an export to the s3:// storage URL (needs "
        "point-in-time recovery; reads no capacity); auto: an export for tables over 10 GiB "
        "with PITR on",
    )
