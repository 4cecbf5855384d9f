"""The domain error types.

Every error a user can act on is a ``CutoverError`` carrying one sentence that says what is
wrong and what to do. ``TerminalError`` must not be retried (bad contract, bad row, failed
parity); ``TransientError`` may be retried with backoff (throttling, timeouts).
"""

from __future__ import annotations

from typing import Any


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


class DataDocsNotFound(TerminalError):
    """A Data Docs page or asset was asked for that does not exist or lies outside its root."""


class DriftError(TerminalError):
    """An existing DynamoDB table differs from what the contract describes."""

    def __init__(self, drifts: list[str]) -> None:
        self.drifts = drifts
        super().__init__("table drift: " + "; ".join(drifts))


class ExtractError(CutoverError):
    """Reading rows of a view from MySQL failed. The message names the view, the partition and,
    where known, the column(s) at fault. Raised as ``ExtractFailed`` (terminal: a column type or
    value the reader cannot carry, a missing view) or ``ExtractInterrupted`` (the connection was
    lost or the query timed out: a retry may succeed)."""

    def __init__(
        self,
        problem: str,
        *,
        view: str,
        partition: str | None = None,
        columns: tuple[str, ...] = (),
    ) -> None:
        self.problem = problem
        self.view = view
        self.partition = partition
        self.columns = columns
        where = f"cannot extract view `{view}`"
        if partition:
            where += f", partition {partition}"
        if columns:
            label = "column" if len(columns) == 1 else "columns"
            where += f", {label} " + ", ".join(f"`{c}`" for c in columns)
        super().__init__(f"{where}: {problem}")

    def __reduce__(self) -> tuple[Any, ...]:
        # keyword-only fields: the default pickling would call cls(message) and fail, and a
        # process deriving a partition reports its error by pickling it
        fields = (self.problem, self.view, self.partition, self.columns)
        return (_rebuild_extract_error, (type(self), *fields))

    @property
    def column(self) -> str | None:
        """The column at fault when exactly one is known."""
        return self.columns[0] if len(self.columns) == 1 else None


def _rebuild_extract_error(cls: type[ExtractError], *fields: Any) -> ExtractError:
    problem, view, partition, columns = fields
    return cls(problem, view=view, partition=partition, columns=columns)


class ExtractFailed(ExtractError, TerminalError):
    """Extracting cannot succeed until the view, its data or the settings change."""


class ExtractInterrupted(ExtractError, TransientError, ServiceError):
    """The connection to MySQL was lost or the query timed out while extracting."""
