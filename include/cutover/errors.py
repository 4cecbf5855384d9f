"""The domain error types.

Every error a user can act on is a ``CutoverError`` carrying one sentence that says what is
wrong and what to do. ``TerminalError`` must not be retried (bad contract, bad row, failed
parity); ``TransientError`` may be retried with backoff (throttling, timeouts).
"""

from __future__ import annotations


class CutoverError(Exception):
    """Base of every error cutover raises on purpose."""


class TerminalError(CutoverError):
    """Retrying cannot help: the input or the state is wrong."""


class TransientError(CutoverError):
    """A retry with backoff may succeed."""


class ContractError(TerminalError):
    """The contract cannot work; ``problems`` lists each as (json_path, message)."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        lines = "; ".join(f"{path}: {msg}" for path, msg in problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        super().__init__(f"contract is invalid: {lines}{more}")


class ConfigError(TerminalError):
    """A setting (environment variable, connection URL) is missing or malformed."""


class ServiceError(CutoverError):
    """A local service could not be installed, started or reached."""


class DriftError(TerminalError):
    """An existing DynamoDB table differs from what the contract describes."""

    def __init__(self, drifts: list[str]) -> None:
        self.drifts = drifts
        super().__init__("table drift: " + "; ".join(drifts))
