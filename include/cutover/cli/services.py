"""`cutover up`, `down` and `status`: the local MariaDB and DynamoDB Local."""

from __future__ import annotations

import argparse

from cutover.cli.common import EXIT_SERVICE, Subparsers, add_command, print_states
from cutover.settings import Settings


def cmd_up(args: argparse.Namespace) -> int:
    from cutover.local.services import up

    print_states(up(Settings.from_env(), in_memory=args.in_memory))
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from cutover.local.services import down

    print_states(down(Settings.from_env()))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from cutover.local.services import status

    states = status(Settings.from_env())
    print_states(states)
    return 0 if all(s.running for s in states) else EXIT_SERVICE


def register(sub: Subparsers) -> None:
    p = add_command(
        sub, "up", cmd_up, "start the local MariaDB and DynamoDB Local when nothing answers"
    )
    p.add_argument(
        "--in-memory",
        action="store_true",
        help="keep DynamoDB Local's data in memory (fast, gone when it stops)",
    )
    add_command(sub, "down", cmd_down, "stop the local services that cutover started")
    add_command(sub, "status", cmd_status, "show where each service runs")
