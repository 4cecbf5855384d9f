"""A load generator that acts as the sample e-commerce application through the dual-database
layer: shoppers sign up, edit their profile, fill and empty carts, place and cancel orders,
close their account, and read by every access pattern of the contract, at a steady rate,
while the layer follows the contract's phase.

Ownership keeps every key written in order: each thread owns its users (the ones it signs
up, plus a disjoint slice of the sample's users) and a slice of the products (those of the
sellers it owns, the others by id). A thread writes only its users' rows, and puts in carts
and orders only its own products, so every DynamoDB item the layer writes in phases 4-5,
including the ones a write refreshes through a join or an aggregate (a product's
``order_ids``, a cart's ``max_paid_price``, a product's ``seller_name``), is written by one
thread only: the log lists each key's writes in the order DynamoDB received them. (In phases
1-3 the layer writes MySQL only, and a write logs no items: DynamoDB follows from the
binlog.)

New rows carry explicit ids in every phase (phases 4 and 5 write DynamoDB first and cannot
wait for AUTO_INCREMENT): ``max(id) at start + 1_000_000 + thread * 100_000 + n``.

``run_traffic`` reads MySQL directly once, at the start (users, products, categories and the
largest ids); everything after goes through the layer.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

from cutover.db import connect, query
from cutover.errors import ConfigError
from cutover.routing.changes import Change
from cutover.routing.layer import DerivedRefused, DualDatabase, WriteResult
from cutover.routing.stats import LatencySample

ID_OFFSET = 1_000_000  # new ids start this far above the largest id at start
THREAD_STRIDE = 100_000  # each thread's own range of new ids
MAX_MESSAGES = 20  # error messages kept
PROGRESS_EVERY = 2.0  # seconds between progress reports
MAX_BACKLOG = 2.0  # seconds a late thread may catch up on; older ticks are dropped

WRITES: dict[str, float] = {
    "signup": 4,
    "profile_edit": 6,
    "cart_add": 9,
    "cart_quantity": 5,
    "cart_remove": 3,
    "order_place": 6,
    "order_cancel": 3,
    "user_delete": 2,
}
READS: dict[str, float] = {
    "get_user": 8,
    "get_cart": 6,
    "get_order": 6,
    "query_user": 8,
    "query_user_carts": 5,
    "query_user_orders": 5,
    "query_user_by_email": 1,
    "query_orders_by_status": 1,
    "get_product": 10,
    "query_products_by_category": 1,
    "query_products_by_seller": 3,
    "get_category": 5,
}
# Each thread starts with one round of every action (in an order where each finds what it
# needs: a fresh user to delete, a cart line to change, an order to cancel), then draws
# from the weights. The reads MySQL answers by scanning a whole table in phases 1-3 (their
# index key is transformed or joined) are shared out between the threads' rounds.
TOUR = (
    "signup",
    "signup",
    "user_delete",
    "signup",
    "cart_add",
    "cart_add",
    "cart_quantity",
    "get_cart",
    "cart_remove",
    "cart_add",
    "order_place",
    "get_order",
    "order_cancel",
    "profile_edit",
    "get_user",
    "query_user",
    "query_user_carts",
    "query_user_orders",
    "query_user_by_email",
    "query_orders_by_status",
    "get_product",
    "query_products_by_category",
    "query_products_by_seller",
    "get_category",
)
ACTIONS = tuple(WRITES) + tuple(READS)
SCANS = ("query_orders_by_status", "query_products_by_category", "query_user_by_email")

ORDER_STATUSES = ("pending", "paid", "shipped", "delivered", "cancelled")
USER_STATUSES = ("active", "suspended", "closed")
FIRST_NAMES = ("Ada", "Björn", "Chloé", "Dmitri", "Eun-ji", "Farah", "Gonçalo", "Hiro")
WORDS = ("espresso", "hiking", "vinyl", "bonsai", "chess", "sourdough", "kayak", "origami")
CITIES = ("Zürich", "São Paulo", "Kraków", "東京", "Montréal", "Reykjavík")


# --- the sample's state at start ----------------------------------------------------------


@dataclass(frozen=True)
class Product:
    id: int
    price: Decimal
    seller_id: int | None
    category: str


@dataclass
class Shopper:
    """A user as its owner thread knows it; ``known`` once its carts and orders were read
    (a user signed up by this run is known from the start)."""

    id: int
    email: str
    created: bool = False
    known: bool = False
    cart: dict[int, int] = field(default_factory=dict)  # product id -> quantity
    orders: dict[int, str] = field(default_factory=dict)  # order id -> status


@dataclass
class World:
    shoppers: list[list[Shopper]]  # per thread
    products: list[Product]  # every product the load touches
    own_products: list[list[Product]]  # per thread: the products its carts and orders use
    categories: list[tuple[int, str]]
    product_categories: list[str]
    sellers: list[int]
    user_ids: list[int]
    base_ids: dict[str, int]


def load_world(layer: DualDatabase, threads: int) -> World:
    """The sample's users, products, categories and largest ids, read once from MySQL.
    Users with an empty email or two cart rows for one product (rows the backfill
    quarantines) and products whose item cannot be built are left out."""
    conn = connect(layer.settings.mysql)
    try:
        users = query(
            conn,
            "SELECT id, email FROM users WHERE email <> '' AND id NOT IN ("
            "SELECT user_id FROM shopping_carts GROUP BY user_id, product_id "
            "HAVING COUNT(*) > 1) ORDER BY id",
        )
        (maxima,) = query(
            conn,
            "SELECT (SELECT COALESCE(MAX(id), 0) FROM users), "
            "(SELECT COALESCE(MAX(id), 0) FROM orders), "
            "(SELECT COALESCE(MAX(id), 0) FROM order_items), "
            "(SELECT COALESCE(MAX(id), 0) FROM shopping_carts)",
        )
        products = query(
            conn,
            "SELECT p.id, p.price, p.seller_id, c.name FROM products AS p "
            "JOIN categories AS c ON c.id = p.category_id "
            "WHERE COALESCE(LENGTH(p.description), 0) < 100000 AND c.name <> '' "
            "AND (p.lifetime_value IS NULL OR LENGTH(TRIM(TRAILING '0' FROM "
            "REPLACE(CAST(ABS(p.lifetime_value) AS CHAR), '.', ''))) <= 38) ORDER BY p.id",
        )
        categories = query(conn, "SELECT id, name FROM categories WHERE name <> '' ORDER BY id")
    finally:
        conn.close()
    shoppers: list[list[Shopper]] = [[] for _ in range(threads)]
    owner: dict[int, int] = {}
    for n, (uid, email) in enumerate(users):
        shoppers[n % threads].append(Shopper(int(uid), str(email)))
        owner[int(uid)] = n % threads
    catalogue = [
        Product(int(i), Decimal(p), None if s is None else int(s), str(c))
        for i, p, s, c in products
    ]
    own: list[list[Product]] = [[] for _ in range(threads)]
    for product in catalogue:
        seller_owner = owner.get(product.seller_id) if product.seller_id is not None else None
        own[product.id % threads if seller_owner is None else seller_owner].append(product)
    tables = ("users", "orders", "order_items", "shopping_carts")
    return World(
        shoppers=shoppers,
        products=catalogue,
        own_products=own,
        categories=[(int(i), str(n)) for i, n in categories],
        product_categories=sorted({p.category for p in catalogue}),
        sellers=sorted({p.seller_id for p in catalogue if p.seller_id is not None}),
        user_ids=[int(u) for u, _ in users],
        base_ids={t: int(m) + ID_OFFSET for t, m in zip(tables, maxima, strict=True)},
    )


# --- figures ------------------------------------------------------------------------------


class _Figures:
    def __init__(self, rng: random.Random) -> None:
        self.failed = 0
        self.latency = LatencySample(rng)

    def add(self, ms: float, failed: bool) -> None:
        self.failed += failed
        self.latency.add(ms)

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.latency.count,
            "failed": self.failed,
            "p50_ms": _round(self.latency.percentile(50)),
            "p99_ms": _round(self.latency.percentile(99)),
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


class Recorder:
    """Thread-safe counts, latencies and errors of the run."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(0)
        self.requests = 0
        self.failed = 0
        self.outboxed = 0
        self.refused: Counter[str] = Counter()  # phase 5: writes whose derivation needs MySQL
        self.refusals: list[str] = []
        self.by_operation: dict[str, _Figures] = {}
        self.by_phase: dict[int, _Figures] = {}
        self.error_classes: Counter[str] = Counter()
        self.error_operations: dict[str, Counter[str]] = {}
        self.messages: list[str] = []
        self.flushes = 0
        self.flush_failures = 0
        self.flush_messages: list[str] = []
        self.last_phase: int | None = None

    def request(self, op: str, phase: int, ms: float, error: BaseException | None) -> None:
        with self._lock:
            self.requests += 1
            self.failed += error is not None
            for figures in (
                self.by_operation.setdefault(op, _Figures(self._rng)),
                self.by_phase.setdefault(phase, _Figures(self._rng)),
            ):
                figures.add(ms, error is not None)
            if phase:
                self.last_phase = phase
            if error is not None:
                name = type(error).__name__
                self.error_classes[name] += 1
                self.error_operations.setdefault(op, Counter())[name] += 1
                if len(self.messages) < MAX_MESSAGES:
                    self.messages.append(f"{op}: {name}: {error}")

    def refuse(self, op: str, phase: int, error: BaseException) -> None:
        with self._lock:
            self.refused[op] += 1
            if len(self.refusals) < MAX_MESSAGES:
                self.refusals.append(f"{op} (phase {phase}): {error}")

    def wrote(self, result: WriteResult) -> None:
        with self._lock:
            self.outboxed += result.outboxed

    def flushed(self, error: BaseException | None) -> None:
        with self._lock:
            self.flushes += 1
            if error is not None:
                self.flush_failures += 1
                if len(self.flush_messages) < MAX_MESSAGES:
                    self.flush_messages.append(f"{type(error).__name__}: {error}")

    def snapshot(self) -> tuple[int, int, int | None]:
        with self._lock:
            return self.requests, self.failed, self.last_phase


