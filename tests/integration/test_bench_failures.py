"""A stage the bench runs in a child process and that fails fails the bench: no figure is
printed for it, no target line claims it was met, and the command exits non-zero."""

from __future__ import annotations

from dataclasses import replace

import pytest

from cutover.bench.runner import StageFailed, _child_peak_rss, format_table
from cutover.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.mysql]


def test_a_child_stage_that_exits_non_zero_is_a_failure_with_its_error(
    settings: Settings,
) -> None:
    gone = replace(settings, mysql=settings.mysql.with_database("cutover_bench_no_such_db"))
    with pytest.raises(StageFailed) as failed:
        _child_peak_rss(gone, ["validate"])
    message = str(failed.value)
    assert message.startswith("cutover validate exited ")
    assert "exited 0" not in message
    assert "cutover_bench_no_such_db" in message  # the child's own explanation is kept


def test_a_failed_stage_prints_no_figure_and_no_met_line() -> None:
    result = {
        "rows": 2_000_000,
        "backfill_peak_rss_mib": 454.0,
        "failed": {"validate": "cutover validate exited 4 after 900 s: Scan keeps failing"},
    }
    table = format_table(result)
    assert "FAILED validate: cutover validate exited 4" in table
    assert "validate_peak_rss_mib" not in table and "parity_rows_per_s" not in table
    # the stage that ran keeps its target line
    assert any(line.startswith("met") and "backfill_peak_rss_mib <= 1024.0 (got 454.00)" in line
               for line in table.splitlines())  # fmt: skip
