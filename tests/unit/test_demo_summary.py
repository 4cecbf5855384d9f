"""What `make demo` shows a person: the summary read from the stage reports, the progress
lines kept on the terminal, and the error shown when a DAG run fails.

Running the whole demo here would repeat tests/e2e/test_dags.py for minutes, so the summary
is checked on reports with the keys and shapes of a real run's
``reports/<contract>/{prepare,backfill,validate}.json`` under the storage URL (a ``file://``
one here), and on the sync figures the demo passes it (``run_sync`` reports)."""

from __future__ import annotations

import io
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import pytest

from cutover.extract.staging import Staging
from cutover.logs import ProgressEcho, last_error
from cutover.summary import backfill_tables, demo_summary

pytestmark = pytest.mark.unit


def _prepare(contract: str, tables: list[str]) -> dict[str, Any]:
    return {
        "contract": contract,
        "views": [
            {"view": f"cutover_{contract}_{t.lower()}", "action": "unchanged"} for t in tables
        ],
        "tables": [
            {"table": t, "action": "unchanged", "drifts": []} for t in [*tables, "cutover_control"]
        ],
        "warnings": [],
        "changed": False,
        "drifts": [],
    }


def _partition(
    pid: str, rows: int, reasons: dict[str, int], loaded: int | None = None
) -> dict[str, Any]:
    """One partition of a backfill report; items the transform made but the load skipped
    are duplicate keys (quarantined after the transform)."""
    table, entity, _ = pid.split(".")
    items = rows - sum(reasons.values())
    return {
        "id": pid,
        "extract": {
            "partition": {
                "table": table,
                "entity_type": entity,
                "index": 0,
                "lower": None,
                "upper": None,
            },
            "file": f"x/runs/r/extract/{pid}.parquet",
            "rows": rows,
            "bytes": 1000,
            "sha256": "0" * 64,
            "seconds": 0.2,
            "finished_at": "2026-11-23T14:07:10+00:00",
        },
        "transform": {
            "rows": rows,
            "items": items,
            "quarantined": sum(reasons.values()),
            "reasons": reasons,
            "finished_at": "2026-11-23T14:07:14+00:00",
        },
        "load": {
            "table": table,
            "items": items if loaded is None else loaded,
            "requests": 80,
            "retried_items": 0,
            "throttles": 0,
            "seconds": 6.9,
            "items_per_s": 289.2,
            "cpu_seconds": 0.12,
            "cpu_us_per_item": 60.1,
            "finished_at": "2026-11-23T14:07:32+00:00",
        },
    }


def _backfill(contract: str, partitions: list[dict[str, Any]], allowed: int) -> dict[str, Any]:
    per_entity: dict[str, int] = {}
    reasons: dict[str, int] = {}
    for p in partitions:
        key = p["id"].rsplit(".", 1)[0]
        per_entity[key] = per_entity.get(key, 0) + p["load"]["items"]
        for k, v in p["transform"]["reasons"].items():
            reasons[k] = reasons.get(k, 0) + v
        if dups := p["transform"]["items"] - p["load"]["items"]:
            reasons["duplicate_key"] = reasons.get("duplicate_key", 0) + dups
    quarantined = sum(reasons.values())
    items = sum(per_entity.values())
    return {
        "run_id": "af-manual__2026-11-23T14_07_09.726865_00_00",
        "contract": contract,
        "rows_extracted": sum(p["extract"]["rows"] for p in partitions),
        "items_loaded": items,
        "items_per_entity": per_entity,
        "quarantined": quarantined,
        "quarantine_reasons": dict(sorted(reasons.items())),
        "quarantine_files": f"file:///x/staging/{contract}/runs/r/quarantine",
        "gate": {"max_quarantined_rows": allowed, "passed": quarantined <= allowed},
        "load": {
            "items": items,
            "requests": 424,
            "retried_items": 0,
            "throttles": 0,
            "seconds": 34.659,
            "items_per_s": 305.0,
            "cpu_seconds": 0.663,
            "cpu_us_per_item": 62.72,
        },
        "handoff": {
            "transactions": 0,
            "items_written": 0,
            "items_deleted": 0,
            "reasons": {},
            "unavailable": None,
        },
        "finished_at": "2026-11-23T14:07:52+00:00",
        "binlog_position": {"file": "binlog.000001", "offset": 4, "gtid": "0-1-1"},
        "partitions": partitions,
    }


