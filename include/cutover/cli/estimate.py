"""`cutover estimate`: size a contract's load before running it."""

from __future__ import annotations

import argparse
import json

from cutover.cli.common import Subparsers, add_command, positive
from cutover.settings import Settings


def cmd_estimate(args: argparse.Namespace) -> int:
    """WCUs, time, client cores and on-demand cost of a contract's load, for the rows at
    hand and for 100 million and 1 billion rows in the same mix; and the cost and time of
    validating the tables by export or by Scan, at the items at hand, 100 million and 1
    billion."""
    from cutover.contract.load import load_contract
    from cutover.estimate import EstimateOptions, parse_rows, run_estimate
    from cutover.estimate.report import format_estimate

    contract = load_contract(args.contract)
    rows, default_rows = parse_rows(args.rows)
    options = EstimateOptions(
        rows=rows,
        default_rows=default_rows,
        exact=args.exact,
        offline=args.offline,
        sample=args.sample,
        capacity=args.capacity,
        on_demand=args.on_demand,
        cores=args.cores,
        cpu_us_per_item=args.cpu_us_per_item,
        **({"price_per_million_wru": args.price} if args.price is not None else {}),
        read_capacity=args.read_capacity,
        pitr_enabled=args.pitr,
        **(
            {"export_gb_per_hour": args.export_gb_per_hour}
            if args.export_gb_per_hour is not None
            else {}
        ),
    )
    settings = None if args.offline else Settings.from_env()
    estimate = run_estimate(contract, settings, options)
    print(json.dumps(estimate, indent=2) if args.json else format_estimate(estimate, args.contract))
    return 0


def register(sub: Subparsers) -> None:
    p = add_command(
        sub,
        "estimate",
        cmd_estimate,
        "size a contract's load: WCUs, time, client cores and on-demand cost, as it is and "
        "at 100 million and 1 billion rows, and its validation: export vs Scan",
    )
    p.add_argument("contract", help="path of the contract JSON")
    p.add_argument(
        "--rows",
        action="append",
        metavar="[TABLE=]N",
        help="rows of a source table, or N for every one not named; repeatable "
        "(default: counted in CUTOVER_MYSQL_URL)",
    )
    p.add_argument(
        "--exact",
        action="store_true",
        help="COUNT(*) every source table (default: information_schema's estimate from 1M rows)",
    )
    p.add_argument(
        "--offline",
        action="store_true",
        help="read no MySQL: counts from --rows, item sizes guessed from the contract's types",
    )
    p.add_argument(
        "--sample", type=positive(int), default=5000, help="rows sized per source (default 5000)"
    )
    capacity = p.add_mutually_exclusive_group()
    capacity.add_argument(
        "--capacity",
        type=positive(float),
        metavar="WCU",
        help="provisioned write capacity of each table and each GSI, in WCU/s",
    )
    capacity.add_argument(
        "--on-demand",
        type=positive(float),
        nargs="?",
        const=40_000.0,
        metavar="WRU",
        help="on-demand limit of each table and each GSI in WRU/s (default 40,000, the default "
        "table quota; also used when the contract's tables are on-demand)",
    )
    p.add_argument("--cores", type=positive(int), help="client cores (default: this machine's)")
    p.add_argument(
        "--cpu-us-per-item",
        type=positive(float),
        metavar="US",
        help="client CPU per item (default: `cutover bench`'s in .local/bench.json, else 52)",
    )
    p.add_argument(
        "--price-per-million-wru",
        dest="price",
        type=positive(float),
        metavar="USD",
        help="on-demand write price (default 0.625: us-east-1, standard table class)",
    )
    p.add_argument(
        "--read-capacity",
        type=positive(float),
        metavar="RCU",
        help="provisioned read capacity of each table in RCU/s, for the validation Scan "
        "(default: the contract's read_capacity, else on-demand's 40,000 RRU/s quota)",
    )
    p.add_argument(
        "--pitr",
        action="store_true",
        help="the tables have point-in-time recovery already: an export adds no PITR month",
    )
    p.add_argument(
        "--export-gb-per-hour",
        type=positive(float),
        metavar="GB",
        help="assumed pace of a DynamoDB export (default 100; AWS publishes none)",
    )
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
