"""Checks shared by the routing tests: what the log of committed writes says DynamoDB must
hold, compared item by item with what it holds (the items the layer itself wrote, in phases
4-5); DynamoDB brought up to MySQL's binlog and compared with MySQL in full (phases 1-3,
where the layer writes MySQL only); and the traffic and the sync run in threads."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from cutover.contract.model import Contract
from cutover.routing.layer import DualDatabase
from cutover.sample.traffic import WritePause, run_traffic
from cutover.settings import Settings
from cutover.sync.runner import run_sync


class TrafficThread:
    """``run_traffic`` in a thread until ``finish()``; ``quiet()`` pauses its writes (reads
    go on) while a test compares both stores."""

    def __init__(self, layer: DualDatabase, log: Path, **options: Any) -> None:
        self.stop = threading.Event()
        self.pause = WritePause()
        self.summary: dict[str, Any] = {}
        self.error: BaseException | None = None
        self._requests = 0
        self._counted = threading.Condition()

        def counted(report: dict[str, Any]) -> None:
            with self._counted:
                self._requests = int(report["requests"])
                self._counted.notify_all()

        def run() -> None:
            try:
                self.summary = run_traffic(layer, duration=3600, log_path=log, stop=self.stop,
                                           pause_writes=self.pause, progress=counted,
                                           progress_every=0.2, **options)  # fmt: skip
            except BaseException as exc:  # raised again by finish()
                self.error = exc

        self.thread = threading.Thread(target=run, name="traffic", daemon=True)
        self.thread.start()

    def wait_requests(self, n: int, timeout: float = 120) -> None:
        """Wait until the traffic has made ``n`` more requests (what a stay in a phase is
        measured in: requests, not seconds)."""
        with self._counted:
            target = self._requests + n
            if not self._counted.wait_for(
                lambda: self._requests >= target or not self.thread.is_alive(), timeout
            ):
                raise AssertionError(f"the traffic made fewer than {n} requests in {timeout} s")
        if self.error:
            raise self.error

    def quiet(self, timeout: float = 60) -> None:
        """Writes paused, and those in flight ended."""
        self.pause.set()
        if not self.pause.wait_idle(timeout):
            raise AssertionError(f"the traffic's writes in flight did not end in {timeout} s")

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
    MySQL's binlog a run behind, as a sync that keeps running would keep it. A run that
    fails is run again, as the sync DAG's next run would be; ``errors`` keeps what failed."""

    def __init__(self, contract: Contract, settings: Settings, pause: float = 0.2) -> None:
        self.runs = 0
        self.errors: list[str] = []
        self._failing: BaseException | None = None  # the last run failed with it
        self._stop = threading.Event()

        def run() -> None:
            while not self._stop.is_set():
                try:
                    run_sync(contract, settings, once=True)
                    self.runs += 1
                    self._failing = None
                except Exception as exc:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                    self._failing = exc
                self._stop.wait(pause)

        self.thread = threading.Thread(target=run, name="sync-loop", daemon=True)
        self.thread.start()

    def stop(self) -> int:
        """Stop after the run in progress; the number of runs. Raises what the last run
        failed with, if it failed (one that failed and then ran again is in ``errors``)."""
        self._stop.set()
        self.thread.join(timeout=120)
        if self._failing is not None:
            raise self._failing
        return self.runs


OWN_IDS = 3_000_000_000  # the bypass writer's own rows: ids from here (INT UNSIGNED)