def _entity(name: str, expected: int, missing: int = 0, extra: int = 0, mismatched: int = 0):
    matched = expected - missing - mismatched
    return {
        "entity": name,
        "expected": expected,
        "actual": expected - missing + extra,
        "missing": missing,
        "extra": extra,
        "mismatched": mismatched,
        "matched": matched,
        "value_parity": matched / expected if expected else 1.0,
    }


def _table(name: str, entities: list[dict[str, Any]], ok: bool = True) -> dict[str, Any]:
    suite = {
        "suite": f"shop.{name}.parity",
        "suite_file": f"/x/{name}.parity.json",
        "success": ok,
        "statistics": {"evaluated_expectations": 4},
        "failed_expectations": []
        if ok
        else [{"expectation": "x", "kwargs": {}, "unexpected": [], "unexpected_rows": []}],
    }
    return {
        "table": name,
        "success": ok,
        "exported_items": sum(e["actual"] for e in entities),
        "quarantined_in_source": {},
        "parity": {
            "table": name,
            "entities": {e["entity"]: e for e in entities},
            "duplicate_keys_in_source": 0,
            "buckets": 4096,
            "differing_buckets": 0,
            "differences": [],
        },
        "independent_checks": {"total": 4, "failed": []},
        "suites": [suite],
    }


def _validate(contract: str, tables: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "contract": contract,
        "started_at": "2026-11-23T14:07:57+00:00",
        "finished_at": "2026-11-23T14:08:11+00:00",
        "sample": None,
        "success": all(t["success"] for t in tables),
        "tables": tables,
        "data_docs": "file:///x/gx/uncommitted/data_docs/local_site/index.html",
    }


def _write(root: Path, contract: str, **reports: dict[str, Any]) -> Staging:
    """The reports written where the stages write them, under the storage URL ``root``."""
    directory = root / "reports" / contract
    directory.mkdir(parents=True, exist_ok=True)
    for stage, report in reports.items():
        (directory / f"{stage}.json").write_text(json.dumps(report, indent=2))
    return Staging(root.as_uri())


def _line(lines: list[str], *words: str) -> str:
    found = [line for line in lines if all(w in line for w in words)]
    assert found, f"no line with {words} in:\n" + "\n".join(lines)
    return found[0]


@pytest.fixture
def passed(tmp_path: Path) -> Staging:
    """The sample contract as a real demo leaves it (figures of a real run)."""
    parts = [
        _partition("Users.USER.0000", 2000, {"empty_key": 1}),
        _partition("Users.CART.0000", 3002, {}, loaded=2998),
        _partition("Users.ORDER.0000", 4000, {}),
        _partition("Products.PRODUCTS.0000", 1500, {"number_too_precise": 2, "item_too_large": 2}),
        _partition("Categories.CATEGORIES.0000", 79, {"empty_key": 1}),
    ]
    tables = [
        _table("Users", [_entity("CART", 2998), _entity("ORDER", 4000), _entity("USER", 1999)]),
        _table("Products", [_entity("PRODUCTS", 1496)]),
        _table("Categories", [_entity("CATEGORIES", 78)]),
    ]
    return _write(
        tmp_path / "storage",
        "ecommerce",
        prepare=_prepare("ecommerce", ["Users", "Products", "Categories"]),
        backfill=_backfill("ecommerce", parts, allowed=10),
        validate=_validate("ecommerce", tables),
    )


