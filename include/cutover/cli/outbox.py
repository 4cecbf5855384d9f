"""`cutover outbox`: the routing layer's phase-4 outbox in DynamoDB."""

from __future__ import annotations

import argparse
import json
import sys

from cutover.cli.common import EXIT_FAILED, Subparsers, add_command, add_group
from cutover.settings import Settings


def cmd_outbox_replay(args: argparse.Namespace) -> int:
    from cutover.contract.load import load_contract
    from cutover.routing.replay import replay

    result = replay(load_contract(args.contract), Settings.from_env())
    print(f"replayed: {result['replayed'] or 'nothing'}; left in DynamoDB's outbox: "
          f"{result['left']}; refused by MySQL (quarantined): {result['quarantined']}")  # fmt: skip
    if result["error"]:
        print(f"stopped: {result['error']}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def cmd_outbox_quarantine(args: argparse.Namespace) -> int:
    from cutover.contract.load import load_contract
    from cutover.routing.layer import DualDatabase
    from cutover.routing.mysql_follower import quarantined

    layer = DualDatabase(load_contract(args.contract), Settings.from_env(), shadow_rate=0.0)
    try:
        kept = quarantined(layer)
    finally:
        layer.close()
    for entry in kept:
        print(json.dumps(entry, ensure_ascii=False, default=str))
    print(f"{len(kept)} change record(s) MySQL refused in phase 4", file=sys.stderr)
    return 0


def register(sub: Subparsers) -> None:
    outbox_sub = add_group(sub, "outbox", "the routing layer's phase-4 outbox (in DynamoDB)")
    p = add_command(
        outbox_sub,
        "replay",
        cmd_outbox_replay,
        "apply the phase-4 writes MySQL missed (DynamoDB's outbox), oldest first; phases "
        "1-3 have no outbox: DynamoDB follows the binlog (`cutover sync`)",
    )
    p.add_argument("contract", help="path of the contract JSON")
    p = add_command(
        outbox_sub,
        "quarantine",
        cmd_outbox_quarantine,
        "the phase-4 changes MySQL refused (unique key, foreign key, length), one JSON "
        "line each with MySQL's reason; they stand in DynamoDB",
    )
    p.add_argument("contract", help="path of the contract JSON")
