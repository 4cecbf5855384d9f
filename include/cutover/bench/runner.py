"""`cutover bench`: every figure measured side by side in one run, on the same items and the
same DynamoDB Local, so the ratios are what matters.

Load: (a) the ceiling, pre-serialized and pre-signed BatchWriteItem bodies posted over
keep-alive HTTP from several threads; (b) the baseline, the amazon provider's
``DynamoDBHook.write_batch_data`` (single-threaded); (c) cutover's loader; (c') the loader's
own client against botocore's at equal threads (``cutover.bench.clients``). Extract: (d) the
``mysql`` client streaming the view to /dev/null; (e) ``pandas.read_sql``; (f) cutover's
extract. Routing: the dual-database layer's read and write latency in phases 1-4 against the
same call straight to MySQL (``cutover.bench.routing``). Sync: the binlog read ceiling, the apply
rate over the same backlog and the end-to-end lag at a fixed write rate (``cutover.bench.sync``).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from decimal import Decimal
from typing import Any

from cutover.aws import dynamodb_client
from cutover.bench.buckets import run_bucket_bench
from cutover.bench.ceiling import THREAD_COUNTS, Ceiling, choose_threads, fresh_table
from cutover.bench.ceiling import attempt as ceiling_attempt
from cutover.bench.clients import compare_clients, format_clients
from cutover.bench.routing import format_routing, run_routing_bench
from cutover.bench.sync import format_sync, run_sync_bench
from cutover.bench.synthetic import bench_contract, build_source
from cutover.contract.views import view_name
from cutover.errors import CutoverError
from cutover.extract.staging import Staging
from cutover.extract.stream import read_batches, stream_to_parquet, view_query
from cutover.load.batch_writer import BatchWriter
from cutover.load.dynamo_http import DynamoHttp
from cutover.settings import Settings
from cutover.transform.items import Item, ItemBuilder

log = logging.getLogger("cutover.bench")


def _timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


# --- extraction ----------------------------------------------------------------------------


def bench_mysql_client(settings: Settings, sql: str) -> float:
    m = settings.mysql
    cmd = [
        "mysql",
        "--quick",
        "--batch",
        "--skip-column-names",
        "--default-character-set=utf8mb4",
        "-h",
        m.host,
        "-P",
        str(m.port),
        "-u",
        m.user,
        m.database,
        "-e",
        sql,
    ]
    env = {**os.environ, "MYSQL_PWD": m.password}
    started = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
    return time.perf_counter() - started


def bench_pandas(settings: Settings, sql: str) -> float:
    import pandas as pd
    import sqlalchemy

    m = settings.mysql
    engine = sqlalchemy.create_engine(
        f"mysql+mysqldb://{m.user}:{m.password}@{m.host}:{m.port}/{m.database}?charset=utf8mb4"
    )
    started = time.perf_counter()
    with engine.connect() as conn:
        frame = pd.read_sql(sqlalchemy.text(sql), conn)
    seconds = time.perf_counter() - started
    del frame
    engine.dispose()
    return seconds


# --- loading -------------------------------------------------------------------------------


def bench_baseline(
    settings: Settings, table: str, items: list[dict[str, Any]]
) -> tuple[float, float]:
    """The amazon provider's DynamoDBHook, connection configured for the same endpoint."""
    conn_uri = json.dumps(
        {
            "conn_type": "aws",
            "login": "local",
            "password": "local",
            "extra": {"endpoint_url": settings.dynamodb_endpoint, "region_name": settings.region},
        }
    )
    os.environ["AIRFLOW_CONN_CUTOVER_BENCH"] = conn_uri
    from airflow.providers.amazon.aws.hooks.dynamodb import DynamoDBHook

    hook = DynamoDBHook(aws_conn_id="cutover_bench", table_name=table, table_keys=["item_id"])
    _, seconds, cpu = _timed(lambda: hook.write_batch_data(items))
    return seconds, cpu


def _plain(av: dict[str, Any]) -> Any:
    ((kind, value),) = av.items()
    if kind == "N":
        return Decimal(value)
    return value


# --- backfill memory -----------------------------------------------------------------------


class StageFailed(CutoverError):
    """A stage the bench runs in a child process did not succeed: the bench fails and prints
    no figure for it."""


