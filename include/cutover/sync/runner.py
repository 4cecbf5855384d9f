"""``run_sync``: DynamoDB follows MySQL's binlog, what `cutover sync` and the
``<contract>__sync`` DAG run.

Where it starts: the checkpoint; else, when ``start`` is given (the backfill's handoff), there;
else the binlog's current end (nothing before it needs following: the backfill hands off).

The snapshot handoff (why not DBLog-style watermarks): the backfill records the binlog
position before its first read and stamps every item with it; once its loads are done, its
last step runs this function from that position (``handoff``), which derives again every item
a change since then touched, deletes included, from MySQL as it stands. That is one more pass
over the changes made during the backfill, with no watermark table to write into the source
database, no chunk-by-chunk interleaving with the sync and no version column: the same code
path as the live sync, so what converges one converges the other.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cutover.binlog.checkpoint import CheckpointStore
from cutover.binlog.lease import SyncLease
from cutover.binlog.position import (
    Position,
    binlog_sizes,
    bytes_between,
    current_position,
    gtid_seq,
    is_mariadb,
)
from cutover.contract.model import Contract
from cutover.db import connect
from cutover.errors import ServiceError
from cutover.load.dynamo_http import DynamoHttp
from cutover.phases.model import Phase
from cutover.phases.store import PhaseStore
from cutover.progress import Progress
from cutover.routing.dynamo_store import DynamoStore
from cutover.settings import Settings
from cutover.sync.applier import Applier, BatchResult
from cutover.sync.mapper import DependencyIndex, Ref, cascades_of
from cutover.sync.reader import BinlogReader, Commit, Idle, Restarted, RowChange
from cutover.transform.items import Rejection, item_version

log = logging.getLogger("cutover.sync")

BATCH_REFS = 20_000  # refs gathered before a batch is applied (memory: items of a batch)
BATCH_TRANSACTIONS = 10_000
QUEUE_TRANSACTIONS = 5_000  # transactions read ahead of the applier
# how long a batch waits for more once the reader has nothing more, at least: changes of
# one row within it are derived and written once, and it bounds the lag it adds. A batch
# also stays open as long as the last one took to apply, so that under a backlog batches
# grow to what is read while one applies, and at a steady trickle they stay small.
LINGER_SECONDS = 0.2
MAX_LINGER_SECONDS = 1.0
EVIDENCE_EVERY = 10.0  # seconds between evidence points of a long run
BatchHook = Callable[[Position, float, int], None]


class StoodDown(Exception):
    """The contract moved to phase 4 or 5 while the sync ran."""


@dataclass
class _Figures:
    started: float = field(default_factory=time.monotonic)
    transactions: int = 0
    rows: int = 0
    batches: int = 0
    result: BatchResult = field(default_factory=BatchResult)
    lag_seconds: float = 0.0
    events_behind: int = 0
    bytes_behind: int = 0

    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.result.items / elapsed if elapsed > 0 else 0.0


def _events_between(start: Position, end: Position) -> int:
    """Transactions between two MariaDB GTID states (domain by domain); 0 without GTIDs."""
    total = 0
    for part in (end.gtid or "").split(","):
        domain = part.strip().split("-", 1)[0]
        a, b = gtid_seq(start.gtid, domain) or 0, gtid_seq(end.gtid, domain) or 0
        total += max(b - a, 0)
    return total


class SyncRun:
    def __init__(self, contract: Contract, settings: Settings) -> None:
        from cutover.aws import dynamodb_client

        self.contract = contract
        self.settings = settings
        self.index = DependencyIndex(contract)
        self.client = dynamodb_client(settings)
        self.checkpoints = CheckpointStore(self.client, settings.table_prefix)
        self.lease = SyncLease(self.client, settings.table_prefix, contract.name)
        self.phases = PhaseStore(self.client, settings.table_prefix)
        self.http = DynamoHttp(settings)
        self.applier = Applier(contract, self.index, DynamoStore(self.http, settings.table_prefix))
        self.conn = connect(settings.mysql, read_timeout=120, write_timeout=60)
        self.mariadb = is_mariadb(self.conn)
        self.index.set_cascades(cascades_of(self.conn))

    def close(self) -> None:
        self.applier.close()
        self.http.close()
        self.conn.close()

    def reader(self, start: Position) -> BinlogReader:
        return BinlogReader(self.settings.mysql, start, schema=self.settings.mysql.database,
                            tables=self.index.tables(), mariadb=self.mariadb)  # fmt: skip

    def behind(self, at: Position, figures: _Figures) -> Position:
        end = current_position(self.conn)
        figures.bytes_behind = bytes_between(binlog_sizes(self.conn), at, end)
        figures.events_behind = _events_between(at, end)
        return end


def stand_down_reason(settings: Settings, contract: Contract) -> str | None:
    """Why the binlog sync must not write DynamoDB now (phases 4-5), or None."""
    from cutover.phases.guard import mysql_to_dynamodb_refusal

    return mysql_to_dynamodb_refusal(settings, contract.name, "the binlog sync")


def run_sync(
    contract: Contract,
    settings: Settings,
    *,
    once: bool = False,
    max_seconds: float | None = None,
    stop: threading.Event | None = None,
    start: Position | None = None,
    checkpoint: bool = True,
    record: bool = True,
    on_batch: BatchHook | None = None,
) -> dict[str, Any]:
    """Apply the binlog's changes to DynamoDB (see the module's docstring). ``once`` stops at
    the binlog's end as it was when the run started; ``max_seconds`` or ``stop`` end a run
    that follows the binlog; ``checkpoint=False`` reads from ``start`` without moving the
    checkpoint (the backfill's handoff), except to create it when there is none."""
    report, _ = _run(
        contract, settings, once=once, max_seconds=max_seconds, stop=stop, start=start,
        checkpoint=checkpoint, record=record, on_batch=on_batch,
    )  # fmt: skip
    return report


def _run(
    contract: Contract,
    settings: Settings,
    *,
    once: bool,
    max_seconds: float | None,
    stop: threading.Event | None,
    start: Position | None,
    checkpoint: bool,
    record: bool,
    on_batch: BatchHook | None,
) -> tuple[dict[str, Any], list[Rejection]]:
    figures = _Figures()
    if checkpoint and (why := stand_down_reason(settings, contract)):
        log.info("%s", why)
        return {**_report(contract, None, figures), "stood_down": why}, []
    run = SyncRun(contract, settings)
    stop = stop or threading.Event()
    try:
        saved = run.checkpoints.load(contract.name)
        begin = (start if start is not None or not checkpoint else saved) or current_position(
            run.conn
        )
        if checkpoint and saved is None:
            run.checkpoints.save(contract.name, begin)  # a restart starts here, not later
        target = run.behind(begin, figures) if once else None
        log.info("sync of %s from %s%s", contract.name, begin,
                 f" to {target}" if target else "")  # fmt: skip
        if target is not None and target.ordinal <= begin.ordinal:
            last = begin  # nothing to apply
        else:
            try:
                last = _follow(run, begin, target, once, max_seconds, stop, figures,
                               on_batch, checkpoint)  # fmt: skip
            except StoodDown as exc:
                log.info("%s", exc)
                return {**_report(contract, None, figures), "stood_down": str(exc)}, []
        if not checkpoint and saved is None:
            run.checkpoints.save(contract.name, last)
        run.behind(last, figures)
        report = _report(contract, last, figures)
    except Exception as exc:
        report = {"error": str(exc)}
        if record:
            _record(settings, contract, {**_report(contract, None, figures), **report})
        raise
    finally:
        run.close()
    if record:
        _record(settings, contract, report)
    return report, figures.result.rejections


@dataclass(frozen=True)
class _Transaction:
    """One committed transaction, as the pump hands it over: the refs of its rows."""

    refs: frozenset[Ref]
    rows: int
    commit: Commit


@dataclass(frozen=True)
class _Failed:
    error: BaseException


class _Pump:
    """The binlog read in a thread of its own, transaction by transaction, into a bounded
    queue: decoding and mapping rows overlaps applying the batch before, and the applier
    learns that nothing more has been read (the queue is empty) without waiting on a socket.
    That is what sizes a batch: everything read while the last one was being applied."""

    def __init__(self, reader: BinlogReader, index: DependencyIndex) -> None:
        self.reader = reader
        self.index = index
        self.queue: queue.Queue[_Transaction | Idle | _Failed] = queue.Queue(QUEUE_TRANSACTIONS)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="cutover-binlog", daemon=True)
        self.thread.start()

    def _offer(self, item: _Transaction | Idle | _Failed) -> bool:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        refs: set[Ref] = set()
        rows = 0
        try:
            for event in self.reader.events():
                if isinstance(event, RowChange):
                    rows += 1
                    refs.update(self.index.refs(event.table, event.before, event.after))
                    continue
                if isinstance(event, Restarted):
                    refs, rows = set(), 0  # the transaction's rows come again
                    continue
                if isinstance(event, Commit):
                    item: _Transaction | Idle = _Transaction(frozenset(refs), rows, event)
                    refs, rows = set(), 0
                else:
                    item = event
                if not self._offer(item):
                    break
        except BaseException as exc:  # handed to the applier, which raises it
            self._offer(_Failed(exc))
        finally:
            self.reader.close()

    def close(self) -> None:
        """Stop reading. The thread may be waiting on the stream: it sees the stop at the
        next event or heartbeat and closes the stream itself (a daemon, not waited for, so a
        run that is done returns without waiting out a heartbeat)."""
        self.stop.set()
        self.thread.join(timeout=0.05)


