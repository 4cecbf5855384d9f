"""The headline of the routing layer: the sample application keeps running through the
layer while its contract goes from mysql_only to dynamodb_only through the real gates. A
real `airflow standalone` runs each phase_gate DAG and this test approves over the REST API
as a person would; the stages run as `cutover` runs them. No request fails; in phases 1-3
the application writes MySQL only, beside a writer that bypasses cutover with plain SQL on
the same rows (``BypassWriter``), and DynamoDB follows the binlog (the sync, run here by
the test: the backfill's handoff, then ``run_sync(once=True)`` over and over, as the sync
DAG would keep it); the gate into phase 3 shows the sync's evidence; full parity holds in
phases 2, 3 and 4, and at the end DynamoDB holds
exactly what the log of the layer's own item writes (phases 4-5) says.

The full parity runs (validate in phase 2, validate and reconcile in phases 3-4) pause the
traffic's writes while they read both stores (reads go on): a full comparison of two stores
that are being written is not a consistent cut. So does the move into phase 4, fenced by
hand as DESIGN.md's epochs will fence it: no phase-3 write lands in MySQL after the last
sync. Everything else runs under writes.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from tests.airflow_standalone import Api, standalone, trigger_and_answer
from tests.routing_checks import BypassWriter, SyncLoop, TrafficThread

from cutover.contract.load import load_contract
from cutover.phases.model import Phase
from cutover.phases.store import PhaseStore
from cutover.routing.layer import DualDatabase
from cutover.sample.generator import load_sample
from cutover.settings import PROJECT_ROOT, Settings
from cutover.stages import run_backfill, run_prepare, run_reconcile, run_validate
from cutover.sync.runner import run_sync

pytestmark = [pytest.mark.e2e, pytest.mark.mysql, pytest.mark.dynamodb, pytest.mark.airflow]

# A phase-3 shadow read that differs is read again after this long: DynamoDB follows MySQL a
# sync run behind, so a read of a row just written may find its item not yet synced.
RECHECK_SECONDS = 2.0


@pytest.fixture
def walk(
    scratch_db: Settings, ddb: Any, tmp_path: Path
) -> Iterator[tuple[Api, Any, Settings, PhaseStore, Path]]:
    name = f"walk_{uuid.uuid4().hex[:6]}"
    doc = json.loads((PROJECT_ROOT / "contracts" / "ecommerce.json").read_text())
    doc["cutover"]["name"] = name
    contracts = tmp_path / "contracts"
    contracts.mkdir()
    path = contracts / f"{name}.json"
    path.write_text(json.dumps(doc))
    settings = replace(scratch_db, table_prefix=f"{scratch_db.table_prefix}{name}_")
    load_sample(settings, scale=1)
    contract = load_contract(path)
    env = {"CUTOVER_DYNAMODB_ENDPOINT": settings.dynamodb_endpoint or "",
           "CUTOVER_TABLE_PREFIX": settings.table_prefix,
           "CUTOVER_MYSQL_URL": f"mysql://root@{settings.mysql.host}:{settings.mysql.port}/"
                                f"{settings.mysql.database}",
           # only the phase gate runs (see _only_the_gate_runs)
           "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True"}  # fmt: skip
    home = tmp_path / "airflow"
    home.mkdir()
    try:
        with standalone(home, contracts, env) as api:
            yield api, contract, settings, PhaseStore(ddb, settings.table_prefix), tmp_path
    finally:
        for t in [*contract.tables, None]:
            table = settings.table_prefix + (t.table if t else "cutover_control")
            with suppress(Exception):  # never created
                ddb.delete_table(TableName=table)
        if os.environ.get("CUTOVER_KEEP_AIRFLOW_HOME") is None:
            shutil.rmtree(home, ignore_errors=True)


# what the approver must see for each step: the evidence kinds the gate rests on
_SHOWN: dict[Phase, str | tuple[str, ...]] = {
    Phase.DUAL_WRITE: "**prepare**",
    Phase.DUAL_READ_MYSQL_PRIMARY: ("**validate**", "**sync**"),
    Phase.DUAL_READ_DYNAMODB_PRIMARY: "**shadow_reads**: phase=3",
    Phase.DYNAMODB_ONLY: "**dual_writes**: phase=4",
}


def _explain(report: dict[str, Any], settings: Settings, log: Path) -> str:
    """The differing keys, with what the log of writes and MySQL say of each."""
    from cutover.db import connect, query

    out = []
    lines = log.read_text().splitlines() if log.exists() else []
    conn = connect(settings.mysql)
    try:
        for table in report["tables"]:
            for diff in table["parity"]["differences"][:3]:
                key = f'"{diff["PK"]}"'
                out.append(f"{table['table']} {diff['kind']} {diff['PK']} {diff.get('SK')}: "
                           f"{diff.get('attributes')}")  # fmt: skip
                out += [f"  log: {line[:600]}" for line in lines if key in line][-6:]
                if diff.get("SK", "").startswith("CART#"):
                    user, product = diff["PK"].split("#")[1], diff["SK"].split("#")[1]
                    sql = ("SELECT id, quantity, updated_at FROM shopping_carts "
                           "WHERE user_id = %s AND product_id = %s")  # fmt: skip
                    rows = query(conn, sql, (user, product))
                    out.append(f"  mysql: {rows}")
    finally:
        conn.close()
    return "\n".join(out)


def _advance(api: Api, store: PhaseStore, contract: Any, target: Phase) -> None:
    state = trigger_and_answer(api, f"{contract.name}__phase_gate", "Approve",
                               target=target.slug, expect_in_body=_SHOWN[target])  # fmt: skip
    if state != "success":  # the gate's reasons as they stand now (check_evidence's view)
        from cutover.phases.gate import decide

        current = store.get(contract.name).phase
        decision = decide(current, target, store.evidence(contract.name), contract.cutover.gate)
        raise AssertionError(f"phase_gate to {target.slug} ended {state}: {decision.summary()}")
    assert store.get(contract.name).phase == target


def _wait_for(what: str, check: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)  # poll: until check() holds
    raise AssertionError(f"timed out waiting for {what}")


def _shadow(store: PhaseStore, contract: Any, phase: Phase) -> dict[str, Any]:
    def ready() -> Any:
        ev = store.evidence(contract.name).get("shadow_reads")
        return ev if ev and ev["phase"] == phase and ev["comparisons"] >= 30 else None

    return _wait_for(f"shadow reads in {phase.slug}", ready, timeout=120)


def _only_the_gate_runs(api: Api, contract: Any) -> None:
    """The contract's DAGs are created paused and only the phase gate is resumed: the walk
    runs the stages itself. A scheduled DAG would race with them (the nightly reconcile's
    first run starts as soon as the DAG appears and validates into the same GX project),
    and the sync DAG would run in phases 4-5, where the sync must not run (it does not check
    the phase yet; in phase 5 it would put back items DynamoDB deleted, whose rows MySQL
    keeps)."""
    dag = f"{contract.name}__phase_gate"
    api.wait(f"DAG {dag} to be parsed", lambda: api.call("GET", f"/api/v2/dags/{dag}"))
    assert not api.call("PATCH", f"/api/v2/dags/{dag}", {"is_paused": False})["is_paused"]


def test_traffic_runs_through_all_five_phases_without_a_failed_request(walk: Any, ddb: Any) -> None:
    api, contract, settings, store, tmp = walk
    _only_the_gate_runs(api, contract)
    run_prepare(contract, settings)
    layer = DualDatabase(contract, settings, shadow_rate=1.0, recheck_seconds=RECHECK_SECONDS)
    layer.phases.ttl = 1.0
    log = tmp / "traffic.jsonl"
    traffic = TrafficThread(layer, log, rate=12, threads=3, seed=11, flush_every=2.0)
    bypass: BypassWriter | None = BypassWriter(settings, seed=5)  # phases 1-3
    sync: SyncLoop | None = None
    figures: dict[str, Any] = {}
    try:
        traffic.wait_requests(30)  # phase 1 traffic
        _advance(api, store, contract, Phase.DUAL_WRITE)
        traffic.wait_requests(30)
        manifest = run_backfill(contract, settings)  # while the application writes MySQL
        assert manifest["handoff"]["transactions"] > 0  # it wrote during the copy
        sync = SyncLoop(contract, settings)  # from the handoff's checkpoint on

        traffic.quiet()
        bypass.quiet()
        run_sync(contract, settings, once=True)  # DynamoDB at the binlog's end
        report = run_validate(contract, settings)
        assert report["success"], [t["parity"]["differences"][:3] for t in report["tables"]]
        traffic.pause.clear()
        bypass.resume()
        run_sync(contract, settings, once=True)  # fresh sync evidence for the gate
        _advance(api, store, contract, Phase.DUAL_READ_MYSQL_PRIMARY)

        shadow3 = _shadow(store, contract, Phase.DUAL_READ_MYSQL_PRIMARY)
        assert shadow3["mismatches"] == 0, json.dumps(shadow3["mismatched"], default=str)
        traffic.quiet()
        figures["bypass"] = bypass.finish()
        bypass = None
        run_sync(contract, settings, once=True)
        # full parity at the end of phase 3, after two writers of the same rows (one of them
        # bypassing cutover) and the sync: checked, not repaired
        parity = run_validate(contract, settings)
        assert parity["success"], _explain(parity, settings, log)
        assert run_reconcile(contract, settings, repair=True)["success"]
        # writes stay paused until the layer writes DynamoDB first: the last sync (also the
        # gate's fresh evidence) then leaves no phase-3 write behind
        run_sync(contract, settings, once=True)
        _advance(api, store, contract, Phase.DUAL_READ_DYNAMODB_PRIMARY)
        _wait_for("the layer to read phase 4",
                  lambda: layer.phase() == Phase.DUAL_READ_DYNAMODB_PRIMARY)  # fmt: skip
        figures["sync_runs"] = sync.stop()
        figures["sync_errors"] = sync.errors  # runs that failed and ran again
        sync = None
        traffic.pause.clear()

        shadow4 = _shadow(store, contract, Phase.DUAL_READ_DYNAMODB_PRIMARY)
        assert shadow4["mismatches"] == 0, shadow4["mismatched"]
        traffic.quiet()
        parity = run_validate(contract, settings)  # DynamoDB answers; MySQL must still agree
        assert parity["success"], _explain(parity, settings, log)
        assert run_reconcile(contract, settings, repair=True)["success"]
        traffic.pause.clear()
        traffic.wait_requests(30)
        layer.flush()
        _advance(api, store, contract, Phase.DYNAMODB_ONLY)
        traffic.wait_requests(50)  # phase 5 traffic
        figures["shadow"] = {3: shadow3, 4: shadow4}
    finally:
        try:
            if sync is not None:
                sync.stop()
            if bypass is not None:
                bypass.finish()
        finally:
            summary = traffic.finish()
            layer.close()
    figures["summary"] = summary
    (tmp.parent / "phase_walk_figures.json").write_text(json.dumps(figures, default=str))
    shadow = {p: {k: v[k] for k in ("comparisons", "mismatches", "transient", "errors")}
              for p, v in figures.get("shadow", {}).items()}  # fmt: skip
    print(json.dumps({"requests": summary["requests"], "failed": summary["failed"],
                      "by_phase": summary["by_phase"], "shadow": shadow,
                      "sync_runs": figures.get("sync_runs"), "bypass": figures.get("bypass"),
                      "sync_errors": figures.get("sync_errors"),
                      "outboxed": summary["outboxed"]}, default=str))  # fmt: skip

    assert summary["failed"] == 0, summary["errors"]
    assert summary["phases"] == [1, 2, 3, 4, 5]
    assert set(figures["bypass"]) == set(BypassWriter.KINDS), figures["bypass"]
    # Phase 5 refuses the writes whose attributes the sample derives with MySQL (joins,
    # aggregates, expressions): counted apart (summary["refused"]), not failed. What DynamoDB
    # ends with is judged against the test's own history in tests/e2e/test_phase_history.py.