def _child_peak_rss(settings: Settings, args: list[str]) -> tuple[float, float]:
    """Runs `cutover ARGS` on the bench contract in a child process; returns its peak RSS in
    MiB and its wall seconds (ru_maxrss of children is the largest child so far). Raises
    StageFailed, with the end of the child's error output, unless it exits 0."""
    with tempfile.TemporaryDirectory() as tmp:
        contract_path = os.path.join(tmp, "bench.json")
        with open(contract_path, "w") as out:
            json.dump(bench_contract().model_dump(by_alias=True, exclude_none=True), out)
        env = {
            **os.environ,
            "CUTOVER_MYSQL_URL": _url(settings),
            "CUTOVER_STAGING": f"file://{tmp}/staging",
            "CUTOVER_DYNAMODB_ENDPOINT": settings.dynamodb_endpoint or "",
            "CUTOVER_TABLE_PREFIX": settings.table_prefix,
        }
        errors_path = os.path.join(tmp, "stderr.txt")
        started = time.perf_counter()
        with open(errors_path, "wb") as errors:
            proc = subprocess.Popen(
                [sys.executable, "-m", "cutover.cli", args[0], contract_path, *args[1:]],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=errors,
                # posix_spawn, not fork: a forked child's ru_maxrss would count this process's
                # pages
                close_fds=False,
            )
            _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            with open(errors_path, errors="replace") as errors:
                tail = [line.strip() for line in errors.read().splitlines() if line.strip()]
            raise StageFailed(
                f"cutover {args[0]} exited {code} after {seconds:.0f} s: "
                + (" | ".join(tail[-3:]) or "no error output")
            )
    return usage.ru_maxrss / 1024, seconds


def _stage(out: dict[str, Any], name: str, run: Callable[[], dict[str, Any]]) -> None:
    """Adds ``run()``'s figures to ``out``; a failed stage adds none, only its failure."""
    try:
        out.update(run())
    except StageFailed as exc:
        log.error("%s failed: %s", name, exc)
        out.setdefault("failed", {})[name] = str(exc)


def plain_scan_seconds(settings: Settings, client: Any, table: str, view: str) -> float:
    """The reference for parity: a plain full read of both sides, nothing compared. DynamoDB
    is read as the validation reads it (the same segments, as many threads), by boto3's
    paginator: a single Scan of a table of millions of items on DynamoDB Local slows with the
    table's size (see ``cutover.validate.export``), which would measure the server."""
    from cutover.validate.export import DEFAULT_WORKERS, segments_for

    count = client.describe_table(TableName=table)["Table"].get("ItemCount")
    total = segments_for(count)

    def segment(n: int) -> None:
        pages = client.get_paginator("scan").paginate(TableName=table, Segment=n,
                                                      TotalSegments=total)  # fmt: skip
        for _ in pages:
            pass

    started = time.perf_counter()
    with ThreadPoolExecutor(min(DEFAULT_WORKERS, total)) as pool:
        list(pool.map(segment, range(total)))
    seconds = time.perf_counter() - started
    return seconds + bench_mysql_client(settings, f"SELECT * FROM `{view}`")


def _url(settings: Settings) -> str:
    m = settings.mysql
    auth = m.user + (f":{m.password}" if m.password else "")
    return f"mysql://{auth}@{m.host}:{m.port}/{m.database}"


# --- DAG parse time ------------------------------------------------------------------------

_PARSE_PROBE = """
import json, sys, time
from airflow.dag_processing.dagbag import DagBag
from airflow.sdk import Asset
Asset("warm://up")  # a DAG processor has Airflow and its providers loaded already
started = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1])
print(json.dumps({"seconds": time.perf_counter() - started, "dags": len(bag.dags),
                  "errors": len(bag.import_errors)}))
"""