# --- the log ------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class RequestLog:
    """JSON lines, one per committed write and one per read answer; one lock around the
    file."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = path.open("w", encoding="utf-8")
        self._lock = threading.Lock()

    def write(self, entry: dict[str, Any]) -> None:
        line = json.dumps(entry, ensure_ascii=False, default=_jsonable, separators=(",", ":"))
        with self._lock:
            self._file.write(line + "\n")

    def flush(self) -> None:
        with self._lock:
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()


# --- one application thread ---------------------------------------------------------------


class _Skip(Exception):
    """The action found nothing to act on; the worker does another one instead."""


class _Done(Exception):
    """The tick's request was made (an unknown user read) in place of the action."""


class _Failed(Exception):
    """A request raised; it is counted already."""


class Worker:
    def __init__(
        self,
        index: int,
        layer: DualDatabase,
        world: World,
        recorder: Recorder,
        log: RequestLog | None,
        seed: int,
    ) -> None:
        self.index = index
        self.layer = layer
        self.world = world
        self.recorder = recorder
        self.log = log
        self.rng = random.Random(seed * 1_000_003 + index)
        self.shoppers = world.shoppers[index]
        self.products = world.own_products[index]
        self.own_ids = {p.id for p in self.products}
        self.price = {p.id: p.price for p in world.products}
        self.next_n: Counter[str] = Counter()
        threads = len(world.shoppers)
        self.tour = [a for a in TOUR if a not in SCANS or SCANS.index(a) % threads == index]
        self._choices = list(WRITES) + list(READS)
        self._weights = list(WRITES.values()) + list(READS.values())
        self.pause_writes: WritePause | None = None

    # plumbing

    def new_id(self, table: str) -> int:
        n = self.next_n[table]
        if n >= THREAD_STRIDE:
            raise ConfigError(f"thread {self.index} used its {THREAD_STRIDE:,} new {table} ids")
        self.next_n[table] += 1
        return self.world.base_ids[table] + self.index * THREAD_STRIDE + n

    def _phase(self) -> int:
        try:
            return int(self.layer.phase())
        except Exception:
            return self.recorder.last_phase or 0

    def _call(self, op: str, fn: Callable[[], Any]) -> tuple[Any, int]:
        phase = self._phase()
        started = time.perf_counter()
        try:
            value = fn()
        except DerivedRefused as exc:
            # phase 5: the contract derives what this write changes with MySQL; the layer
            # refused it before writing anything (a designed answer, not a failure)
            self.recorder.refuse(op, phase, exc)
            raise _Failed(op) from exc
        except Exception as exc:
            self.recorder.request(op, phase, (time.perf_counter() - started) * 1000, exc)
            raise _Failed(op) from exc
        ms = (time.perf_counter() - started) * 1000
        if isinstance(value, WriteResult):
            phase = value.phase
        self.recorder.request(op, phase, ms, None)
        return value, phase

    def write(self, op: str, fn: Callable[[], WriteResult]) -> WriteResult:
        result, phase = self._call(op, fn)
        self.recorder.wrote(result)
        kept = {"outboxed": result.outboxed} if phase >= 4 else {}  # DynamoDB's phase-4 outbox
        self._log(op, phase, items=result.items, **kept)
        return result

    def read(self, op: str, fn: Callable[[], Any], **ident: Any) -> Any:
        answer, phase = self._call(op, fn)
        self._log(op, phase, **ident, answer=answer)
        return answer

    def _log(self, op: str, phase: int, **fields: Any) -> None:
        if self.log:
            entry = {"t": time.time(), "thread": self.index, "op": op, "phase": phase}
            self.log.write({**entry, **fields})

    # choosing

    def _index_read(self, op: str, table: str, index: str, pk: str) -> None:
        self.read(op, lambda: self.layer.query(table, pk, index=index), pk=pk, index=index)

    def next_action(self) -> str:
        if self.tour:
            return self.tour.pop(0)
        if self.pause_writes is not None and self.pause_writes.is_set():
            return self.rng.choices(list(READS), list(READS.values()))[0]
        return self.rng.choices(self._choices, self._weights)[0]

    def act(self, action: str) -> None:
        """Run ``action``; one that finds nothing to act on runs its fallback instead, so
        each tick is one request (none when it comes to a write while writes are paused)."""
        for _ in range(4):
            pause = self.pause_writes if action in WRITES else None
            if pause is not None and not pause.begin_write():
                return
            try:
                getattr(self, action)()
                return
            except _Skip as skip:
                action = str(skip) or "signup"
            except (_Done, _Failed):  # a request was made (a failed one is counted)
                return
            except Exception as exc:  # the action itself failed before its request
                self.recorder.request(action, self._phase(), 0.0, exc)
                return
            finally:
                if pause is not None:
                    pause.end_write()

    def shopper(
        self,
        *,
        created: bool = False,
        where: Callable[[Shopper], bool] | None = None,
        learn: bool = True,
    ) -> Shopper:
        """One of this thread's users, mostly one it knows already; an unknown one is read
        first (that read is this tick's request)."""
        known = [
            s
            for s in self.shoppers
            if s.known and (not created or s.created) and (where is None or where(s))
        ]
        if known and (self.tour or not learn or self.rng.random() < 0.7):
            return self.rng.choice(known)
        unknown = [s for s in self.shoppers if not s.known and not created]
        if learn and unknown:
            self.learn(self.rng.choice(unknown), "query_user")
            raise _Done
        if known:
            return self.rng.choice(known)
        raise _Skip("signup")

    def learn(self, shopper: Shopper, op: str) -> list[dict[str, Any]]:
        pk = f"USER#{shopper.id}"
        rows = self.read(op, lambda: self.layer.query("Users", pk), pk=pk)
        self._absorb(shopper, rows)
        return rows

    def _absorb(self, shopper: Shopper, rows: list[dict[str, Any]]) -> None:
        if not any(r.get("__entity") == "USER" for r in rows):
            # gone (closed by an earlier run in phase 5, say): not written any more
            self.shoppers.remove(shopper)
            return
        shopper.cart = {
            int(r["product_id"]): int(r["quantity"]) for r in rows if r.get("__entity") == "CART"
        }
        shopper.orders = {
            int(r["id"]): str(r["status"]) for r in rows if r.get("__entity") == "ORDER"
        }
        shopper.known = True

    def _forget_on_failure(
        self, shopper: Shopper, fn: Callable[[], WriteResult]
    ) -> Callable[[], WriteResult]:
        """A write that raised may still have landed: read the user again before the next."""

        def run() -> WriteResult:
            try:
                return fn()
            except Exception:
                shopper.known = False
                raise

        return run

    # writes

    def signup(self) -> None:
        uid = self.new_id("users")
        first = self.rng.choice(FIRST_NAMES)
        now = _now()
        prefs = (
            None
            if self.rng.random() < 0.3
            else json.dumps(
                {
                    "theme": self.rng.choice(["dark", "light"]),
                    "notifications": {"email": self.rng.random() < 0.5},
                    "languages": self.rng.sample(["en", "fr", "de", "ja"], k=1 + uid % 2),
                },
                ensure_ascii=False,
            )
        )
        row = {
            "id": uid,
            "email": f"shopper{uid}@example.com",
            "username": f"{first.lower()}{uid}",
            "password_hash": hashlib.sha256(f"pw{uid}".encode()).hexdigest(),
            "first_name": first,
            "last_name": self.rng.choice(["Müller", "Okafor", "Silva", "Tanaka", "Nowak"]),
            "is_seller": 0,
            "status": "active",
            "preferences": prefs,
            "bio": None if self.rng.random() < 0.5 else f"Into {self.rng.choice(WORDS)} ✨",
            "created_at": now,
        }
        self.write("signup", lambda: self.layer.put("USER", row))
        shopper = Shopper(uid, row["email"], created=True, known=True)
        self.shoppers.append(shopper)

    def profile_edit(self) -> None:
        s = self.shopper()
        fields = self.rng.sample(
            ["bio", "username", "status", "first_name"], k=self.rng.randint(1, 3)
        )
        values: dict[str, Any] = {}
        for name in fields:
            if name == "bio":
                values["bio"] = (
                    None
                    if self.rng.random() < 0.2
                    else f"{self.rng.choice(WORDS)} & {self.rng.choice(WORDS)} 🚀"
                )
            elif name == "username":
                values["username"] = f"{self.rng.choice(WORDS)}_{s.id}_{self.rng.randrange(999)}"
            elif name == "status":
                values["status"] = self.rng.choice(USER_STATUSES)
            else:
                values["first_name"] = self.rng.choice(FIRST_NAMES)
        self.write(
            "profile_edit",
            self._forget_on_failure(s, lambda: self.layer.update("USER", {"id": s.id}, values)),
        )

    def cart_add(self) -> None:
        if not self.products:
            raise _Skip("profile_edit")
        s = self.shopper()
        product = self.rng.choice(self.products)
        if product.id in s.cart:  # one cart row per (user, product): the item key
            quantity = min(s.cart[product.id] + 1, 20)
            self.write(
                "cart_add",
                self._forget_on_failure(
                    s,
                    lambda: self.layer.update(
                        "CART", {"user_id": s.id, "product_id": product.id}, {"quantity": quantity}
                    ),
                ),
            )
        else:
            quantity = self.rng.randint(1, 3)
            row = {
                "id": self.new_id("shopping_carts"),
                "user_id": s.id,
                "product_id": product.id,
                "quantity": quantity,
                "added_at": _now(),
            }
            self.write("cart_add", self._forget_on_failure(s, lambda: self.layer.put("CART", row)))
        s.cart[product.id] = quantity

    def _cart_line(self) -> tuple[Shopper, int]:
        def has_line(s: Shopper) -> bool:
            return any(p in self.own_ids for p in s.cart)

        s = self.shopper(where=has_line, learn=False) if self._any(has_line) else None
        if s is None:
            raise _Skip("cart_add")
        return s, self.rng.choice(sorted(p for p in s.cart if p in self.own_ids))

    def _any(self, where: Callable[[Shopper], bool]) -> bool:
        return any(s.known and where(s) for s in self.shoppers)

    def cart_quantity(self) -> None:
        s, pid = self._cart_line()
        quantity = self.rng.choice([q for q in range(1, 10) if q != s.cart[pid]])
        self.write(
            "cart_quantity",
            self._forget_on_failure(
                s,
                lambda: self.layer.update(
                    "CART", {"user_id": s.id, "product_id": pid}, {"quantity": quantity}
                ),
            ),
        )
        s.cart[pid] = quantity

    def cart_remove(self) -> None:
        s, pid = self._cart_line()
        self.write(
            "cart_remove",
            self._forget_on_failure(
                s, lambda: self.layer.delete("CART", {"user_id": s.id, "product_id": pid})
            ),
        )
        del s.cart[pid]

    def order_place(self) -> None:
        """One unit: the order, its 1-3 items, and the cart lines of those products gone."""
        if not self.products:
            raise _Skip("profile_edit")
        s = self.shopper()
        count = self.rng.randint(1, 3)
        in_cart = [p for p in sorted(s.cart) if p in self.own_ids]
        chosen = self.rng.sample(in_cart, k=min(count, len(in_cart)))
        while len(chosen) < min(count, len(self.products)):
            pid = self.rng.choice(self.products).id
            if pid not in chosen:
                chosen.append(pid)
        oid = self.new_id("orders")
        lines = [(pid, s.cart.get(pid) or self.rng.randint(1, 3)) for pid in chosen]
        total = sum((self.price[pid] * q for pid, q in lines), Decimal(0)).quantize(Decimal("0.01"))
        address = json.dumps(
            {
                "line1": f"{self.rng.randrange(1, 300)} Main St",
                "city": self.rng.choice(CITIES),
                "zip": f"{self.rng.randrange(10000, 99999)}",
            },
            ensure_ascii=False,
        )
        changes = [
            Change(
                "orders",
                "put",
                {"id": oid},
                {
                    "user_id": s.id,
                    "status": "pending",
                    "total_amount": total,
                    "shipping_address": address,
                    "created_at": _now(),
                },
            )
        ]
        for pid, quantity in lines:
            changes.append(
                Change(
                    "order_items",
                    "put",
                    {"id": self.new_id("order_items")},
                    {
                        "order_id": oid,
                        "product_id": pid,
                        "quantity": quantity,
                        "unit_price": self.price[pid],
                    },
                )
            )
        changes += [
            Change("shopping_carts", "delete", {"user_id": s.id, "product_id": pid})
            for pid in chosen
            if pid in s.cart
        ]
        self.write("order_place", self._forget_on_failure(s, lambda: self.layer.write(changes)))
        s.orders[oid] = "pending"
        for pid in chosen:
            s.cart.pop(pid, None)

    def order_cancel(self) -> None:
        def open_order(s: Shopper) -> bool:
            return any(st != "cancelled" for st in s.orders.values())

        if not self._any(open_order):
            raise _Skip("order_place")
        s = self.shopper(where=open_order, learn=False)
        oid = self.rng.choice(sorted(o for o, st in s.orders.items() if st != "cancelled"))
        self.write(
            "order_cancel",
            self._forget_on_failure(
                s,
                lambda: self.layer.update(
                    "ORDER", {"id": oid}, {"status": "cancelled", "user_id": s.id}
                ),
            ),
        )
        s.orders[oid] = "cancelled"

    def user_delete(self) -> None:
        """Close an account this run opened and left without orders or cart lines."""

        def empty(s: Shopper) -> bool:
            return s.created and not s.cart and not s.orders

        if not self._any(empty):
            raise _Skip("signup")
        s = self.shopper(created=True, where=empty, learn=False)
        self.write(
            "user_delete",
            self._forget_on_failure(s, lambda: self.layer.delete("USER", {"id": s.id})),
        )
        self.shoppers.remove(s)

    # reads

    def _any_user(self) -> int:
        if self.shoppers and (not self.world.user_ids or self.rng.random() < 0.5):
            return self.rng.choice(self.shoppers).id
        if not self.world.user_ids:
            raise _Skip("signup")
        return self.rng.choice(self.world.user_ids)

    def get_user(self) -> None:
        key = {"id": self._any_user()}
        self.read("get_user", lambda: self.layer.get("USER", key), key=key)

    def get_cart(self) -> None:
        lines = [(s.id, p) for s in self.shoppers if s.known for p in s.cart]
        if lines:
            uid, pid = self.rng.choice(lines)
        elif self.world.products:
            uid, pid = self._any_user(), self.rng.choice(self.world.products).id
        else:
            raise _Skip("get_user")
        key = {"user_id": uid, "product_id": pid}
        self.read("get_cart", lambda: self.layer.get("CART", key), key=key)

    def get_order(self) -> None:
        orders = [(s.id, o) for s in self.shoppers if s.known for o in s.orders]
        uid, oid = self.rng.choice(orders) if orders else (self._any_user(), 1)
        key = {"user_id": uid, "id": oid}
        self.read("get_order", lambda: self.layer.get("ORDER", key), key=key)

    def query_user(self) -> None:
        own = self.rng.random() < 0.7 and self.shoppers
        if own:
            self.learn(self.rng.choice(self.shoppers), "query_user")
            return
        pk = f"USER#{self._any_user()}"
        self.read("query_user", lambda: self.layer.query("Users", pk), pk=pk)

    def _query_prefix(self, op: str, prefix: str) -> None:
        pk = f"USER#{self._any_user()}"
        self.read(
            op, lambda: self.layer.query("Users", pk, sk_prefix=prefix), pk=pk, sk_prefix=prefix
        )

    def query_user_carts(self) -> None:
        self._query_prefix("query_user_carts", "CART#")

    def query_user_orders(self) -> None:
        self._query_prefix("query_user_orders", "ORDER#")

    def query_user_by_email(self) -> None:
        if not self.shoppers:
            raise _Skip("signup")
        pk = self.rng.choice(self.shoppers).email.lower()
        self._index_read("query_user_by_email", "Users", "ByEmail", pk)

    def query_orders_by_status(self) -> None:
        pk = f"STATUS#{self.rng.choice(ORDER_STATUSES)}"
        self._index_read("query_orders_by_status", "Users", "GSI1", pk)

    def get_product(self) -> None:
        if not self.world.products:
            raise _Skip("get_user")
        key = _entity_key(self.layer, "PRODUCTS", self.rng.choice(self.world.products).id)
        self.read("get_product", lambda: self.layer.get("PRODUCTS", key), key=key)

    def query_products_by_category(self) -> None:
        if not self.world.product_categories:
            raise _Skip("get_product")
        pk = self.rng.choice(self.world.product_categories)
        self._index_read("query_products_by_category", "Products", "ByCategory", pk)

    def query_products_by_seller(self) -> None:
        if not self.world.sellers:
            raise _Skip("get_product")
        pk = str(self.rng.choice(self.world.sellers))
        self._index_read("query_products_by_seller", "Products", "BySeller", pk)

    def get_category(self) -> None:
        if not self.world.categories:
            raise _Skip("get_product")
        key = _entity_key(self.layer, "CATEGORIES", self.rng.choice(self.world.categories)[0])
        self.read("get_category", lambda: self.layer.get("CATEGORIES", key), key=key)

    # the loop

    def run(self, interval: float, start: float, end: float, stop: threading.Event) -> None:
        """One action per tick of ``interval`` seconds, ticks staggered between threads; a
        thread that falls behind catches up on at most ``MAX_BACKLOG`` seconds of ticks."""
        threads = len(self.world.shoppers)
        next_at = start + interval * self.index / threads
        while not stop.is_set():
            now = time.monotonic()
            if now >= end:
                return
            if next_at > now and stop.wait(min(next_at, end) - now):
                return
            if time.monotonic() >= end:
                return
            self.act(self.next_action())
            next_at += interval
            behind = time.monotonic() - next_at
            if behind > MAX_BACKLOG:
                next_at += behind - MAX_BACKLOG


