"""The `cutover` command. Each subcommand calls the same library function as its DAG task.

Exit codes: 0 success, 1 a check failed (validation), 2 bad input (contract, settings),
3 drift found, 4 a service could not be reached or started.

One module per command group registers its subcommands and holds their handlers; parser.py
puts them together, common.py has what they share.
"""

from __future__ import annotations

from collections.abc import Sequence

from cutover.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_DRIFT,
    EXIT_FAILED,
    EXIT_SERVICE,
    configure_logging,
    run,
)
from cutover.cli.parser import build_parser

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_DRIFT",
    "EXIT_FAILED",
    "EXIT_SERVICE",
    "build_parser",
    "main",
]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging()
    return run(args)
