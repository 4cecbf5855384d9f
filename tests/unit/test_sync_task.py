"""The ``sync`` task of the ``<contract>__sync`` DAG: it calls ``run_sync`` with the
contract's connection settings and the bounded run length, fails on a report's error, and
retries transient errors only. ``cutover.sync.runner`` is replaced by a recording fake."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest

from cutover.dags import tasks
from cutover.errors import TerminalError, TransientError
from cutover.settings import PROJECT_ROOT

pytestmark = pytest.mark.unit

CONTRACT = str(PROJECT_ROOT / "contracts" / "ecommerce.json")
REPORT = {
    "lag_seconds": 1.5, "events_behind": 4, "bytes_behind": 2048, "applied_per_second": 80.0,
    "transactions": 12, "items_written": 30, "items_deleted": 2, "kept_newer": 1,
    "fallbacks": 0, "position": {"file": "binlog.000009", "offset": 777, "gtid": None},
}  # fmt: skip


class _Runner:
    def __init__(self, outcome: dict[str, Any] | Exception) -> None:
        self.outcome = outcome
        self.calls: list[tuple[Any, Any, dict[str, Any]]] = []

    def run_sync(self, contract: Any, settings: Any, **kwargs: Any) -> dict[str, Any]:
        self.calls.append((contract, settings, kwargs))
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> Any:
    def install(outcome: dict[str, Any] | Exception) -> _Runner:
        fake = _Runner(outcome)
        module = types.ModuleType("cutover.sync.runner")
        module.run_sync = fake.run_sync  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "cutover.sync.runner", module)
        return fake

    settings = object()
    monkeypatch.setattr("cutover.airflow_connections.settings_for_contract", lambda c: settings)
    install.settings = settings  # type: ignore[attr-defined]
    return install


class _Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, msg: str, *args: Any) -> None:
        self.lines.append(msg % args)


def test_the_task_runs_a_bounded_sync_with_the_contracts_settings(
    runner: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = runner(REPORT)
    logged = _Log()  # Airflow routes logging through structlog, out of caplog's reach
    monkeypatch.setattr(tasks, "log", logged)
    assert tasks.sync(CONTRACT) == REPORT
    ((contract, settings, kwargs),) = fake.calls
    assert contract.name == "ecommerce" and settings is runner.settings
    assert kwargs == {"max_seconds": tasks.SYNC_TASK_SECONDS}
    (line,) = logged.lines
    assert "12 transactions, 30 items written, 2 deleted" in line
    assert "lag 1.5 s (4 events, 2048 bytes behind) at binlog.000009:777" in line


def test_a_report_with_an_error_fails_the_run_without_a_retry(runner: Any) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    runner({**REPORT, "error": "binlog.000003 was purged"})
    with pytest.raises(AirflowFailException, match=r"binlog\.000003 was purged"):
        tasks.sync(CONTRACT)


def test_terminal_errors_fail_fast_and_transient_ones_are_left_to_retry(runner: Any) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    runner(TerminalError("binlog_format is STATEMENT; set it to ROW"))
    with pytest.raises(AirflowFailException, match="binlog_format"):
        tasks.sync(CONTRACT)
    runner(TransientError("MySQL went away; the next attempt resumes from the checkpoint"))
    with pytest.raises(TransientError):
        tasks.sync(CONTRACT)
