"""`cutover contract`: check, repair and inspect migration contracts."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cutover.cli.common import EXIT_BAD_INPUT, Subparsers, add_command, add_group
from cutover.settings import Settings


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


def register(sub: Subparsers) -> None:
    contract_sub = add_group(sub, "contract", "check and inspect migration contracts")
    p = add_command(
        contract_sub, "lint", cmd_contract_lint, "check a contract; exit 2 listing each problem"
    )
    p.add_argument("path")
    p.add_argument(
        "--db",
        action="store_true",
        help="also check tables, columns and types against CUTOVER_MYSQL_URL",
    )
    p = add_command(
        contract_sub,
        "fix",
        cmd_contract_fix,
        "write the contract with the faults cutover can repair rewritten; list the rest",
    )
    p.add_argument("path")
    p.add_argument("-o", "--output", required=True, help="where to write the fixed contract")
    p = add_command(
        contract_sub, "views", cmd_contract_views, "print the SQL of the contract's views"
    )
    p.add_argument("path")
    p.add_argument("--dialect", choices=["mariadb", "mysql"], default="mariadb")
