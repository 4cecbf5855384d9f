"""`cutover prepare`: the contract's views in MySQL, its tables in DynamoDB."""

from __future__ import annotations

import argparse

from cutover.cli.common import EXIT_DRIFT, Subparsers, add_command
from cutover.settings import Settings


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


def register(sub: Subparsers) -> None:
    p = add_command(sub, "prepare", cmd_prepare, "apply views and create or check DynamoDB tables")
    p.add_argument("path")
