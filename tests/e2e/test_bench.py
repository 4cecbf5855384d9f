"""`cutover bench` on a small table: every figure the issues name is measured and reported
(the figures themselves belong to the closing notes, not to assertions on the clock)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cutover.settings import PROJECT_ROOT, Settings

pytestmark = pytest.mark.e2e

KEYS = (
    "ceiling_items_per_s",
    "baseline_items_per_s",
    "loader_items_per_s",
    "loader_cpu_us_per_item",
    "mysql_client_rows_per_s",
    "pandas_rows_per_s",
    "extract_rows_per_s",
    "parity_rows_per_s",
    "plain_scan_rows_per_s",
    "backfill_peak_rss_mib",
    "validate_peak_rss_mib",
    "dag_parse_seconds_3_contracts",
)


def test_bench_reports_every_figure(settings: Settings, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    env = {
        **os.environ,
        "CUTOVER_DYNAMODB_ENDPOINT": settings.dynamodb_endpoint or "",
        "CUTOVER_TABLE_PREFIX": settings.table_prefix,
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cutover.cli",
            "bench",
            "--rows",
            "3000",
            "--workers",
            "2",
            "--json",
            str(out),
        ],
        env=env,
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(out.read_text())
    for key in KEYS:
        assert figures[key] > 0, key
    assert figures["rows"] == 3000 and figures["dags_parsed"] == 18
    assert "loader_vs_baseline" in result.stdout and "met" in result.stdout