def test_summary_of_a_passed_run(passed: Staging) -> None:
    log = Path("/x/.local/logs/demo.log")
    lines = demo_summary(passed, "ecommerce", log_file=log)
    text = "\n".join(lines)
    assert len(lines) <= 25, text  # the demo's whole output stays near 60 lines
    assert "ecommerce" in lines[0]
    # per table: rows, items, quarantined by reason (duplicate keys come from the load)
    assert "10,581 rows" in text and "10,571 items" in text
    users = _line(lines, "Users", "rows")
    assert "9,002 rows" in users and "8,997 items" in users
    assert "5 quarantined" in users and "duplicate_key 4" in users and "empty_key 1" in users
    products = _line(lines, "Products", "rows")
    assert "1,496 items" in products
    assert "item_too_large 2" in products and "number_too_precise 2" in products
    assert "79 rows" in _line(lines, "Categories", "rows")
    # the parity verdict, then each entity's parity rate
    assert "parity PASSED" in _line(lines, "validate:")
    assert "3 of 3 tables" in _line(lines, "validate:")
    for entity, count in (
        ("CART", "2,998"),
        ("ORDER", "4,000"),
        ("USER", "1,999"),
        ("PRODUCTS", "1,496"),
        ("CATEGORIES", "78"),
    ):
        line = _line(lines, f" {entity} ")
        assert f"{count}/{count}" in line and "100.00%" in line
    # where to look, and what to do next
    # a file:// storage URL: the local paths a person can open
    reports = passed.local_path("reports", "ecommerce")
    assert f"reports:   {reports}/{{prepare,backfill,validate}}.json" in text
    assert "data docs: /x/gx/uncommitted/data_docs/local_site/index.html" in text
    assert str(log) in text
    nxt = text[text.index("make airflow") :]
    assert "http://127.0.0.1:8080" in nxt and "admin / cutover" in nxt
    assert '"Migrations"' in nxt and "http://127.0.0.1:8080/migrations/" in nxt


def _sync_run(rows: int, written: int, deleted: int, lag: float, behind: int = 0):
    """A ``run_sync`` report (the keys the summary reads, and the rest of a real one); every
    transaction of the binlog counts, those of other databases too."""
    return {
        "contract": "ecommerce",
        "position": {"file": "binlog.000002", "offset": 4711, "gtid": "0-1-99"},
        "transactions": rows + 3,
        "rows": rows,
        "batches": 3,
        "items_written": written,
        "items_deleted": deleted,
        "kept_newer": 0,
        "rejected": 0,
        "fallbacks": 0,
        "applied_per_second": 20.5,
        "lag_seconds": lag,
        "events_behind": behind,
        "bytes_behind": 0,
        "seconds": 7.2,
    }


def _sync(follow: dict[str, Any], once: dict[str, Any]) -> dict[str, Any]:
    """What ``cutover.dags.local_run.sync_burst`` returns to the demo."""
    return {
        "writes": {"updates": 15, "inserts": 12, "deletes": 9},
        "follow": follow,
        "once": once,
        "max_lag_seconds": 1.27,
        "rounds_applied": 3,
        "rounds": 3,
    }


def test_summary_shows_the_sync_that_followed_the_demo_writes(passed: Staging) -> None:
    sync = _sync(_sync_run(36, 58, 9, lag=0.8), _sync_run(2, 3, 1, lag=0.0))
    lines = demo_summary(
        passed, "ecommerce", sync=sync, contract_file="contracts/ecommerce.json",
        dynamodb_on_disk=True,
    )  # fmt: skip
    text = "\n".join(lines)
    assert len(lines) <= 25, text
    # the writes made by plain SQL, what the sync applied as they came and after, the lag
    head = _line(lines, "sync:")
    assert "36 writes by plain SQL" in head and "15 updates, 12 inserts, 9 deletes" in head
    applied = _line(lines, "applied as they came")
    assert "36 changes (39 transactions) applied as they came (lag at most 1.3 s)" in applied
    assert "2 more by sync --once" in applied
    assert "61 items written, 10 deleted" in applied and "REJECTED" not in applied
    assert "lag at the end 0.0 s, 0 transactions behind" in text
    keep = _line(lines, "keep it running")
    assert "cutover sync contracts/ecommerce.json" in keep
    assert "ecommerce__sync DAG" in keep and "make airflow" in keep
    # the sync's part comes after the validation's, before where the reports are
    assert lines.index(head) > lines.index(_line(lines, "validate:"))
    assert lines.index(keep) < lines.index(_line(lines, "reports:"))
    # the loader's figure says it is DynamoDB Local's on disk, and where the loader's own is
    backfill = _line(lines, "backfill:")
    assert "305 items/s into DynamoDB Local on disk (SQLite)" in backfill
    assert "cutover bench" in backfill


