"""What the command groups share: exit codes, parser helpers, output, error handling."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from typing import Any

from cutover.errors import ConfigError, ContractError, CutoverError, ServiceError
from cutover.settings import Settings

EXIT_FAILED, EXIT_BAD_INPUT, EXIT_DRIFT, EXIT_SERVICE = 1, 2, 3, 4

Handler = Callable[[argparse.Namespace], int]
Subparsers = argparse._SubParsersAction


def add_command(parent: Subparsers, name: str, func: Handler, help: str) -> argparse.ArgumentParser:
    p = parent.add_parser(name, help=help, description=help)
    p.set_defaults(func=func)
    return p


def add_group(parent: Subparsers, name: str, help: str) -> Subparsers:
    """A command with subcommands of its own; the one chosen lands in ``<name>_command``."""
    group = parent.add_parser(name, help=help)
    return group.add_subparsers(dest=f"{name}_command", required=True, metavar="COMMAND")


def positive(kind: type[int] | type[float]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text.replace("_", ""))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text} is not above 0")
        return value

    return parse


def print_states(states: list) -> None:
    for s in states:
        state = "running" if s.running else "stopped"
        owner = " (started by cutover)" if s.managed_by_cutover else ""
        detail = f" - {s.detail}" if s.detail else ""
        print(f"{s.name:<10} {state:<8} {s.address}{owner}{detail}")


def print_validation(report: dict[str, Any]) -> None:
    for table in report["tables"]:
        state = "passed" if table["success"] else "FAILED"
        print(f"{table['table']}: {state}")
        for entity, e in table["parity"]["entities"].items():
            print(
                f"  {entity:<12} expected {e['expected']:>8,} actual {e['actual']:>8,} "
                f"missing {e['missing']:>5} extra {e['extra']:>5} mismatched {e['mismatched']:>5}"
                f" parity {e['value_parity']:.4%}"
            )
        for d in table["parity"]["differences"][:10]:
            attrs = ", ".join(f"{a['attribute']} ({a['kind']})" for a in d["attributes"])
            print(f"  {d['kind']:<8} PK={d['PK']!r} SK={d['SK']!r} {attrs}")
        for c in table["independent_checks"]["failed"][:10]:
            print(
                f"  check {c['entity']} {c['check']}: MySQL {c['source_value']} "
                f"!= DynamoDB {c['export_value']}"
            )


def configure_logging() -> None:
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    logging.getLogger("cutover").setLevel(logging.INFO)


# MySQL client error codes meaning the server cannot be reached or the connection was lost.
_MYSQL_CONNECTION_LOST = {1053, 1927, 2002, 2003, 2005, 2006, 2013, 2026, 2055, 4031}


def as_cutover_error(exc: Exception) -> CutoverError | None:
    """A botocore or MySQLdb error that reached ``run`` as the domain error its exit code
    names; None for anything else. Only modules already imported are consulted."""
    if "botocore.exceptions" in sys.modules:
        from botocore.exceptions import BotoCoreError, ClientError

        from cutover.aws import translate_aws_error

        if (translated := translate_aws_error(exc)) is not None:
            return translated
        if isinstance(exc, ClientError):  # the fallback: one line, exit 1
            error = exc.response.get("Error", {})
            message = " ".join(str(error.get("Message", "")).split())
            return CutoverError(
                f"DynamoDB {exc.operation_name} failed: {error.get('Code', '?')}: {message}"
            )
        if isinstance(exc, BotoCoreError):
            return CutoverError("AWS: " + " ".join(str(exc).split()))
    if "MySQLdb" in sys.modules:
        import MySQLdb

        lost = isinstance(exc, MySQLdb.OperationalError) and exc.args
        if lost and exc.args[0] in _MYSQL_CONNECTION_LOST:
            try:
                where = f" at {Settings.from_env().mysql.url}"
            except CutoverError:
                where = ""
            return ServiceError(
                f"lost the connection to MySQL{where}: {exc.args[-1]}; check that it runs "
                "(`cutover status`) and run the command again"
            )
    return None


def run(args: argparse.Namespace) -> int:
    """The chosen command's handler; a domain error becomes its message and exit code."""
    try:
        try:
            return int(args.func(args))
        except CutoverError:
            raise
        except Exception as exc:
            translated = as_cutover_error(exc)
            if translated is None:
                raise
            raise translated from exc
    except ContractError as exc:
        for path, message in exc.problems:
            print(f"{path}: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_SERVICE
    except CutoverError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