def _follow(run: SyncRun, begin: Position, target: Position | None, once: bool,
            max_seconds: float | None, stop: threading.Event, figures: _Figures,
            on_batch: BatchHook | None, checkpoint: bool) -> Position:  # fmt: skip
    contract = run.contract
    pump = _Pump(run.reader(begin), run.index)
    progress = Progress(f"sync {contract.name}", None, unit="transactions")
    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    batch: set[Ref] = set()
    pending: Commit | None = None  # the last commit read, not yet applied
    in_batch = 0
    opened = 0.0  # when the batch took its first transaction
    linger = LINGER_SECONDS
    applied = begin
    last_evidence = time.monotonic()

    def flush(caught_up: bool) -> None:
        nonlocal batch, in_batch, applied, pending, linger
        if pending is None:
            return
        began = time.monotonic()
        with run.lease.held():  # one applier's batch at a time (cutover.binlog.lease)
            # read under the lease, per batch: a change of phase bumps the epoch, and from
            # phase 4 on DynamoDB is authoritative and this batch must not be written
            state = run.phases.get(contract.name)
            if checkpoint and state.phase >= Phase.DUAL_READ_DYNAMODB_PRIMARY:
                raise StoodDown(
                    f"{contract.name} moved to phase {int(state.phase)} "
                    f"({state.phase.slug}) during the sync; it stands down"
                )
            version = item_version(state.version, pending.position.ordinal)
            result = run.applier.apply(run.conn, batch, version,
                                       before_write=run.lease.check)  # fmt: skip
            if checkpoint:
                run.checkpoints.save(contract.name, pending.position)
        linger = min(max(LINGER_SECONDS, time.monotonic() - began), MAX_LINGER_SECONDS)
        figures.result.add(result)
        figures.batches += 1
        applied = pending.position
        figures.lag_seconds = 0.0 if caught_up else max(time.time() - pending.committed_at, 0.0)
        if on_batch is not None:
            on_batch(applied, time.time(), in_batch)
        batch, in_batch, pending = set(), 0, None
        progress.update(figures.transactions)

    try:
        while True:
            try:
                item = pump.queue.get(timeout=0.05)
            except queue.Empty:
                item = None
            if isinstance(item, _Failed):
                raise item.error
            reached = False
            if isinstance(item, _Transaction):
                if pending is None:
                    opened = time.monotonic()
                batch |= item.refs
                pending = item.commit  # the checkpoint moves past other schemas' commits too
                if item.rows:
                    in_batch += 1
                    figures.transactions += 1
                    figures.rows += item.rows
                reached = target is not None and pending.position.ordinal >= target.ordinal
            elif isinstance(item, Idle):
                flush(caught_up=True)
                figures.lag_seconds = 0.0
                if once:
                    break
            lingered = pump.queue.empty() and time.monotonic() - opened >= linger
            if reached or lingered or len(batch) >= BATCH_REFS or in_batch >= BATCH_TRANSACTIONS:
                flush(caught_up=reached)
            if reached:
                break
            if (deadline is not None and time.monotonic() >= deadline) or stop.is_set():
                flush(caught_up=False)
                break
            if time.monotonic() - last_evidence >= EVIDENCE_EVERY and not once:
                last_evidence = time.monotonic()
                if checkpoint and (why := stand_down_reason(run.settings, contract)):
                    log.info("%s", why)
                    flush(caught_up=False)  # read while the phase was 3: still MySQL's
                    break
                run.behind(applied, figures)
                _record(run.settings, contract, _report(contract, applied, figures))
    finally:
        pump.close()
    progress.done(figures.transactions)
    return applied