def test_summary_without_the_sync_or_on_another_dynamodb(passed: Staging) -> None:
    lines = demo_summary(passed, "ecommerce")
    text = "\n".join(lines)
    assert "sync:" not in text and "keep it running" not in text
    assert "(305 items/s)" in _line(lines, "backfill:") and "on disk" not in text


def test_summary_of_a_sync_that_failed_or_rejected(passed: Staging) -> None:
    lines = demo_summary(passed, "ecommerce", sync={"error": "ServiceError: no binlog"})
    assert "FAILED: ServiceError: no binlog" in _line(lines, "sync:")
    assert "cutover sync contracts/ecommerce.json" in _line(lines, "keep it running")
    follow = {**_sync_run(36, 58, 9, lag=0.8), "rejected": 2}
    lines = demo_summary(passed, "ecommerce", sync=_sync(follow, _sync_run(0, 0, 0, 3.5, 4)))
    applied = _line(lines, "applied as they came")
    assert "0 more by sync --once" in applied and "2 REJECTED" in applied
    assert "lag at the end 3.5 s, 4 transactions behind" in "\n".join(lines)


def test_summary_of_a_failed_parity(tmp_path: Path) -> None:
    parts = [_partition("Orders.ORDER.0000", 1000, {}), _partition("Orders.LINE.0000", 2400, {})]
    tables = [
        _table(
            "Orders",
            [_entity("LINE", 2400, missing=3, mismatched=9), _entity("ORDER", 1000)],
            ok=False,
        )
    ]
    reports = _write(
        tmp_path,
        "shop",
        prepare=_prepare("shop", ["Orders"]),
        backfill=_backfill("shop", parts, allowed=0),
        validate=_validate("shop", tables),
    )
    lines = demo_summary(
        reports, "shop", airflow_url="http://127.0.0.1:9090", login=("admin", "pw")
    )
    text = "\n".join(lines)
    assert "parity FAILED" in _line(lines, "validate:")
    assert "0 of 1 tables" in _line(lines, "validate:")
    line = _line(lines, " LINE ")
    assert "FAILED" in _line(lines, "Orders", "LINE")
    assert "2,388/2,400" in line and "99.50%" in line
    assert "3 missing" in line and "9 mismatched" in line and "extra" not in line
    assert "100.00%" in _line(lines, " ORDER ")
    assert "shop.Orders.parity: 1 expectation(s) failed" in text
    assert "3,400 items" in _line(lines, "Orders", "rows")
    assert "http://127.0.0.1:9090/migrations/" in text and "admin / pw" in text


def test_quarantine_by_two_reasons_and_the_gate(tmp_path: Path) -> None:
    parts = [
        _partition("Library.BOOK.0000", 500, {"empty_key": 3}),
        _partition("Library.BOOK.0001", 500, {"item_too_large": 1}, loaded=497),
        _partition("Library.LOAN.0000", 200, {}),
    ]
    backfill = _backfill("library", parts, allowed=5)
    assert backfill["quarantined"] == 6 and not backfill["gate"]["passed"]
    reports = _write(tmp_path, "library", backfill=backfill)
    tables = backfill_tables(backfill)
    assert tables["Library"]["rows"] == 1200
    assert tables["Library"]["items"] == 497 + 497 + 200
    assert dict(tables["Library"]["reasons"]) == {
        "empty_key": 3,
        "item_too_large": 1,
        "duplicate_key": 2,
    }
    lines = demo_summary(reports, "library")
    library = _line(lines, "Library", "rows")
    assert "6 quarantined" in library
    assert "duplicate_key 2, empty_key 3, item_too_large 1" in library
    assert "gate allows 5: FAILED" in _line(lines, "backfill:")
    assert "no report from this run: prepare, validate" in lines


