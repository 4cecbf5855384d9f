"""`cutover validate`: the parity suites between MySQL and DynamoDB."""

from __future__ import annotations

import argparse
import json
from typing import Any

from cutover.cli.common import EXIT_FAILED, Subparsers, add_command, print_validation
from cutover.settings import Settings


def cmd_validate(args: argparse.Namespace) -> int:
    from cutover.contract.load import load_contract
    from cutover.extract.staging import shown
    from cutover.stages import run_validate

    contract = load_contract(args.contract)
    if args.changed:
        return _changed(contract)
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


def _changed(contract: Any) -> int:
    from cutover.extract.staging import shown
    from cutover.stages import run_changed_keys

    result = run_changed_keys(contract, Settings.from_env())
    differ = result["missing"] + result["extra"] + result["mismatched"]
    print(f"changed-key parity {'PASSED' if result['success'] else 'FAILED'}: "
          f"{result['rows_changed']:,} rows changed since the last check, "
          f"{result['items_compared']:,} items compared ({result['reads']:,} point reads), "
          f"{differ} differ")  # fmt: skip
    for d in result["differences"]:
        attrs = ", ".join(a["attribute"] for a in d["attributes"])
        where = f"  {d['table']} {d['kind']} {json.dumps(d['key'])}"
        print(where + (f": {attrs}" if attrs else ""))
    if result["not_covered"]:
        print(f"not covered (the next full validation covers them): "
              f"{', '.join(result['not_covered'])}")  # fmt: skip
    print(f"report: {shown(result['report'])}")
    return 0 if result["success"] else EXIT_FAILED


def register(sub: Subparsers) -> None:
    p = add_command(sub, "validate", cmd_validate, "run the parity suites; exit 1 when they fail")
    p.add_argument("contract")
    p.add_argument("--sample", type=float, help="compare only this fraction of keys (0-1]")
    p.add_argument("--report", help="write the JSON report here")
    p.add_argument("--max-keys", type=int, default=50, help="differing keys listed per table")
    p.add_argument(
        "--changed",
        action="store_true",
        help="changed-key parity: compare only the items whose rows changed since the last "
        "validation (binlog), by point reads",
    )
    p.add_argument(
        "--read",
        choices=("auto", "export", "scan"),
        default="auto",
        help="read DynamoDB with a Scan, or from an export to the s3:// storage URL (needs "
        "point-in-time recovery; reads no capacity); auto: an export for tables over 10 GiB "
        "with PITR on",
    )
