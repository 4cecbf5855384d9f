"""The loader's own DynamoDB client against botocore's, at equal threads.

Both write the same items in the same BatchWriteItem batches of 25 into a fresh table, from
the same number of threads, with one connection per thread: the loader's ``BatchWriter`` over
``DynamoHttp``, and the same writer's shape (a thread pool, at most two batches per thread in
flight, UnprocessedItems sent again) over a botocore client's ``batch_write_item`` whose pool
holds as many connections as there are threads. Each client gets its natural input: the
loader JSON text, botocore AttributeValue dicts (parsed before the clock starts). Figures per
client: items/s, and items per CPU second of this process (DynamoDB Local runs in its own).
The runs alternate loader, botocore, botocore, loader, so neither profits alone from a warmer
DynamoDB Local; each client's figures are over both of its runs.

``python -m cutover.bench.clients --items N --threads T`` runs this part alone on synthetic
items (``CUTOVER_DYNAMODB_ENDPOINT`` and friends as for every command).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from cutover.aws import dynamodb_client
from cutover.bench.ceiling import fresh_table
from cutover.errors import TerminalError, TransientError
from cutover.load.batch_writer import BATCH_ITEMS, DEFAULT_BACKOFF, BatchWriter
from cutover.load.dynamo_http import DynamoHttp
from cutover.settings import Settings

log = logging.getLogger("cutover.bench")

LOADER = "loader"
BOTOCORE = "botocore"


@dataclass(frozen=True)
class ClientRun:
    client: str
    threads: int
    items: int
    seconds: float
    cpu_seconds: float


def _figures(runs: Sequence[ClientRun]) -> dict[str, float]:
    items = sum(r.items for r in runs)
    seconds = sum(r.seconds for r in runs)
    cpu = sum(r.cpu_seconds for r in runs)
    return {
        "items_per_s": items / seconds if seconds else 0.0,
        "items_per_cpu_s": items / cpu if cpu else 0.0,
    }


def loader_run(settings: Settings, table: str, bodies: Sequence[str], threads: int) -> ClientRun:
    http = DynamoHttp(settings)
    try:
        stats = BatchWriter(http, workers=threads).write(table, bodies)
    finally:
        http.close()
    return ClientRun(LOADER, threads, stats.items, stats.seconds, stats.cpu_seconds)


def _botocore_batch(client: Any, table: str, items: list[dict[str, Any]]) -> int:
    """Writes one batch, UnprocessedItems sent again with the loader's backoff; throttling
    and 5xx are retried by botocore itself (adaptive mode, as ``cutover.aws`` configures)."""
    pending = [{"PutRequest": {"Item": item}} for item in items]
    for attempt in range(DEFAULT_BACKOFF.max_attempts):
        answer = client.batch_write_item(RequestItems={table: pending})
        pending = answer.get("UnprocessedItems", {}).get(table, [])
        if not pending:
            return len(items)
        time.sleep(DEFAULT_BACKOFF.delay(attempt + 1))
    raise TransientError(
        f"{len(pending)} items for table {table!r} still unprocessed by botocore's client after "
        f"{DEFAULT_BACKOFF.max_attempts} attempts; retry the bench when DynamoDB is idle"
    )


def botocore_run(
    settings: Settings, table: str, items: Sequence[dict[str, Any]], threads: int
) -> ClientRun:
    client = dynamodb_client(settings, connections=threads)
    written = 0
    started, cpu_started = time.perf_counter(), time.process_time()
    in_flight: set[Future[int]] = set()
    with ThreadPoolExecutor(threads, thread_name_prefix="bench-botocore") as pool:
        for i in range(0, len(items), BATCH_ITEMS):
            if len(in_flight) >= 2 * threads:
                done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                written += sum(f.result() for f in done)
            batch = list(items[i : i + BATCH_ITEMS])
            in_flight.add(pool.submit(_botocore_batch, client, table, batch))
        written += sum(f.result() for f in in_flight)
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    client.close()
    return ClientRun(BOTOCORE, threads, written, seconds, cpu)


def compare_clients(
    settings: Settings, client: Any, table: str, bodies: Sequence[str], threads: int
) -> dict[str, Any]:
    """Both clients at ``threads`` threads on ``bodies`` (each run into a fresh ``table``,
    made with ``client``, a botocore DynamoDB client): items/s and items per CPU second of
    each, and the loader's over botocore's (``http_vs_botocore_*``)."""
    parsed = [json.loads(b) for b in bodies]
    runs: dict[str, list[ClientRun]] = {LOADER: [], BOTOCORE: []}
    for name in (LOADER, BOTOCORE, BOTOCORE, LOADER):
        fresh_table(client, table)
        if name == LOADER:
            run = loader_run(settings, table, bodies, threads)
        else:
            run = botocore_run(settings, table, parsed, threads)
        if run.items != len(bodies):
            raise TerminalError(
                f"the {name} client wrote {run.items} of {len(bodies)} items in the clients "
                "bench; its figures would not compare"
            )
        log.info(
            "clients: %s, %d threads, %d items in %.1f s (%.1f CPU s), %.0f items/s",
            name, threads, run.items, run.seconds, run.cpu_seconds,
            run.items / run.seconds if run.seconds else 0.0,
        )  # fmt: skip
        runs[name].append(run)
    loader, botocore = _figures(runs[LOADER]), _figures(runs[BOTOCORE])
    return {
        "clients_threads": threads,
        "loader_http_items_per_s": loader["items_per_s"],
        "loader_http_items_per_cpu_s": loader["items_per_cpu_s"],
        "botocore_items_per_s": botocore["items_per_s"],
        "botocore_items_per_cpu_s": botocore["items_per_cpu_s"],
        "http_vs_botocore_items_per_s": loader["items_per_s"] / botocore["items_per_s"],
        "http_vs_botocore_per_cpu": loader["items_per_cpu_s"] / botocore["items_per_cpu_s"],
    }


def format_clients(figures: dict[str, Any]) -> str:
    """The clients line: both clients side by side at equal threads (``compare_clients``'s
    figures, among the bench's)."""
    threads = figures["clients_threads"]
    return (
        f"clients at equal threads ({threads} threads, BatchWriteItem of {BATCH_ITEMS}): "
        f"loader's DynamoHttp {figures['loader_http_items_per_s']:,.0f} items/s, "
        f"{figures['loader_http_items_per_cpu_s']:,.0f} items/CPU-s | botocore "
        f"batch_write_item (pool {threads}) {figures['botocore_items_per_s']:,.0f} items/s, "
        f"{figures['botocore_items_per_cpu_s']:,.0f} items/CPU-s | DynamoHttp/botocore "
        f"{figures['http_vs_botocore_items_per_s']:.2f}x items/s, "
        f"{figures['http_vs_botocore_per_cpu']:.2f}x items/CPU-s"
    )


def synthetic_bodies(count: int, seed: int = 7) -> list[str]:
    """Items shaped as the bench contract's (``cutover.bench.synthetic``), as JSON text."""
    rng = random.Random(seed)
    bodies = []
    for i in range(count):
        day = f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T10:00:00"
        item = {
            "item_id": {"N": str(i)},
            "name": {"S": f"item {i} " + "x" * rng.randint(5, 40)},
            "price": {"N": f"{rng.randint(1, 99_999) / 100:.2f}"},
            "quantity": {"N": str(rng.randint(0, 500))},
            "created_at": {"S": day},
            "active": {"BOOL": rng.random() < 0.5},
        }
        bodies.append(json.dumps(item))
    return bodies


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=6)
    parser.add_argument("--table", default="bench_clients")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    settings = Settings.from_env()
    client = dynamodb_client(settings)
    table = settings.table_prefix + args.table
    result = compare_clients(settings, client, table, synthetic_bodies(args.items), args.threads)
    client.delete_table(TableName=table)
    print(format_clients(result))
    print(json.dumps({k: round(v, 2) for k, v in result.items()}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