def _entity_key(layer: DualDatabase, entity: str, value: Any) -> dict[str, Any]:
    """The get key of a single-key entity: its one item-key column, whatever its name."""
    (column,) = layer.entities.get(entity).key_columns().values()
    return {column: value}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)


# --- the run ------------------------------------------------------------------------------


class WritePause:
    """Pauses the traffic's writes (its reads go on) and tells when none is in flight: a
    write starts only while the pause is clear, and ``wait_idle`` waits for those started."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._paused = False
        self._writing = 0

    def set(self) -> None:
        with self._cond:
            self._paused = True

    def clear(self) -> None:
        with self._cond:
            self._paused = False

    def is_set(self) -> bool:
        return self._paused

    def begin_write(self) -> bool:
        """A write may start (counted until ``end_write``); False while paused."""
        with self._cond:
            if self._paused:
                return False
            self._writing += 1
            return True

    def end_write(self) -> None:
        with self._cond:
            self._writing -= 1
            self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Whether, within ``timeout`` seconds, the pause is set and no write is in flight."""
        with self._cond:
            return self._cond.wait_for(lambda: self._paused and self._writing == 0, timeout)


def run_traffic(
    layer: DualDatabase,
    *,
    rate: float,
    duration: float,
    threads: int = 4,
    seed: int = 7,
    log_path: Path | None = None,
    flush_every: float = 5.0,
    stop: threading.Event | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
    progress_every: float = PROGRESS_EVERY,
    pause_writes: WritePause | None = None,
) -> dict[str, Any]:
    """Act as the sample application through ``layer`` at ``rate`` requests/s over all
    ``threads``, for ``duration`` seconds or until ``stop`` is set (Ctrl-C too). Every
    ``flush_every`` seconds the layer's evidence is recorded (``layer.flush()``);
    ``progress`` gets {seconds, requests, failed, rate, phase} every ``progress_every``
    seconds. While ``pause_writes`` is set the threads only read (a full comparison of both
    stores needs a moment without writes; ``pause_writes.wait_idle()`` tells when the writes
    in flight have ended). Returns the summary; the layer stays open."""
    if rate <= 0 or duration <= 0 or threads < 1:
        raise ConfigError(
            f"traffic needs a rate > 0, a duration > 0 and 1 or more threads; "
            f"got rate {rate}, duration {duration}, threads {threads}"
        )
    stop = stop or threading.Event()
    world = load_world(layer, threads)
    recorder = Recorder()
    log = RequestLog(log_path) if log_path else None
    workers = [Worker(i, layer, world, recorder, log, seed) for i in range(threads)]
    for w in workers:
        w.pause_writes = pause_writes
    interval = threads / rate
    start = time.monotonic()
    end = start + duration
    runners = [
        threading.Thread(
            target=w.run, args=(interval, start, end, stop), name=f"traffic-{w.index}", daemon=True
        )
        for w in workers
    ]
    for runner in runners:
        runner.start()
    interrupted = False

    def flush() -> None:
        error: BaseException | None = None
        try:
            layer.flush()
        except Exception as exc:  # evidence is best effort; the traffic goes on
            error = exc
        recorder.flushed(error)
        if log:
            log.flush()

    def report() -> None:
        if progress is None:
            return
        requests, failed, phase = recorder.snapshot()
        seconds = time.monotonic() - start
        progress(
            {
                "seconds": round(seconds, 1),
                "requests": requests,
                "failed": failed,
                "rate": round(requests / seconds, 1) if seconds else 0.0,
                "phase": phase,
            }
        )

    next_flush, next_report = start + flush_every, start + progress_every
    try:
        while any(r.is_alive() for r in runners):
            now = time.monotonic()
            if now >= next_flush:
                flush()
                next_flush = max(next_flush + flush_every, time.monotonic())
            if now >= next_report:
                report()
                next_report += progress_every
            if stop.is_set():  # the threads finish their request in flight
                runners[0].join(0.1)
            else:
                stop.wait(0.1)
    except KeyboardInterrupt:
        interrupted = True
        stop.set()
        for runner in runners:
            runner.join()
    seconds = time.monotonic() - start
    interrupted = interrupted or (stop.is_set() and seconds < duration)
    flush()
    report()
    if log:
        log.close()
    return _summary(layer, recorder, seconds, interrupted, rate, threads, seed, log_path)