def dag_parse_seconds(contracts: int = 3) -> tuple[float, int]:
    """Seconds to parse the dags folder with ``contracts`` copies of the sample contract, in a
    fresh interpreter with Airflow imported (as in the DAG processor)."""
    from cutover.settings import PROJECT_ROOT

    sample = json.loads((PROJECT_ROOT / "contracts" / "ecommerce.json").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(contracts):
            sample["cutover"]["name"] = f"parse_{n}"
            with open(os.path.join(tmp, f"parse_{n}.json"), "w") as out:
                json.dump(sample, out)
        env = {**os.environ, "CUTOVER_CONTRACTS_DIR": tmp}
        result = subprocess.run(
            [sys.executable, "-c", _PARSE_PROBE, str(PROJECT_ROOT / "dags")],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    if figures["errors"]:
        raise RuntimeError("the dags folder has import errors")
    return figures["seconds"], figures["dags"]


# --- the whole benchmark -------------------------------------------------------------------


def run_memory_bench(settings: Settings, rows: int, workers: int = 6) -> dict[str, Any]:
    """The figures of a long run at millions of rows: peak RSS of a whole backfill, then of a
    validation of what it loaded, each in a child process; and that validation against a
    plain read of both sides (``parity_vs_plain_scan``)."""
    from cutover.prepare import prepare

    bench_settings = build_source(settings, rows)
    bench_settings = replace(bench_settings, table_prefix=settings.table_prefix + "bench_")
    contract = bench_contract()
    client = dynamodb_client(bench_settings)
    name = bench_settings.table_prefix + contract.tables[0].table
    fresh_table(client, name)
    prepare(contract, bench_settings)
    out: dict[str, Any] = {"rows": rows, "workers": workers}

    def backfill() -> dict[str, Any]:
        peak, seconds = _child_peak_rss(
            bench_settings, ["backfill", "--workers", str(workers), "--new"]
        )
        return {"backfill_peak_rss_mib": peak, "backfill_seconds": seconds,
                "backfill_rows_per_s": rows / seconds}  # fmt: skip

    def validate() -> dict[str, Any]:
        with tempfile.TemporaryDirectory() as tmp:
            report_path = os.path.join(tmp, "report.json")
            peak, seconds = _child_peak_rss(bench_settings, ["validate", "--report", report_path])
            with open(report_path) as report:
                export = json.load(report)["tables"][0].get("export", {})
        return {"validate_peak_rss_mib": peak, "validate_seconds": seconds,
                "parity_rows_per_s": rows / seconds,
                "export_items_per_s": float(export.get("items_per_s", 0.0)),
                "export_pages": int(export.get("pages", 0)),
                "export_retried_pages": int(export.get("retried_pages", 0)),
                "export_slowest_page_s": float(export.get("slowest_page_s", 0.0))}  # fmt: skip

    def plain() -> dict[str, Any]:
        view = view_name(contract, contract.tables[0])
        # the faster of two reads: the reference is what both servers can give at best
        seconds = min(plain_scan_seconds(bench_settings, client, name, view) for _ in range(2))
        parity = out["parity_rows_per_s"] * seconds / rows
        figures = {"plain_scan_rows_per_s": rows / seconds, "parity_vs_plain_scan": parity}
        if rows >= MILLIONS:  # the target's scale: below it a validation's fixed costs weigh
            figures["parity_vs_plain_scan_millions"] = parity
        return figures

    _stage(out, "backfill", backfill)
    if "failed" not in out:  # nothing loaded: a validation would only measure the failure
        _stage(out, "validate", validate)
    if "parity_rows_per_s" in out:  # the reference for parity, on the same data
        _stage(out, "plain_scan", plain)
    client.delete_table(TableName=name)
    return _rounded(out)


def run_bench(
    settings: Settings,
    rows: int,
    workers: int = 6,
    backfill: bool = True,
    routing_requests: int = 300,
    sync_changes: int = 20_000,
    sync_seconds: float = 20.0,
) -> dict[str, Any]:
    from cutover.prepare import prepare

    bench_settings = build_source(settings, rows)
    bench_settings = replace(bench_settings, table_prefix=settings.table_prefix + "bench_")
    contract = bench_contract()
    prepare(contract, bench_settings)
    table = contract.tables[0]
    view = view_name(contract, table)
    sql = view_query(bench_settings.mysql, view)
    out: dict[str, Any] = {"rows": rows, "workers": workers}
    out["dag_parse_seconds_3_contracts"], out["dags_parsed"] = dag_parse_seconds(3)

    log.info("extract: mysql client")
    seconds = bench_mysql_client(bench_settings, f"SELECT * FROM `{view}`")
    out["mysql_client_rows_per_s"] = rows / seconds
    log.info("extract: pandas.read_sql")
    out["pandas_rows_per_s"] = rows / bench_pandas(bench_settings, f"SELECT * FROM `{view}`")
    log.info("extract: cutover")
    with tempfile.TemporaryDirectory() as tmp:
        staging = Staging(f"file://{tmp}")
        result = stream_to_parquet(bench_settings.mysql, sql, staging, "bench.parquet")
        out["extract_rows_per_s"] = result.rows / result.seconds
        builder = ItemBuilder(contract, table)
        items: list[Item] = []
        build_cpu = 0.0
        for batch in read_batches(staging, "bench.parquet"):
            rows_in = batch.to_pylist()
            cpu = time.process_time()
            built, rejected = builder.build_all(rows_in)
            build_cpu += time.process_time() - cpu
            assert not rejected, rejected[:1]
            items.extend(built)
    out["transform_cpu_us_per_item"] = build_cpu / max(1, len(items)) * 1e6
    bodies = [i.body for i in items]

    client = dynamodb_client(bench_settings)
    name = bench_settings.table_prefix + table.table
    log.info("load: warming DynamoDB Local up (its JIT would favour whoever runs last)")
    fresh_table(client, name)
    warm = bodies[: min(len(bodies), 20_000)]
    warm_http = DynamoHttp(bench_settings)
    BatchWriter(warm_http, workers=workers).write(name, warm)
    warm_http.close()
    counts = sorted({*THREAD_COUNTS, workers})  # the loader's own concurrency among them
    log.info("load: ceiling, trying %s threads", "/".join(map(str, counts)))
    ceiling = Ceiling()
    threads = choose_threads(bench_settings, client, name, bodies, ceiling, counts)
    full_counts = sorted({threads, workers})
    for n in full_counts:
        log.info("load: ceiling, %d threads, every item", n)
        ceiling.full.append(ceiling_attempt(bench_settings, client, name, bodies, n))
    log.info("load: baseline (DynamoDBHook.write_batch_data)")
    fresh_table(client, name)
    plain = [{k: _plain(v) for k, v in json.loads(b).items()} for b in bodies]
    seconds, cpu = bench_baseline(bench_settings, name, plain)
    del plain
    out["baseline_items_per_s"] = len(bodies) / seconds
    out["baseline_cpu_us_per_item"] = cpu / len(bodies) * 1e6
    log.info("load: cutover loader")
    fresh_table(client, name)
    http_client = DynamoHttp(bench_settings)
    stats = BatchWriter(http_client, workers=workers).write(name, bodies)
    http_client.close()
    out["loader_items_per_s"] = stats.items_per_s
    out["loader_cpu_us_per_item"] = stats.cpu_us_per_item
    out["loader_vs_baseline"] = out["loader_items_per_s"] / out["baseline_items_per_s"]
    log.info("load: the loader's client against botocore's, %d threads each", workers)
    out.update(compare_clients(bench_settings, client, name, bodies, workers))
    # measured again after the loader: whoever runs last has the warmest DynamoDB Local
    for n in full_counts:
        log.info("load: ceiling again after the loader, %d threads", n)
        ceiling.full.append(ceiling_attempt(bench_settings, client, name, bodies, n))
    _ceiling_figures(out, ceiling)
    out["extract_vs_mysql_client"] = out["extract_rows_per_s"] / out["mysql_client_rows_per_s"]
    out["extract_vs_pandas"] = out["extract_rows_per_s"] / out["pandas_rows_per_s"]
    log.info("parity: bucket signatures against item-by-item, %d clean items", rows)
    out.update(run_bucket_bench(rows))
    log.info("parity: cutover validate against a plain full scan of both sides")
    plain = plain_scan_seconds(bench_settings, client, name, view)
    out["plain_scan_rows_per_s"] = rows / plain

    def validate() -> dict[str, Any]:
        peak, seconds = _child_peak_rss(bench_settings, ["validate"])
        parity = rows / seconds
        return {"parity_rows_per_s": parity,
                "parity_vs_plain_scan": parity / out["plain_scan_rows_per_s"],
                "validate_peak_rss_mib": peak}  # fmt: skip

    def whole_backfill() -> dict[str, Any]:
        fresh_table(client, name)
        peak, seconds = _child_peak_rss(
            bench_settings, ["backfill", "--workers", str(workers), "--new"]
        )
        return {"backfill_peak_rss_mib": peak, "backfill_seconds": seconds}

    _stage(out, "validate", validate)
    if backfill:
        log.info("backfill: peak memory of a whole run in a child process")
        _stage(out, "backfill", whole_backfill)
    client.delete_table(TableName=name)
    if routing_requests:
        log.info("routing: the dual-database layer against straight MySQL calls")
        out["routing"] = run_routing_bench(settings, routing_requests, workers=workers)
    if sync_changes:

        def sync() -> dict[str, Any]:
            try:
                return run_sync_bench(settings, sync_changes, sync_seconds, workers=workers)
            except CutoverError as exc:  # the binlog or a service failed: this line only
                raise StageFailed(str(exc)) from exc

        log.info("sync: binlog read ceiling, apply rate and lag")
        _stage(out, "sync", sync)
    return _rounded(out)


def _ceiling_figures(out: dict[str, Any], ceiling: Ceiling) -> None:
    """The ceiling's figures; a ceiling below the loader is a failure of the ceiling (it
    is then no ceiling), reported with both figures instead of a ratio."""
    best = max(ceiling.full, key=lambda a: a.items_per_s)
    out["ceiling_threads"] = best.threads
    best_rate = best.items_per_s
    if best_rate < out["loader_items_per_s"]:
        tried = ", ".join(
            f"{a.threads} threads {a.items_per_s:,.0f}/s" for a in ceiling.trials + ceiling.full
        )
        out.setdefault("failed", {})["ceiling"] = (
            f"the ceiling measured {best_rate:,.0f} items/s, below the loader's "
            f"{out['loader_items_per_s']:,.0f} ({tried})"
        )
        return
    out["ceiling_items_per_s"] = best_rate
    out["loader_vs_ceiling"] = out["loader_items_per_s"] / best_rate


def _met(value: float, op: str, target: float) -> bool:
    if op == "<":
        return value < target
    return value >= target if op == ">=" else value <= target


def missed_targets(result: dict[str, Any]) -> list[str]:
    """Each target whose figure was measured and misses it (a figure not measured is its
    stage's failure, reported as such)."""
    return [
        f"{key} {op} {target} (got {result[key]:,.2f})"
        for key, op, target in TARGETS
        if key in result and not _met(result[key], op, target)
    ]


def _rounded(out: dict[str, Any]) -> dict[str, Any]:
    """The figures rounded as printed, each target checked on them: any one missed fails
    the bench (``failed["targets"]``)."""
    rounded = {k: (round(v, 2) if isinstance(v, float) else v) for k, v in out.items()}
    missed = missed_targets(rounded)
    if missed:
        rounded["failed"] = {**rounded.get("failed", {}), "targets": "missed " + "; ".join(missed)}
    return rounded


TARGETS: tuple[tuple[str, str, float], ...] = (
    ("loader_vs_baseline", ">=", 2.0),
    ("loader_vs_ceiling", ">=", 0.7),
    ("loader_cpu_us_per_item", "<=", 40.0),
    ("extract_vs_mysql_client", ">=", 0.5),
    ("extract_vs_pandas", ">=", 2.0),
    ("backfill_peak_rss_mib", "<=", 1024.0),
    ("validate_peak_rss_mib", "<=", 1024.0),
    ("dag_parse_seconds_3_contracts", "<=", 1.0),
    ("sync_apply_vs_read", ">=", 0.5),
    ("sync_lag_p99_ms", "<", 2000.0),
    ("bucket_signature_vs_items", ">=", 3.0),
    ("parity_vs_plain_scan_millions", ">=", 1.0),
)
# From this many rows, a validation's parity against a plain read has a target (``--rows
# 2000000 --memory-only``): below it, the seconds of starting GX and the processes weigh.
MILLIONS = 1_000_000


def format_table(result: dict[str, Any]) -> str:
    lines = [f"{'figure':<28} {'value':>14}"]
    for key, value in result.items():
        if isinstance(value, dict):  # the routing and sync details: a line of their own
            continue
        lines.append(
            f"{key:<28} {value:>14,}" if isinstance(value, int) else f"{key:<28} {value:>14,.2f}"
        )
    lines.append("")
    if "botocore_items_per_s" in result:
        lines += [format_clients(result), ""]
    if "routing" in result:
        lines += [format_routing(result["routing"]), ""]
    if "sync" in result:
        lines += [format_sync(result), ""]
    for stage, why in (result.get("failed") or {}).items():
        lines.append(f"FAILED {stage}: {why}")
    for key, op, target in TARGETS:
        if key in result:
            ok = _met(result[key], op, target)
            lines.append(
                f"{'met ' if ok else 'MISSED'} {key} {op} {target} (got {result[key]:,.2f})"
            )
    return "\n".join(lines)