def test_reports_of_an_earlier_run_are_left_out(passed: Staging) -> None:
    old = time.time() - 3600
    validate = passed.local_path("reports", "ecommerce", "validate.json")
    assert validate is not None
    os.utime(validate, (old, old))
    lines = demo_summary(passed, "ecommerce", fresh_since=time.time() - 60, next_step=False)
    text = "\n".join(lines)
    assert "parity" not in text and "data docs" not in text
    assert "no report from this run: validate" in lines
    assert "make airflow" not in text
    assert "10,571 items" in text


def _record(message: str, created: float, name: str = "cutover") -> logging.LogRecord:
    record = logging.LogRecord(name, logging.INFO, __file__, 1, message, None, None)
    record.created = created
    return record


def test_progress_lines_are_thinned_but_each_step_ends_with_its_last_line() -> None:
    out = io.StringIO()
    echo = ProgressEcho(out, every=5.0)
    t = 1000.0
    for i, done in enumerate([100, 200, 300, 400, 500, 600, 700]):  # one line every 2 s
        echo.handle(_record(f"load T.A.0000: {done:,}/700 items, 50 items/s", t + 2 * i))
    echo.handle(_record("extract T.B.0000: 9 rows, 9 rows/s", t + 20))
    echo.handle(_record("Filling up the DagBag", t + 21, name="airflow.models.dagbag"))
    echo.handle(_record("planned 5 partitions", t + 21, name="cutover.backfill"))
    echo.flush_pending()
    shown = [line.split(" ", 1)[1] for line in out.getvalue().splitlines()]
    assert shown == [
        "load T.A.0000: 400/700 items, 50 items/s",  # 6 s after the step began
        "load T.A.0000: 700/700 items, 50 items/s",  # its last line, however soon
        "extract T.B.0000: 9 rows, 9 rows/s",
    ]


def test_a_failed_task_shows_its_exceptions() -> None:
    log = """\
2026-11-23T14:11:40.1Z [info     ] [DAG TEST] running task rollback [airflow.sdk.definitions.dag]
2026-11-23T14:11:44.9Z [error    ] Task failed with exception     [task] loc=task_runner.py:1639
Traceback (most recent call last):
  File "/work/main/include/cutover/phases/transitions.py", line 61, in rollback
    raise TerminalError("a rollback needs a reason")
cutover.errors.TerminalError: a rollback needs a reason

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "/x/airflow/sdk/execution_time/task_runner.py", line 1579, in _run_task_and_map_outcome
    result = _execute_task(context=context, ti=ti, log=log)
  File "/work/main/include/cutover/dags/tasks.py", line 25, in wrapper
    raise AirflowFailException(str(exc)) from exc
airflow.sdk.exceptions.AirflowFailException: a rollback needs a reason
2026-11-23T14:11:44.9Z [info     ] ::group::Post Execute          [task] loc=task_runner.py:1640
"""
    lines = last_error(log)
    assert lines[0].startswith("2026-11-23T14:11:44.9Z [error ] Task failed with exception")
    assert lines[1:] == [
        '  File "/work/main/include/cutover/phases/transitions.py", line 61, in rollback',
        "cutover.errors.TerminalError: a rollback needs a reason",
        '  File "/work/main/include/cutover/dags/tasks.py", line 25, in wrapper',
        "airflow.sdk.exceptions.AirflowFailException: a rollback needs a reason",
    ]
    assert last_error("2026-11-23T14:11:44.9Z [info     ] fine [task]\n") == []