class BypassWriter:
    """Another writer of the sample's database that never goes through cutover, as a service
    in another language, an admin script or a DBA would be: plain SQL on its own connection,
    on the rows the application's traffic uses too (users, carts, products, categories).
    Updates of shared rows, a category renamed and one moved under another root, and rows
    it inserts then deletes (carts of users of its own, so the application never finds a row
    gone under it). ``quiet()`` returns once no statement of it is in flight."""

    KINDS = ("bio", "username", "cart_quantity", "price", "category_rename", "category_move",
             "user_new", "cart_new", "cart_delete", "user_delete")  # fmt: skip
    # categories change rarely (each change derives every product and cart again)
    WEIGHTS = (4, 4, 4, 4, 1, 1, 2, 3, 3, 1)

    def __init__(self, settings: Settings, seed: int) -> None:
        import random

        self.settings = settings
        self.rng = random.Random(seed)
        self.pause = threading.Event()
        self.writing = threading.Lock()  # held through each statement
        self.stop = threading.Event()
        self.done: dict[str, int] = {}
        self.own_users: list[int] = []
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="bypass-writer", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        from cutover.db import connect

        conn = connect(self.settings.mysql)
        try:
            n = 0
            while not self.stop.is_set():
                with self.writing:
                    if not self.pause.is_set():
                        n += 1
                        kind = self.KINDS[n % len(self.KINDS)] if n <= len(self.KINDS) else (
                            self.rng.choices(self.KINDS, self.WEIGHTS)[0])  # fmt: skip
                        if self._retried(conn, kind):
                            self.done[kind] = self.done.get(kind, 0) + 1
                self.stop.wait(0.2)  # a pace, not a wait for anything
        except BaseException as exc:  # raised by finish()
            self.error = exc
        finally:
            conn.close()

    def _retried(self, conn: Any, kind: str) -> bool:
        """One statement (or transaction) of ``kind``, run again when InnoDB rolled it back
        as a deadlock's victim, as an application would."""
        import MySQLdb

        for _ in range(5):
            try:
                return self._step(conn, kind)
            except MySQLdb.OperationalError as exc:
                if exc.args[0] not in (1213, 1205):
                    raise
                conn.rollback()
        return False

    def _one(self, conn: Any, sql: str, params: tuple = ()) -> Any:
        from cutover.db import query

        rows = query(conn, sql, params)
        return rows[0][0] if rows else None

    def _step(self, conn: Any, kind: str) -> bool:
        from cutover.db import query

        n = sum(self.done.values()) + 1
        rand = "ORDER BY RAND() LIMIT 1"
        if kind == "bio":
            query(conn, f"UPDATE users SET bio = %s {rand}", (f"bypass bio {n}",))
        elif kind == "username":
            query(conn, f"UPDATE users SET username = CONCAT('bp', id, '_', %s) {rand}", (n,))
        elif kind == "cart_quantity":
            query(conn, f"UPDATE shopping_carts SET quantity = quantity + 1 {rand}")
        elif kind == "price":
            query(conn, "UPDATE products SET price = IF(price >= 1, price - 1, price + 1), "
                        f"name = CONCAT(LEFT(name, 150), "
                        f"'+') {rand}")  # fmt: skip
        elif kind == "category_rename":
            query(conn, f"UPDATE categories SET name = CONCAT('Renamed ', id, ' ', %s) {rand}",
                  (n,))  # fmt: skip
        elif kind == "category_move":
            leaf = self._one(conn, "SELECT c.id FROM categories c WHERE c.parent_id IS NOT NULL "
                                   "AND NOT EXISTS (SELECT 1 FROM categories k WHERE "
                                   f"k.parent_id = c.id) {rand}")  # fmt: skip
            root = self._one(conn, f"SELECT id FROM categories WHERE parent_id IS NULL {rand}")
            if leaf is None or root is None:
                return False
            query(conn, "UPDATE categories SET parent_id = %s WHERE id = %s", (root, leaf))
        elif kind == "user_new":
            user = OWN_IDS + n  # far from the ids the traffic assigns itself
            query(conn, "INSERT INTO users (id, email, username, password_hash, first_name) "
                        "VALUES (%s, %s, %s, REPEAT('0', 64), 'Bypass')",
                  (user, f"bypass{n}@example.org", f"bypass{n}"))  # fmt: skip
            self.own_users.append(user)
        elif kind == "cart_new":
            if not self.own_users:
                return False
            user = self.rng.choice(self.own_users)
            query(conn, "INSERT INTO shopping_carts (id, user_id, product_id, quantity) SELECT "
                        "%s, %s, p.id, 1 FROM products p WHERE NOT EXISTS (SELECT 1 FROM "
                        f"shopping_carts s WHERE s.user_id = %s AND s.product_id = p.id) {rand}",
                  (OWN_IDS + n, user, user))  # fmt: skip
        elif kind == "cart_delete":
            if not self.own_users:
                return False
            marks = ", ".join(["%s"] * len(self.own_users))
            query(conn, f"DELETE FROM shopping_carts WHERE user_id IN ({marks}) {rand}",
                  tuple(self.own_users))  # fmt: skip
        elif kind == "user_delete":
            if len(self.own_users) < 2:
                return False
            user = self.own_users.pop(0)
            conn.begin()
            query(conn, "DELETE FROM shopping_carts WHERE user_id = %s", (user,))
            query(conn, "DELETE FROM users WHERE id = %s", (user,))
            conn.commit()
        return True

    def quiet(self, timeout: float = 30) -> None:
        self.pause.set()  # no statement starts after this; the one in flight ends first
        if not self.writing.acquire(timeout=timeout):
            raise AssertionError("the bypass writer's statement did not finish")
        self.writing.release()

    def resume(self) -> None:
        self.pause.clear()

    def finish(self) -> dict[str, int]:
        self.stop.set()
        self.thread.join(timeout=60)
        if self.error is not None:
            raise self.error
        return dict(self.done)
