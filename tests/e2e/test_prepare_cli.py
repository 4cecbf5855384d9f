"""The README's sequence: `cutover sample load` then `cutover prepare` twice; the second run
changes nothing and says so."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cutover.settings import PROJECT_ROOT, Settings

pytestmark = [pytest.mark.e2e, pytest.mark.mysql, pytest.mark.dynamodb]


def _cutover(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    m = settings.mysql
    env = {**os.environ, "CUTOVER_MYSQL_URL": f"mysql://{m.user}@{m.host}:{m.port}/{m.database}",
           "CUTOVER_DYNAMODB_ENDPOINT": settings.dynamodb_endpoint or "",
           "CUTOVER_TABLE_PREFIX": settings.table_prefix + "cli_"}  # fmt: skip
    return subprocess.run([sys.executable, "-m", "cutover.cli", *args], env=env,
                          capture_output=True, text=True, cwd=PROJECT_ROOT)  # fmt: skip


def test_sample_load_then_prepare_twice(scratch_db: Settings, ddb: object) -> None:
    contract = str(PROJECT_ROOT / "contracts" / "ecommerce.json")
    loaded = _cutover(scratch_db, "sample", "load", "--scale", "1")
    assert loaded.returncode == 0, loaded.stderr
    assert "order_items" in loaded.stdout

    first = _cutover(scratch_db, "prepare", contract)
    assert first.returncode == 0, first.stderr
    assert "view  cutover_ecommerce_users: created" in first.stdout
    assert f"table {scratch_db.table_prefix}cli_Users: created" in first.stdout

    second = _cutover(scratch_db, "prepare", contract)
    assert second.returncode == 0, second.stderr
    assert "nothing changed" in second.stdout
    assert "created" not in second.stdout and "replaced" not in second.stdout
    report = Path(second.stdout.strip().splitlines()[-1].removeprefix("report: "))
    assert report.exists()
    for table in ("Users", "Products", "Categories", "cutover_control"):
        ddb.delete_table(TableName=f"{scratch_db.table_prefix}cli_{table}")  # type: ignore[attr-defined]