def _summary(
    layer: DualDatabase,
    r: Recorder,
    seconds: float,
    interrupted: bool,
    rate: float,
    threads: int,
    seed: int,
    log_path: Path | None,
) -> dict[str, Any]:
    return {
        "requests": r.requests,
        "failed": r.failed,
        "seconds": round(seconds, 3),
        "rate": round(r.requests / seconds, 2) if seconds else 0.0,
        "target_rate": rate,
        "threads": threads,
        "seed": seed,
        "interrupted": interrupted,
        "phases": sorted(r.by_phase),
        "by_operation": {op: f.summary() for op, f in sorted(r.by_operation.items())},
        "by_phase": {phase: f.summary() for phase, f in sorted(r.by_phase.items())},
        "errors": {
            "by_class": dict(r.error_classes),
            "by_operation": {op: dict(c) for op, c in sorted(r.error_operations.items())},
            "messages": list(r.messages),
            "flush_failures": r.flush_failures,
            "flush_messages": list(r.flush_messages),
        },
        "outboxed": r.outboxed,
        "refused": {"by_operation": dict(r.refused), "messages": list(r.refusals)},
        "flushes": r.flushes,
        "log": str(log_path) if log_path else None,
        "routing": layer.stats.summary(),
    }


def summary_lines(summary: dict[str, Any]) -> Iterator[str]:
    """The summary for people: totals, then p50/p99 per operation and per phase."""
    # only phase 4 keeps writes in an outbox (DynamoDB's); phases 1-3 write MySQL only
    outboxed = (
        f", {summary['outboxed']} kept in DynamoDB's outbox" if 4 in summary["phases"] else ""
    )
    yield (
        f"{summary['requests']:,} requests in {summary['seconds']:.1f}s "
        f"({summary['rate']:.1f}/s), {summary['failed']} failed{outboxed}"
        + (" (interrupted)" if summary.get("interrupted") else "")
    )
    if refused := sum(summary["refused"]["by_operation"].values()):
        yield (f"{refused} writes refused in phase 5: they change attributes the contract "
               "derives with MySQL")  # fmt: skip
    yield f"{'operation':<28} {'requests':>8} {'failed':>6} {'p50 ms':>9} {'p99 ms':>9}"
    rows = [(op, f) for op, f in summary["by_operation"].items()]
    rows += [(f"phase {phase}", f) for phase, f in summary["by_phase"].items()]
    for name, f in rows:
        yield (
            f"{name:<28} {f['requests']:>8,} {f['failed']:>6} {_ms(f['p50_ms']):>9} "
            f"{_ms(f['p99_ms']):>9}"
        )
    for message in summary["errors"]["messages"][:5]:
        yield f"error: {message}"
    if summary["errors"]["flush_failures"]:
        yield f"evidence flushes failed: {summary['errors']['flush_failures']}"


def progress_line(p: dict[str, Any]) -> str:
    return (
        f"{p['seconds']:6.1f}s {p['requests']:>7,} requests ({p['rate']:.1f}/s) "
        f"{p['failed']} failed, phase {p['phase']}"
    )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"
