"""Run a contract's DAG through Airflow in this process (`dag.test()`): what `make demo` and
the end-to-end tests use, against the embedded SQLite metadata database.

`dag.test()` also registers every DAG of the folder in that database. Registered paused (the
default of ``[core] dags_are_paused_at_creation``), they would stay paused when `make airflow`
later serves the same database: no nightly reconcile, no validate after a backfill, REST
triggered runs left queued. So the DAGs are created unpaused here, and :func:`unpause` (also
called by `scripts/airflow.sh` before the scheduler starts) resumes any left paused.

After the DAGs, `make demo` shows the sync (:func:`sync_burst`): a writer that bypasses any
application changes the sample tables by plain SQL while ``run_sync`` follows the binlog.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from cutover.contract.model import Contract
from cutover.errors import CutoverError
from cutover.settings import LOCAL_DIR, PROJECT_ROOT, Settings

TAG = "cutover"  # every contract DAG carries it (cutover.dags.factory)


class DagRunFailed(CutoverError):
    """A DAG run that did not succeed; ``failed_tasks`` names its failed task instances
    (``task_id`` or ``task_id[map_index]``)."""

    def __init__(self, dag_id: str, state: str, failed_tasks: list[str]) -> None:
        self.dag_id = dag_id
        self.state = state
        self.failed_tasks = failed_tasks
        tasks = ", ".join(failed_tasks) or "none recorded"
        super().__init__(f"DAG run {dag_id} ended {state}; failed task(s): {tasks}")


def airflow_env() -> None:
    os.environ.setdefault("AIRFLOW_HOME", str(LOCAL_DIR / "airflow"))
    os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(PROJECT_ROOT / "dags"))
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    os.environ.setdefault("AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION", "False")


def ensure_metadata_db() -> None:
    """`airflow db migrate` once per AIRFLOW_HOME (it is idempotent, but takes seconds)."""
    airflow_env()
    stamp = Path(os.environ["AIRFLOW_HOME"]) / ".cutover-migrated"
    if stamp.exists():
        return
    airflow = Path(sys.executable).with_name("airflow")
    result = subprocess.run([str(airflow), "db", "migrate"], capture_output=True, text=True)
    if result.returncode != 0:
        raise CutoverError(f"airflow db migrate failed: {result.stderr[-2000:]}")
    stamp.write_text("ok\n")


def unpause(tag: str = TAG) -> list[str]:
    """Resume every DAG of the metadata database tagged ``tag``; returns the ids resumed."""
    from airflow.models.dag import DagModel, DagTag
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        paused = session.scalars(
            select(DagModel).where(
                DagModel.is_paused.is_(True), DagModel.tags.any(DagTag.name == tag)
            )
        ).all()
        for dag in paused:
            dag.is_paused = False
        return sorted(dag.dag_id for dag in paused)


def failed_tasks(run: Any) -> list[str]:
    """The failed task instances of a DagRun, as ``task_id`` or ``task_id[map_index]``."""
    from airflow.utils.state import TaskInstanceState

    out = []
    for ti in run.get_task_instances(
        state=[TaskInstanceState.FAILED, TaskInstanceState.UPSTREAM_FAILED]
    ):
        if ti.state != TaskInstanceState.FAILED:
            continue
        out.append(ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]")
    return sorted(out)


def run_dag(dag_id: str, conf: dict[str, Any] | None = None) -> Any:
    """Parse the DAG folder and run ``dag_id`` to the end; returns the DagRun. Raises
    :class:`DagRunFailed` when the run does not succeed."""
    ensure_metadata_db()
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    if bag.import_errors:
        raise CutoverError(f"DAG import errors: {bag.import_errors}")
    if dag_id not in bag.dags:
        raise CutoverError(f"no DAG {dag_id!r}; known: {sorted(bag.dags)}")
    run = bag.dags[dag_id].test(run_conf=conf or {})
    unpause()  # dag.test() registered the folder's DAGs; leave none of ours paused
    if str(run.state) != "success":
        raise DagRunFailed(dag_id, str(run.state), failed_tasks(run))
    return run


# --- the demo's sync -------------------------------------------------------------------------

ROUNDS = 3  # of writes, each waited for until the sync has applied it
ROUND_TIMEOUT = 30.0  # seconds for the sync to apply a round


def _execute(conn: Any, sql: str, params: tuple[Any, ...] = ()) -> int:
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return int(cur.rowcount)


def _column(conn: Any, sql: str) -> list[int]:
    with conn.cursor() as cur:
        cur.execute(sql)
        return [int(row[0]) for row in cur.fetchall()]


def _burst_rows(conn: Any, scale: int) -> dict[str, list[int]]:
    """Rows of the sample the burst may change: none of the planted defects nor a row whose
    items read one (a seller of a planted product, a product in a duplicated cart), so that
    every change becomes items and none is rejected."""
    from cutover.sample.generator import planted_defects

    planted: dict[str, list[int]] = {}
    for d in planted_defects(scale):
        planted.setdefault(d.source_table, []).append(int(d.source_pk["id"]))

    def ids(table: str) -> str:
        return ", ".join(map(str, planted.get(table) or [0]))

    bad = _column(
        conn,
        f"SELECT id FROM products WHERE id IN ({ids('products')}) UNION "
        f"SELECT product_id FROM shopping_carts WHERE id IN ({ids('shopping_carts')})",
    )
    bad_products = ", ".join(map(str, bad or [0]))
    need = 3 * ROUNDS
    return {
        "users": _column(
            conn,
            f"SELECT id FROM users WHERE id NOT IN ({ids('users')}) AND id NOT IN (SELECT "
            f"seller_id FROM products WHERE id IN ({bad_products}) AND seller_id IS NOT NULL) "
            f"ORDER BY id LIMIT {2 * need}",
        ),
        "products": _column(
            conn,
            f"SELECT id FROM products WHERE id NOT IN ({bad_products}) ORDER BY id LIMIT {need}",
        ),
        "carts": _column(
            conn,
            f"SELECT id FROM shopping_carts WHERE id NOT IN ({ids('shopping_carts')}) "
            f"AND product_id NOT IN ({bad_products}) ORDER BY id DESC LIMIT {need}",
        ),
    }


def _round(conn: Any, rows: dict[str, list[int]], r: int, stamp: str) -> dict[str, int]:
    """One round of plain SQL, each statement its own transaction: 3 users' bio and 2
    products' stock updated, 2 users and 2 cart lines inserted, 3 cart lines deleted (the
    rows each changed)."""
    done = {"updates": 0, "inserts": 0, "deletes": 0}
    users, products, carts = rows["users"], rows["products"], rows["carts"]
    for user in users[3 * r : 3 * r + 3]:
        done["updates"] += _execute(
            conn, "UPDATE users SET bio = %s WHERE id = %s", (f"demo write {stamp} ✨", user)
        )
    for product in products[2 * r : 2 * r + 2]:
        done["updates"] += _execute(
            conn,
            "UPDATE products SET inventory_quantity = inventory_quantity + 1 WHERE id = %s",
            (product,),
        )
    for i in range(2):
        name = f"demo{stamp}r{r}n{i}"
        done["inserts"] += _execute(
            conn,
            "INSERT INTO users (email, username, password_hash, first_name, last_name, bio) "
            "VALUES (%s, %s, %s, 'Demo', 'Writer', 'written by plain SQL')",
            (f"{name}@example.com", name, hashlib.sha256(name.encode()).hexdigest()),
        )
    buyers = users[len(users) // 2 :]
    marks = ", ".join(["%s"] * len(products))
    for i in range(2):
        user = buyers[(2 * r + i) % len(buyers)]
        done["inserts"] += _execute(
            conn,
            "INSERT INTO shopping_carts (user_id, product_id, quantity) SELECT %s, id, 1 FROM "
            f"products WHERE id IN ({marks}) AND id NOT IN (SELECT product_id FROM "
            "shopping_carts WHERE user_id = %s) ORDER BY id LIMIT 1",
            (user, *products, user),
        )
    for cart in carts[3 * r : 3 * r + 3]:
        done["deletes"] += _execute(conn, "DELETE FROM shopping_carts WHERE id = %s", (cart,))
    return done


def sync_burst(contract: Contract, settings: Settings, scale: int = 1) -> dict[str, Any]:
    """`make demo`'s sync: ``ROUNDS`` rounds of writes to the sample tables by plain SQL (as
    a writer that bypasses any application makes them) while ``run_sync`` follows the binlog,
    each round waited for until DynamoDB has it; then ``run_sync(once=True)`` up to the
    binlog's end. The writes made, both runs' reports and the largest lag of a round (from
    its last commit to the batch that applied it)."""
    from cutover.binlog.position import Position, current_position
    from cutover.db import connect
    from cutover.sync.runner import run_sync

    applied: list[tuple[int, float]] = []  # (position ordinal, applied at)
    changed = threading.Condition()
    stop = threading.Event()
    follow: dict[str, Any] = {}

    def on_batch(position: Position, applied_at: float, transactions: int) -> None:
        with changed:
            applied.append((position.ordinal, applied_at))
            changed.notify_all()

    def run() -> None:
        try:
            follow["report"] = run_sync(contract, settings, start=start, stop=stop,
                                        on_batch=on_batch)  # fmt: skip
        except Exception as exc:
            follow["error"] = exc
        finally:
            with changed:
                changed.notify_all()

    def applied_at(ordinal: int) -> float | None:
        deadline = time.monotonic() + ROUND_TIMEOUT
        with changed:
            while True:
                at = next((t for o, t in applied if o >= ordinal), None)
                left = deadline - time.monotonic()
                if at is not None or left <= 0 or not thread.is_alive():
                    return at
                changed.wait(min(left, 0.5))

    conn = connect(settings.mysql)
    writes = {"updates": 0, "inserts": 0, "deletes": 0}
    lags: list[float] = []
    try:
        rows = _burst_rows(conn, scale)
        # the backfill's handoff applied everything up to its end, and nothing has written
        # since: the sync follows from here
        start = current_position(conn)
        thread = threading.Thread(target=run, name="demo-sync", daemon=True)
        thread.start()
        stamp = time.strftime("%H%M%S")
        try:
            for r in range(ROUNDS):
                for kind, n in _round(conn, rows, r, stamp).items():
                    writes[kind] += n
                committed_at, end = time.time(), current_position(conn)
                at = applied_at(end.ordinal)
                if at is None:
                    break
                lags.append(max(at - committed_at, 0.0))
        finally:
            stop.set()
            thread.join(timeout=60)
    finally:
        conn.close()
    if "error" in follow:
        raise follow["error"]
    once = run_sync(contract, settings, once=True)
    return {
        "writes": writes,
        "follow": follow.get("report") or {},
        "once": once,
        "max_lag_seconds": round(max(lags), 3) if lags else None,
        "rounds_applied": len(lags),
        "rounds": ROUNDS,
    }


def main() -> None:
    """``python -m cutover.dags.local_run unpause``: what `make airflow` runs before it
    starts the scheduler (the metadata database migrated first when it is new)."""
    if sys.argv[1:] != ["unpause"]:
        sys.exit("usage: python -m cutover.dags.local_run unpause")
    ensure_metadata_db()
    resumed = unpause()
    print(f"unpaused: {', '.join(resumed)}" if resumed else f"no paused DAG tagged {TAG!r}")


if __name__ == "__main__":
    main()
