"""`cutover estimate` on a scratch database holding the sample: the row counts are the source
tables' own, items are measured through the real item builder, the scaled lines keep the
contract's write units per row, and a bad contract path is a one-line error with exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from urllib.parse import quote

import pytest

from cutover.contract.load import load_contract
from cutover.db import connect, query, quote_ident
from cutover.estimate.sources import source_tables
from cutover.sample.generator import load_sample
from cutover.settings import PROJECT_ROOT, Settings

pytestmark = [pytest.mark.integration, pytest.mark.mysql]

CONTRACT = PROJECT_ROOT / "contracts" / "ecommerce.json"


def _estimate(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    mysql = settings.mysql
    auth = quote(mysql.user, safe="")
    if mysql.password:
        auth += ":" + quote(mysql.password, safe="")
    env = {
        **os.environ,
        "CUTOVER_MYSQL_URL": f"mysql://{auth}@{mysql.host}:{mysql.port}/{mysql.database}",
    }
    return subprocess.run(
        [sys.executable, "-m", "cutover.cli", "estimate", *args],
        env=env,
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        timeout=300,
    )


def test_estimate_of_the_sample(scratch_db: Settings) -> None:
    load_sample(scratch_db, scale=1)
    conn = connect(scratch_db.mysql)
    try:
        counts = {
            t: int(query(conn, f"SELECT COUNT(*) FROM {quote_ident(t)}")[0][0])
            for t in source_tables(load_contract(CONTRACT))
        }
    finally:
        conn.close()
    result = _estimate(scratch_db, str(CONTRACT), "--json", "--cores", "2")
    assert result.returncode == 0, result.stderr
    est = json.loads(result.stdout)

    # row counts: COUNT(*) of each source table (small tables are always counted)
    assert {t: c["rows"] for t, c in est["counts"].items()} == counts
    assert {c["method"] for c in est["counts"].values()} == {"exact"}
    contract_line, hundred_million, billion = est["scenarios"]
    assert contract_line["label"] == "contract"
    assert contract_line["rows_by_source"] == counts
    assert contract_line["rows"] == sum(counts.values())

    # sizes: measured on every row's item (the sample is smaller than --sample)
    assert est["sizes_from"] == ["measured"]
    sources = {s["label"]: s for s in est["sources"]}
    for s in sources.values():
        assert s["sampled_rows"] == counts[s["source_table"]]
        assert 0 < s["avg_item_bytes"] < 400 * 1024 and s["wcu_per_item"] >= 1
    gsis = {name: {g["index"]: g for g in sources[name]["gsis"]} for name in sources}
    # GSI1's keys are ORDER attributes only: the index is sparse, USER items are not in it
    assert gsis["Users.ORDER"]["GSI1"]["share"] == 1.0
    assert gsis["Users.USER"]["GSI1"]["share"] == 0.0
    # ByEmail (INCLUDE username, status) entries are smaller than the USER items they index
    by_email = gsis["Users.USER"]["ByEmail"]["avg_entry_bytes"]
    assert 0 < by_email < sources["Users.USER"]["avg_item_bytes"]

    # 100 million and 1 billion rows: the contract's mix, the same write units per row
    assert (hundred_million["rows"], billion["rows"]) == (100_000_000, 1_000_000_000)
    for scaled in (hundred_million, billion):
        per_row = scaled["total_wcu"] / scaled["rows"]
        expected = contract_line["total_wcu"] / contract_line["rows"]
        assert per_row == pytest.approx(expected, rel=1e-6)
        for table, rows in counts.items():
            share = scaled["rows_by_source"][table] / scaled["rows"]
            assert share == pytest.approx(rows / contract_line["rows"], abs=1e-8)
        price = est["price_per_million_wru"]
        assert scaled["cost_usd"] == pytest.approx(scaled["total_wcu"] * price / 1e6, abs=1e-3)
        assert scaled["gsi_wcu"] > 0
    assert billion["seconds"] > hundred_million["seconds"] > contract_line["seconds"]
    assert isinstance(billion["total_wcu"], int) and isinstance(billion["cost_usd"], float)

    # the readable table of the same estimate
    text = _estimate(scratch_db, str(CONTRACT), "--cores", "2", "--sample", "200")
    assert text.returncode == 0, text.stderr
    assert "1,000,000,000" in text.stdout and "on-demand cost" in text.stdout


def test_a_bad_contract_path_is_a_clear_error(settings: Settings) -> None:
    result = _estimate(settings, "contracts/no_such_contract.json")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "cannot read contracts/no_such_contract.json" in result.stderr
