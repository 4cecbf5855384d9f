"""The routing line of `cutover bench`: what the dual-database layer costs a request.

A read (``get("USER", {"id": ...})``) and a write (``update("USER", {"id": ...},
{"bio": ...})``) through ``DualDatabase``, N sequential requests per case, p50/p99 in ms:

* phase 1 against the same call straight to MySQL, alternating request by request: for the
  read, the entity's view SELECT by key and the item build (``Deriver.derive``) on one
  autocommit connection; for the write, the same parameterised UPDATE (``bio`` and the
  version column the layer sets) in one transaction;
* phases 2, 3 and 4 through the layer (shadow rate 1.0: phase 3 and 4 reads are compared
  with the other store off the request path, as an application's would be), phase 4's
  write beside a plain TransactWriteItems of the same item;
* then the fence line (``cutover.bench.fence``): the write pause at each change of phase.

Everything runs on data of its own: the sample database (scale 1) in a MySQL database of
its own, prepared and backfilled into DynamoDB tables under a prefix of its own, both
removed afterwards. The layer's phase comes from a stub in the phase lines, so no phase
store is read or written there; the fence line moves the sample's own phase record.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import replace
from pathlib import Path
from typing import Any

from cutover.bench.fence import format_fence, run_fence_bench
from cutover.bench.synthetic import bench_database
from cutover.contract.model import Contract
from cutover.db import connect, query
from cutover.db import quote_ident as q
from cutover.phases.model import Phase
from cutover.phases.store import PhaseState
from cutover.routing.changes import VersionClock
from cutover.routing.entities import Entities
from cutover.routing.layer import DualDatabase
from cutover.routing.mysql_store import Deriver
from cutover.routing.stats import percentile
from cutover.settings import PROJECT_ROOT, Settings
from cutover.transform.items import Item

log = logging.getLogger("cutover.bench")

ROUTING_DATABASE = "cutover_bench_routing"
ROUTING_PREFIX = "bench_routing_"
ENTITY = "USER"
WARMUP = 30  # untimed requests per case: connections, DynamoDB Local's JIT, caches
PHASES = (Phase.DUAL_WRITE, Phase.DUAL_READ_MYSQL_PRIMARY, Phase.DUAL_READ_DYNAMODB_PRIMARY)


class FixedPhase:
    """Stands in for ``PhaseClient``: the layer is in the phase the bench sets, and the
    phase store (the contract's real record) is never read."""

    ttl = 0.0

    def __init__(self, phase: Phase) -> None:
        self.current = phase

    def phase(self, contract: str) -> Phase:
        return self.current

    def state(self, contract: str, *, fresh: bool = False) -> PhaseState:
        # epoch 0: the bench's contract has no phase record, so no move fences its writes
        return PhaseState(contract, self.current, 0, "bench", "", None)

    def wait_open(self, contract: str, timeout_seconds: float = 60.0) -> PhaseState:
        return self.state(contract)


def routing_settings(settings: Settings, staging: str) -> Settings:
    """The bench's own MySQL database and DynamoDB table prefix (both named after the
    caller's prefix, so that two runs with different prefixes never share them)."""
    return replace(
        settings,
        mysql=settings.mysql.with_database(bench_database(ROUTING_DATABASE, settings)),
        table_prefix=settings.table_prefix + ROUTING_PREFIX,
        staging=staging,
    )


def set_up_sample(contract: Contract, bench: Settings, workers: int, line: str,
                  error: type[Exception] = RuntimeError) -> None:  # fmt: skip
    """The sample database (scale 1) in ``bench``'s database, prepared and backfilled under
    its table prefix, for the bench ``line`` (routing, sync); ``error`` when a partition
    did not load."""
    from cutover.backfill.driver import backfill
    from cutover.prepare import prepare
    from cutover.sample.generator import load_sample

    log.info("%s: sample database %s (scale 1), prepared and backfilled under the table "
             "prefix %r", line, bench.mysql.database, bench.table_prefix)  # fmt: skip
    load_sample(bench, scale=1)
    # the library calls, not cutover.stages: no report or evidence of the real contract
    prepare(contract, bench)
    manifest = backfill(contract, bench, workers=workers, fresh=True)
    if not all(p["load"] is not None for p in manifest.get("partitions", [])):
        raise error(f"the {line} bench's backfill did not load every partition")


def tear_down(contract: Contract, bench: Settings) -> None:
    from cutover.aws import dynamodb_client
    from cutover.prepare.control_table import CONTROL_TABLE

    client = dynamodb_client(bench)
    for name in [t.table for t in contract.tables] + [CONTROL_TABLE]:
        with suppress(client.exceptions.ResourceNotFoundException):
            client.delete_table(TableName=bench.table_prefix + name)
    admin = connect(bench.mysql, database=False)
    try:
        query(admin, f"DROP DATABASE IF EXISTS {q(bench.mysql.database)}")
    finally:
        admin.close()


def user_ids(bench: Settings) -> tuple[list[int], list[int]]:
    """Users whose items the backfill loaded, and whose writes refresh only loadable items
    (the sample's planted defects excluded): alternate ones to read and to write, so that
    phase 1's writes, which leave DynamoDB behind, are never read by a shadow compare."""
    from cutover.sample.generator import planted_defects

    planted = planted_defects(scale=1)
    users = {d.source_pk["id"] for d in planted if d.source_table == "users"}
    products = sorted(d.source_pk["id"] for d in planted if d.source_table == "products")
    conn = connect(bench.mysql)
    try:
        marks = ", ".join(["%s"] * len(products))
        sellers = {r[0] for r in query(conn, "SELECT DISTINCT seller_id FROM products "
                                       f"WHERE id IN ({marks})", tuple(products))}  # fmt: skip
        ids = [r[0] for r in query(conn, "SELECT id FROM users ORDER BY id")]
    finally:
        conn.close()
    clean = [i for i in ids if i not in users | sellers]
    return clean[0::2], clean[1::2]


class Direct:
    """The same MySQL work as the layer's phase 1, without the layer."""

    def __init__(self, contract: Contract, bench: Settings) -> None:
        self.entity = Entities(contract).get(ENTITY)
        self.deriver = Deriver(contract)
        self.conn = connect(bench.mysql)
        self.clock = VersionClock()
        table = q(self.entity.source_table)
        version = q(self.entity.version_column or "")
        key = q(self.entity.source_key[0])
        self.update_sql = f"UPDATE {table} SET {q('bio')} = %s, {version} = %s WHERE {key} = %s"

    def read(self, user_id: int) -> Item:
        with self.conn.cursor() as cur:
            built = self.deriver.derive(cur, self.entity, {"id": [user_id]})
        return built[0]  # type: ignore[return-value]

    def write(self, user_id: int, bio: str) -> int:
        self.conn.begin()
        try:
            with self.conn.cursor() as cur:
                cur.execute(self.update_sql, (bio, self.clock.next(), user_id))
                count = int(cur.rowcount)
            self.conn.commit()
        except BaseException:
            self.conn.rollback()
            raise
        return count

    def close(self) -> None:
        self.conn.close()


def _ms(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = fn()
    return result, (time.perf_counter() - started) * 1000


def _summary(samples: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(samples, 50) or 0.0, 3),
        "p99_ms": round(percentile(samples, 99) or 0.0, 3),
    }


def _check_read(row: Any, user_id: int) -> None:
    if not row or int(row.get("id", row.get("user_id", -1))) != user_id:
        raise RuntimeError(f"the routing bench read no USER {user_id}")


def _layer(contract: Contract, bench: Settings, phase: Phase) -> DualDatabase:
    return DualDatabase(contract, bench, phases=FixedPhase(phase), shadow_rate=1.0)


def _phase_one(
    contract: Contract, bench: Settings, reads: list[int], writes: list[int], n: int
) -> dict[str, dict[str, list[float]]]:
    """Phase 1 and direct, request by request, each going first every other time."""
    layer, direct = _layer(contract, bench, Phase.MYSQL_ONLY), Direct(contract, bench)
    samples: dict[str, dict[str, list[float]]] = {
        "direct": {"read": [], "write": []},
        "layer": {"read": [], "write": []},
    }
    try:
        for timed, count in ((False, WARMUP), (True, n)):
            for i in range(count):
                w, r = writes[i % len(writes)], reads[i % len(reads)]
                cases: list[tuple[str, str, Callable[[], Any]]] = [
                    ("direct", "write", lambda w=w, i=i: direct.write(w, f"direct {i} ✨")),
                    ("layer", "write", lambda w=w, i=i: layer.update(
                        ENTITY, {"id": w}, {"bio": f"phase 1 {i} ✨"})),
                ]  # fmt: skip
                reading: list[tuple[str, str, Callable[[], Any]]] = [
                    ("direct", "read", lambda r=r: direct.read(r)),
                    ("layer", "read", lambda r=r: layer.get(ENTITY, {"id": r})),
                ]
                if i % 2:
                    cases.reverse()
                    reading.reverse()
                for who, op, fn in (*cases, *reading):
                    result, ms = _ms(fn)
                    if op == "read":
                        if who == "direct" and not isinstance(result, Item):
                            raise RuntimeError(f"USER {r} made no item: {result}")
                        if who == "layer":
                            _check_read(result, r)
                    if timed:
                        samples[who][op].append(ms)
    finally:
        layer.close()
        direct.close()
    return samples


def _dual_phase(
    contract: Contract, bench: Settings, phase: Phase, reads: list[int], writes: list[int], n: int
) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Writes, then reads (whose shadow compares the close waits for) in ``phase``."""
    layer = _layer(contract, bench, phase)
    samples: dict[str, list[float]] = {"read": [], "write": []}
    outboxed = 0
    try:
        for timed, count in ((False, WARMUP), (True, n)):
            for i in range(count):
                w = writes[i % len(writes)]
                values = {"bio": f"phase {int(phase)} {i} ✨"}
                result, ms = _ms(lambda w=w, v=values: layer.update(ENTITY, {"id": w}, v))
                outboxed += result.outboxed
                if timed:
                    samples["write"].append(ms)
                if phase == Phase.DUAL_READ_DYNAMODB_PRIMARY:
                    # the same item put by one plain TransactWriteItems on the same client
                    item = result.items[-1]["item"]
                    op = layer.dynamo.item_op("Put", layer.entities.get(ENTITY).table, item,
                                              None, True)  # fmt: skip
                    op["Put"].pop("ConditionExpression")
                    op["Put"].pop("ExpressionAttributeNames")
                    _, plain_ms = _ms(lambda o=op: layer.dynamo.transact([o], None))
                    if timed:
                        samples.setdefault("plain_transact", []).append(plain_ms)
        for timed, count in ((False, WARMUP), (True, n)):
            for i in range(count):
                r = reads[i % len(reads)]
                row, ms = _ms(lambda r=r: layer.get(ENTITY, {"id": r}))
                _check_read(row, r)
                if timed:
                    samples["read"].append(ms)
    finally:
        layer.close()  # waits for the shadow compares still queued
    extra: dict[str, Any] = {"outboxed": outboxed}
    if phase in (Phase.DUAL_READ_MYSQL_PRIMARY, Phase.DUAL_READ_DYNAMODB_PRIMARY):
        shadow = layer.stats.shadow_evidence(phase)
        extra["shadow"] = {k: shadow[k] for k in ("comparisons", "mismatches", "errors")}
    return samples, extra


def run_routing_bench(settings: Settings, requests: int = 300, workers: int = 4) -> dict[str, Any]:
    """p50/p99 (ms) of a read and a write through the layer in phases 1-4 and straight to
    MySQL, ``requests`` sequential requests per case; phase 1's p50 ratios layer/direct."""
    from cutover.contract.load import load_contract

    if requests < 1:
        raise ValueError("the routing bench needs at least one request per case")
    contract = load_contract(PROJECT_ROOT / "contracts" / "ecommerce.json")
    with tempfile.TemporaryDirectory() as tmp:
        bench = routing_settings(settings, Path(tmp, "staging").as_uri())
        try:
            set_up_sample(contract, bench, workers, "routing")
            reads, writes = user_ids(bench)
            log.info("routing: phase 1 and direct, %d requests per case", requests)
            one = _phase_one(contract, bench, reads, writes, requests)
            out: dict[str, Any] = {
                "requests": requests,
                "direct": {op: _summary(one["direct"][op]) for op in ("read", "write")},
            }
            first = {op: _summary(one["layer"][op]) for op in ("read", "write")}
            for op in ("read", "write"):
                layer_p50 = percentile(one["layer"][op], 50) or 0.0
                direct_p50 = percentile(one["direct"][op], 50) or 1.0
                first[f"{op}_vs_direct"] = round(layer_p50 / direct_p50, 2)
            phases: dict[str, Any] = {"1": first}
            for phase in PHASES:
                log.info("routing: phase %d, %d requests per case", phase, requests)
                samples, extra = _dual_phase(contract, bench, phase, reads, writes, requests)
                phases[str(int(phase))] = {
                    **{op: _summary(samples[op]) for op in ("read", "write")},
                    **extra,
                }
                if plain := samples.get("plain_transact"):
                    layer_p50 = percentile(samples["write"], 50) or 0.0
                    phases[str(int(phase))]["plain_transact"] = {
                        **_summary(plain),
                        "write_vs_plain": round(layer_p50 / (percentile(plain, 50) or 1.0), 2),
                    }
            out["phases"] = phases
            log.info("routing: fenced moves 1-2-3-4-3-4-5 under writes at 50/s")
            out["fence"] = run_fence_bench(contract, bench, writes)
        finally:
            tear_down(contract, bench)
    return out


def format_routing(routing: dict[str, Any]) -> str:
    """The routing line: p50/p99 in ms per case, phase 1's ratios, phases 3-4's shadow."""

    def pair(figures: dict[str, float]) -> str:
        return f"{figures['p50_ms']:.3f}/{figures['p99_ms']:.3f}"

    d = routing["direct"]
    parts = [f"direct read {pair(d['read'])} write {pair(d['write'])}"]
    for phase, p in routing["phases"].items():
        part = f"phase {phase} read {pair(p['read'])} write {pair(p['write'])}"
        if "read_vs_direct" in p:
            part += (
                f" (layer/direct p50: read {p['read_vs_direct']:.2f},"
                f" write {p['write_vs_direct']:.2f})"
            )
        if "plain_transact" in p:
            t = p["plain_transact"]
            part += (f" (plain TransactWriteItems {pair(t)}, layer/plain write p50 "
                     f"{t['write_vs_plain']:.2f})")  # fmt: skip
        if "shadow" in p:
            s = p["shadow"]
            part += f" (shadow: {s['comparisons']} compared, {s['mismatches']} mismatched)"
        if p.get("outboxed"):
            part += f" ({p['outboxed']} writes outboxed)"
        parts.append(part)
    head = f"routing ms p50/p99, {routing['requests']} sequential requests per case:"
    line = head + " " + "; ".join(parts)
    if "fence" in routing:
        line += "\n" + format_fence(routing["fence"])
    return line
