"""The short summary `cutover demo` ends with, read from a contract's stage reports
(``reports/<contract>/{prepare,backfill,validate}.json`` under the storage URL), and the
figures of the sync the demo runs after them."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from cutover.extract.staging import Staging, shown
from cutover.stages import REPORTS, report_parts

STAGES = ("prepare", "backfill", "validate")


def read_reports(
    staging: Staging, contract: str, fresh_since: float | None = None
) -> dict[str, dict[str, Any]]:
    """The contract's stage reports found under the storage URL, by stage; with
    ``fresh_since`` (a time.time()), only those written since then (an older one is another
    run's)."""
    out: dict[str, dict[str, Any]] = {}
    for stage in STAGES:
        parts = report_parts(contract, stage)
        try:
            written = staging.mtime(*parts)
            if written is None or (fresh_since is not None and written < fresh_since):
                continue
            out[stage] = staging.read_json(*parts)
        except (FileNotFoundError, json.JSONDecodeError):
            continue
    return out


def _reasons(reasons: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in sorted(reasons.items()) if v)


def _prepare_line(report: dict[str, Any]) -> str:
    actions = Counter(t["action"] for t in report.get("tables", []))
    views = Counter(v["action"] for v in report.get("views", []))
    drifts = report.get("drifts") or []
    done = ", ".join(f"{n} {a}" for a, n in sorted(actions.items()))
    return (
        f"prepare:  {sum(views.values())} views, {sum(actions.values())} DynamoDB tables "
        f"({done}), " + (f"DRIFT: {'; '.join(drifts)}" if drifts else "no drift")
    )


def backfill_tables(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Rows, items and quarantined rows (by reason) per DynamoDB table of a backfill report.
    Rows that share an item key are quarantined after the transform (``duplicate_key``):
    they are the items a partition made but did not load."""
    tables: dict[str, dict[str, Any]] = {}
    for part in report.get("partitions", []):
        table = part["id"].split(".", 1)[0]
        t = tables.setdefault(table, {"rows": 0, "items": 0, "reasons": Counter()})
        t["rows"] += (part.get("extract") or {}).get("rows", 0)
        transform = part.get("transform") or {}
        t["reasons"].update(transform.get("reasons") or {})
        if (load := part.get("load")) is not None:
            t["items"] += load.get("items", 0)
            if dups := transform.get("items", 0) - load.get("items", 0):
                t["reasons"]["duplicate_key"] += dups
    for t in tables.values():
        t["quarantined"] = sum(t["reasons"].values())
    return tables


def _backfill_lines(report: dict[str, Any], dynamodb_on_disk: bool = False) -> list[str]:
    load = report.get("load") or {}
    gate = report.get("gate") or {}
    verdict = "passed" if gate.get("passed") else "FAILED"
    # on disk, DynamoDB Local (SQLite underneath) bounds the rate, not the loader
    where = " into DynamoDB Local on disk (SQLite); the loader: cutover bench"
    where = where if dynamodb_on_disk else ""
    lines = [
        f"backfill: {report.get('rows_extracted', 0):,} rows -> "
        f"{report.get('items_loaded', 0):,} items in {load.get('seconds', 0):,.1f}s "
        f"({load.get('items_per_s', 0):,.0f} items/s{where}), {report.get('quarantined', 0):,} "
        f"quarantined (gate allows {gate.get('max_quarantined_rows', '?')}: {verdict})"
    ]
    for table, t in backfill_tables(report).items():
        why = f" ({_reasons(t['reasons'])})" if t["quarantined"] else ""
        lines.append(
            f"  {table:<14} {t['rows']:>8,} rows {t['items']:>8,} items "
            f"{t['quarantined']:>5,} quarantined{why}"
        )
    return lines


def _validate_lines(report: dict[str, Any]) -> list[str]:
    tables = report.get("tables", [])
    passed = sum(1 for t in tables if t.get("success"))
    checks = [t.get("independent_checks") or {} for t in tables]
    failed_checks = sum(len(c.get("failed", [])) for c in checks)
    sample = f", sample {report['sample']:.0%}" if report.get("sample") else ""
    lines = [
        f"validate: parity {'PASSED' if report.get('success') else 'FAILED'} "
        f"({passed} of {len(tables)} tables; {sum(c.get('total', 0) for c in checks)} "
        f"independent checks, {failed_checks} failed{sample})"
    ]
    for t in tables:
        state = "passed" if t.get("success") else "FAILED"
        for i, (entity, e) in enumerate(sorted(t["parity"]["entities"].items())):
            head = f"  {t['table']:<14} {state:<7}" if i == 0 else " " * 24
            line = (
                f"{head} {entity:<12} {e['matched']:>9,}/{e['expected']:,} items match "
                f"({e['value_parity']:.2%})"
            )
            wrong = {k: e[k] for k in ("missing", "extra", "mismatched") if e.get(k)}
            if wrong:
                line += ": " + ", ".join(f"{v:,} {k}" for k, v in wrong.items())
            lines.append(line)
        for suite in t.get("suites", []):
            if not suite.get("success"):
                lines.append(
                    f"{' ' * 24} suite {suite['suite']}: "
                    f"{len(suite.get('failed_expectations', []))} expectation(s) failed"
                )
    return lines


def sync_lines(sync: dict[str, Any], contract: str, contract_file: str) -> list[str]:
    """The demo's sync: the writes made by plain SQL while the sync followed, what it applied
    as they came and what ``run_sync(once=True)`` applied after, the lag at the end, and how
    to keep it running."""
    keep = (
        f"          keep it running: cutover sync {contract_file}, or the {contract}__sync DAG "
        "in make airflow"
    )
    if sync.get("error"):
        return [f"sync:     FAILED: {sync['error']}", keep]
    w = sync.get("writes") or {}
    follow, once = sync.get("follow") or {}, sync.get("once") or {}
    made = sum(w.values())
    max_lag = sync.get("max_lag_seconds")
    lag = f" (lag at most {max_lag:.1f} s)" if max_lag is not None else ""
    written = follow.get("items_written", 0) + once.get("items_written", 0)
    deleted = follow.get("items_deleted", 0) + once.get("items_deleted", 0)
    rejected = follow.get("rejected", 0) + once.get("rejected", 0)
    return [
        f"sync:     {made:,} writes by plain SQL ({w.get('updates', 0)} updates, "
        f"{w.get('inserts', 0)} inserts, {w.get('deletes', 0)} deletes), DynamoDB following "
        "the binlog:",
        f"          {follow.get('rows', 0):,} changes ({follow.get('transactions', 0):,} "
        f"transactions) applied as they came{lag}, {once.get('rows', 0):,} more by sync "
        f"--once; {written:,} items written, "
        f"{deleted:,} deleted" + (f", {rejected:,} REJECTED" if rejected else ""),
        f"          lag at the end {once.get('lag_seconds', 0.0):.1f} s, "
        f"{once.get('events_behind', 0):,} transactions behind",
        keep,
    ]


def demo_summary(
    staging: Staging,
    contract: str,
    *,
    log_file: Path | None = None,
    airflow_url: str = "http://127.0.0.1:8080",
    login: tuple[str, str] = ("admin", "cutover"),
    fresh_since: float | None = None,
    next_step: bool = True,
    sync: dict[str, Any] | None = None,
    contract_file: str = "contracts/ecommerce.json",
    dynamodb_on_disk: bool = False,
) -> list[str]:
    """What a person reads at the end of `make demo`: per table the rows, items and
    quarantined rows (by reason), the parity verdict with each entity's parity rate, the
    sync's figures (``sync``: what ``cutover.dags.local_run.sync_burst`` returns, or
    ``{"error": ...}``), where the reports, Data Docs and log are, and the next step
    (`make airflow` and its panel).

    With ``fresh_since``, reports older than that time are another run's and left out;
    ``dynamodb_on_disk`` says the backfill's items/s are DynamoDB Local's on disk."""
    found = read_reports(staging, contract, fresh_since)
    lines = [f"== summary of contract {contract} =="]
    if "prepare" in found:
        lines.append(_prepare_line(found["prepare"]))
    if "backfill" in found:
        lines.extend(_backfill_lines(found["backfill"], dynamodb_on_disk))
    if "validate" in found:
        lines.extend(_validate_lines(found["validate"]))
    if sync is not None:
        lines.extend(sync_lines(sync, contract, contract_file))
    missing = [s for s in STAGES if s not in found]
    if missing:
        lines.append(f"no report from this run: {', '.join(missing)}")
    if found:
        stages = ",".join(s for s in STAGES if s in found)
        lines.append(f"reports:   {staging.display(REPORTS, contract)}/{{{stages}}}.json")
    if docs := found.get("validate", {}).get("data_docs"):
        lines.append(f"data docs: {shown(docs)}")
    if log_file is not None:
        lines.append(f"log:       {log_file} (Airflow and Great Expectations)")
    if not next_step:
        return lines
    base = airflow_url.rstrip("/")
    lines += [
        f"next:      make airflow, then {base} (login {login[0]} / {login[1]});",
        f'           the "Migrations" entry of its navigation: {base}/migrations/',
    ]
    return lines