def _report(contract: Contract, at: Position | None, figures: _Figures) -> dict[str, Any]:
    r = figures.result
    return {
        "contract": contract.name,
        "position": at.to_dict() if at else None,
        "transactions": figures.transactions,
        "rows": figures.rows,
        "batches": figures.batches,
        "items_written": r.written,
        "items_deleted": r.deleted,
        "kept_newer": r.kept_newer,
        "rejected": r.rejected,
        "fallbacks": r.fallbacks,
        "unchanged": r.unchanged,
        "applied_per_second": round(figures.rate(), 1),
        "lag_seconds": round(figures.lag_seconds, 3),
        "events_behind": figures.events_behind,
        "bytes_behind": figures.bytes_behind,
        "seconds": round(time.monotonic() - figures.started, 3),
    }


def _record(settings: Settings, contract: Contract, payload: dict[str, Any]) -> None:
    from cutover.phases.store import record

    try:
        record(settings, contract, "sync", payload)
    except Exception as exc:  # evidence is best effort; the position is what matters
        log.warning("could not record the sync's evidence: %s", exc)


def handoff(
    contract: Contract, settings: Settings, start: Position
) -> tuple[dict[str, Any], list[Rejection]]:
    """The backfill's last step: apply every change since ``start`` (the position recorded
    before the snapshot) over the loaded items, up to the binlog's end now; the report and
    the rows that could not become items."""
    return _run(contract, settings, once=True, max_seconds=None, stop=None, start=start,
                checkpoint=False, record=False, on_batch=None)  # fmt: skip


def require_binlog(settings: Settings) -> Position:
    """The binlog's current position, or a ``ServiceError`` naming what to turn on."""
    conn = connect(settings.mysql)
    try:
        return current_position(conn)
    except ServiceError:
        raise
    finally:
        conn.close()
