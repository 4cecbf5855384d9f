"""Checks shared by the routing tests: what the log of committed writes says DynamoDB must
hold, compared item by item with what it holds (the items the layer itself wrote, in phases
4-5); DynamoDB brought up to MySQL's binlog and compared with MySQL in full (phases 1-3,
where the layer writes MySQL only); and the traffic and the sync run in threads."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from cutover.contract.model import Contract
from cutover.routing.dynamo_store import key_av
from cutover.routing.layer import DualDatabase
from cutover.routing.traffic import run_traffic
from cutover.settings import Settings
from cutover.sync.runner import run_sync
from cutover.validate.canonical import canonical_item


def expected_from_log(log: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """(table, key) -> the newest logged write of that item (puts carry the item). Entries
    are ordered by ``at``, stamped while the item's row lock was held, so a shared item
    written by several threads ends with its newest derivation. Only the layer's own item
    writes are logged: a phase 1-3 write logs none (the sync writes DynamoDB)."""
    last: dict[tuple[str, str], dict[str, Any]] = {}
    for line in log.read_text().splitlines():
        entry = json.loads(line)
        for write in entry.get("items") or []:
            ident = (write["table"], json.dumps(write["key"], sort_keys=True))
            prior = last.get(ident)
            if prior is None or write["at"] >= prior["at"]:
                last[ident] = write
    return last


def differences_from_log(
    contract: Contract, ddb: Any, prefix: str, log: Path
) -> tuple[int, list[str]]:
    """(keys checked, descriptions of the keys whose DynamoDB state is not the logged one)."""
    tables = {t.table: t for t in contract.tables}
    expected = expected_from_log(log)
    wrong: list[str] = []
    for (table_name, key_text), write in expected.items():
        table = tables[table_name]
        key = json.loads(key_text)
        stored = ddb.get_item(TableName=prefix + table_name, Key=key_av(table, key),
                              ConsistentRead=True).get("Item")  # fmt: skip
        if write["op"] == "delete":
            if stored is not None:
                wrong.append(f"{table_name} {key}: deleted in the log, present in DynamoDB")
        elif stored is None:
            wrong.append(f"{table_name} {key}: written in the log, absent from DynamoDB")
        elif canonical_item(stored) != canonical_item(write["item"]):
            names = sorted(
                n for n in set(stored) | set(write["item"])
                if stored.get(n) != write["item"].get(n)
            )  # fmt: skip
            wrong.append(f"{table_name} {key}: attributes differ: {names}")
    return len(expected), wrong


class TrafficThread:
    """``run_traffic`` in a thread until ``finish()``; ``quiet()`` pauses its writes (reads
    go on) while a test compares both stores."""

    def __init__(self, layer: DualDatabase, log: Path, **options: Any) -> None:
        self.stop = threading.Event()
        self.pause = threading.Event()
        self.summary: dict[str, Any] = {}
        self.error: BaseException | None = None

        def run() -> None:
            try:
                self.summary = run_traffic(layer, duration=3600, log_path=log, stop=self.stop,
                                           pause_writes=self.pause, **options)  # fmt: skip
            except BaseException as exc:  # raised again by finish()
                self.error = exc

        self.thread = threading.Thread(target=run, name="traffic", daemon=True)
        self.thread.start()

    def quiet(self) -> None:
        self.pause.set()
        time.sleep(1.5)  # writes in flight finish

    def finish(self) -> dict[str, Any]:
        self.stop.set()
        self.thread.join(timeout=120)
        if self.error:
            raise self.error
        return self.summary


def synced_parity(contract: Contract, settings: Settings) -> tuple[dict[str, Any], dict[str, Any]]:
    """DynamoDB brought up to the binlog's end (``run_sync(once=True)``), then validated in
    full against MySQL: (the sync's report, the validation's report)."""
    from cutover.validate.run import validate

    synced = run_sync(contract, settings, once=True)
    return synced, validate(contract, settings)


def parity_failures(report: dict[str, Any]) -> list[Any]:
    """A failed validation's first differences per table (what an assertion shows)."""
    return [(t["table"], t["parity"]["differences"][:3]) for t in report["tables"]]


class SyncLoop:
    """``run_sync(once=True)`` over and over in a thread until ``stop()``: DynamoDB follows
    MySQL's binlog a run behind, as a sync that keeps running would keep it."""

    def __init__(self, contract: Contract, settings: Settings, pause: float = 0.2) -> None:
        self.runs = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()

        def run() -> None:
            try:
                while not self._stop.is_set():
                    run_sync(contract, settings, once=True)
                    self.runs += 1
                    self._stop.wait(pause)
            except BaseException as exc:  # raised again by stop()
                self.error = exc

        self.thread = threading.Thread(target=run, name="sync-loop", daemon=True)
        self.thread.start()

    def stop(self) -> int:
        """Stop after the run in progress; the number of runs."""
        self._stop.set()
        self.thread.join(timeout=120)
        if self.error:
            raise self.error
        return self.runs
