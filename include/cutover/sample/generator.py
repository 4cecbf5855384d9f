"""A deterministic e-commerce source database with awkward data on purpose (NULLs, utf8mb4
and emoji, DECIMAL money, TIMESTAMP/DATETIME(6), ENUMs, JSON, long text), plus a few planted
rows that cannot become valid DynamoDB items under contracts/ecommerce.json."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from importlib import resources
from typing import Any

from cutover.db import connect, query, quote_ident
from cutover.settings import Settings

BASE_TIME = dt.datetime(2023, 1, 1, 8, 0, 0)
CHUNK = 1_000
FIRST = [
    "Ana",
    "Björn",
    "Chloé",
    "Dmitri",
    "Émile",
    "Fatima",
    "Giulia",
    "Hiro",
    "Ingrid",
    "José",
    "Kwame",
    "Léa",
    "Mei",
    "Nuño",
    "Olga",
    "Priya",
    "Quinn",
    "Rūta",
    "Søren",
    "Tomás",
    "Ümit",
    "Valentina",
    "Wei",
    "Xochitl",
    "Yusuf",
    "Zoë",
    "张伟",
    "さくら",
]
LAST = [
    "Smith",
    "Müller",
    "García",
    "Rossi",
    "Dubois",
    "Kowalski",
    "Nakamura",
    "O'Brien",
    "Østergaard",
    "Çelik",
    "Nguyễn",
    "Svensson",
    "D'Angelo",
    None,
]
WORDS = [
    "lamp",
    "chair",
    "kettle",
    "notebook",
    "guitar",
    "scarf",
    "tent",
    "drone",
    "mug",
    "backpack",
    "bike",
    "camera",
    "blender",
    "desk",
    "sofa",
    "jacket",
    "clock",
    "vase",
]
ADJ = [
    "Rustic",
    "Ergonomic",
    "Gorgeous",
    "Sleek",
    "Handmade",
    "Vintage",
    "Smart",
    "Tiny",
    "Über",
    "Crème",
    "Ñandú",
    "Jumbo",
    "Eco",
]
EMOJI = ["😀", "🚀", "🎸", "☕", "🌍", "🧡", "✨", ""]
CITIES = ["Zürich", "São Paulo", "Kraków", "東京", "Montréal", "Reykjavík", "Köln", "Lisboa"]
STREETS = ["Hauptstraße", "Rue de la Paix", "Main St", "Calle Mayor"]
ROOTS = ["Home & Garden", "Electronics", "Fashion 👗", "Sports", "Books & Média", "Toys"]


@dataclass(frozen=True)
class PlantedDefect:
    dynamodb_table: str
    entity_type: str
    source_table: str
    source_pk: dict[str, Any]
    reason: str


@dataclass
class SampleReport:
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    planted: list[PlantedDefect] = field(default_factory=list)


@dataclass(frozen=True)
class Sizes:
    users: int
    categories_per_root: int
    products: int
    carts: int
    orders: int

    @classmethod
    def at(cls, scale: int) -> Sizes:
        return cls(
            users=2_000 * scale,
            categories_per_root=3,
            products=1_500 * scale,
            carts=3_000 * scale,
            orders=4_000 * scale,
        )


def _planted_ids(sizes: Sizes) -> dict[str, list[int]]:
    """Which ids carry a defect; fixed positions so they are the same at any scale."""
    return {
        "empty_email_user": [sizes.users - 7],
        "precise_products": [17, sizes.products - 3],
        "huge_products": [29, sizes.products - 11],
        # each of these cart ids gets a twin row: same user, same product
        "duplicated_carts": [5, sizes.carts - 2],
    }


def planted_defects(scale: int = 1, seed: int = 7) -> list[PlantedDefect]:
    """The rows `load_sample` plants, with the quarantine reason each must get."""
    del seed  # the positions do not depend on the seed
    sizes = Sizes.at(scale)
    ids = _planted_ids(sizes)
    out = [
        PlantedDefect("Users", "USER", "users", {"id": i}, "empty_key")
        for i in ids["empty_email_user"]
    ]
    out.append(
        PlantedDefect(
            "Categories", "CATEGORIES", "categories", {"id": _empty_category_id(sizes)}, "empty_key"
        )
    )
    out += [
        PlantedDefect("Products", "PRODUCTS", "products", {"id": i}, "number_too_precise")
        for i in ids["precise_products"]
    ]
    out += [
        PlantedDefect("Products", "PRODUCTS", "products", {"id": i}, "item_too_large")
        for i in ids["huge_products"]
    ]
    for n, cart_id in enumerate(ids["duplicated_carts"]):
        twin = sizes.carts + 1 + n
        out += [
            PlantedDefect("Users", "CART", "shopping_carts", {"id": c}, "duplicate_key")
            for c in (cart_id, twin)
        ]
    return out


def _empty_category_id(sizes: Sizes) -> int:
    roots = len(ROOTS)
    per = sizes.categories_per_root
    return roots + roots * per + roots * per * per + 1


# --- generation ----------------------------------------------------------------------------


class _Gen:
    def __init__(self, scale: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.sizes = Sizes.at(scale)
        self.planted = _planted_ids(self.sizes)

    def ts(self, max_days: int = 900) -> dt.datetime:
        return BASE_TIME + dt.timedelta(seconds=self.rng.randrange(max_days * 86_400))

    def micro(self, after: dt.datetime) -> dt.datetime:
        return after + dt.timedelta(
            seconds=self.rng.randrange(86_400 * 30), microseconds=self.rng.randrange(1_000_000)
        )

    def users(self) -> Iterator[tuple[Any, ...]]:
        for i in range(1, self.sizes.users + 1):
            first = self.rng.choice(FIRST)
            last = self.rng.choice(LAST)
            handle = f"{first.lower()}{i}"
            email = "" if i in self.planted["empty_email_user"] else f"user{i}@example.com"
            prefs = (
                None
                if i % 5 == 0
                else json.dumps(
                    {
                        "theme": self.rng.choice(["dark", "light"]),
                        "notifications": {"email": i % 2 == 0, "sms": i % 3 == 0},
                        "languages": self.rng.sample(["en", "fr", "de", "ja", "pt"], k=1 + i % 3),
                        "discount": round(self.rng.random() * 0.3, 2),
                    },
                    ensure_ascii=False,
                )
            )
            bio = (
                None
                if i % 4
                else f"{first} likes {self.rng.choice(WORDS)}s {self.rng.choice(EMOJI)}"
            )
            created = self.ts()
            yield (
                i,
                email,
                handle,
                hashlib.sha256(handle.encode()).hexdigest(),
                None if i % 11 == 0 else first,
                last,
                int(i % 9 == 0),
                ("active", "suspended", "closed")[0 if i % 13 else (i // 13) % 3],
                prefs,
                bio,
                created,
                self.micro(created),
            )

    def categories(self) -> Iterator[tuple[Any, ...]]:
        per = self.sizes.categories_per_root
        next_id = 1
        roots = list(range(1, len(ROOTS) + 1))
        rows: list[tuple[Any, ...]] = []
        for name in ROOTS:
            rows.append((next_id, name, None))
            next_id += 1
        children: list[int] = []
        for root in roots:
            for k in range(per):
                rows.append(
                    (next_id, f"{ROOTS[root - 1].split()[0]} {WORDS[k % len(WORDS)]}s", root)
                )
                children.append(next_id)
                next_id += 1
        for child in children:
            for k in range(per):
                rows.append(
                    (
                        next_id,
                        f"{self.rng.choice(ADJ)} {WORDS[(child + k) % len(WORDS)]}s #{next_id}",
                        child,
                    )
                )
                next_id += 1
        rows.append((next_id, "", children[0]))  # planted: an empty name is an empty GSI key
        for cid, name, parent in rows:
            created = self.ts(100)
            yield (cid, name, parent, created, self.micro(created))

    def leaf_categories(self) -> list[int]:
        roots = len(ROOTS)
        per = self.sizes.categories_per_root
        first_leaf = roots + roots * per + 1
        return list(range(first_leaf, first_leaf + roots * per * per))

    def products(self) -> Iterator[tuple[Any, ...]]:
        leaves = self.leaf_categories()
        sellers = [u for u in range(1, self.sizes.users + 1) if u % 9 == 0]
        for i in range(1, self.sizes.products + 1):
            word = self.rng.choice(WORDS)
            name = f"{self.rng.choice(ADJ)} {word} {self.rng.choice(EMOJI)}".strip()
            if i in self.planted["huge_products"]:
                description = ("Ünïcödé spec sheet ✨ " * 22_000)[:450_000]
            elif i % 50 == 0:
                description = f"Long description of {name}. " * 900  # tens of KB
            elif i % 7 == 0:
                description = None
            else:
                description = f"A {word} made for everyday life — {self.rng.choice(CITIES)}."
            if i in self.planted["precise_products"]:
                lifetime = "12345678901234567890123456789012345678901.5"
            elif i % 3 == 0:
                lifetime = None
            else:
                lifetime = f"{self.rng.randrange(10**12)}.{self.rng.randrange(10**10):010d}"
            tags = self.rng.sample(["eco", "sale", "new", "gift", "bestseller", "b-stock"], k=i % 4)
            attributes = (
                None
                if i % 6 == 0
                else json.dumps(
                    {
                        "color": self.rng.choice(["red", "blue", "natural", "schwarz"]),
                        "tags": tags,
                        "dimensions": {"w": round(self.rng.uniform(1, 200), 1), "h": i % 40 + 1},
                    },
                    ensure_ascii=False,
                )
            )
            created = self.ts()
            yield (
                i,
                None if i % 10 == 0 else self.rng.choice(sellers),
                self.rng.choice(leaves),
                f"SKU-{i:07d}",
                name,
                description,
                f"{self.rng.randrange(100, 500_000) / 100:.2f}",
                None if i % 8 == 0 else f"{self.rng.uniform(0.01, 80):.4f}",
                lifetime,
                self.rng.randrange(0, 500),
                attributes,
                None if i % 3 == 0 else f"https://img.example.com/p/{i}.jpg",
                created,
                self.micro(created),
            )

    def shopping_carts(self) -> Iterator[tuple[Any, ...]]:
        seen: set[tuple[int, int]] = set()
        twins: list[tuple[Any, ...]] = []
        for i in range(1, self.sizes.carts + 1):
            while True:
                pair = (
                    self.rng.randrange(1, self.sizes.users + 1),
                    self.rng.randrange(1, self.sizes.products + 1),
                )
                if pair not in seen:
                    seen.add(pair)
                    break
            added = self.ts()
            row = (i, *pair, 1 + i % 5, added, self.micro(added))
            if i in self.planted["duplicated_carts"]:
                twins.append(row)
            yield row
        for n, row in enumerate(twins):
            yield (self.sizes.carts + 1 + n, row[1], row[2], row[3] + 1, row[4], row[5])

    def orders(self) -> Iterator[tuple[Any, ...]]:
        statuses = ["pending", "paid", "shipped", "delivered", "cancelled"]
        self._items: list[tuple[Any, ...]] = []
        for i in range(1, self.sizes.orders + 1):
            created = self.ts()
            address = (
                None
                if i % 17 == 0
                else json.dumps(
                    {
                        "line1": f"{self.rng.randrange(1, 300)} {self.rng.choice(STREETS)}",
                        "city": self.rng.choice(CITIES),
                        "zip": f"{self.rng.randrange(10000, 99999)}",
                        "geo": {
                            "lat": round(self.rng.uniform(-60, 70), 6),
                            "lng": round(self.rng.uniform(-180, 180), 6),
                        },
                    },
                    ensure_ascii=False,
                )
            )
            total = Decimal(0)
            for _ in range(1 + (i * 7) % 5):  # 1..5 items, 3 on average
                quantity = 1 + self.rng.randrange(4)
                price = Decimal(self.rng.randrange(100, 90_000)) / 100
                product = self.rng.randrange(1, self.sizes.products + 1)
                self._items.append((len(self._items) + 1, i, product, quantity, str(price)))
                total += quantity * price
            user = self.rng.randrange(1, self.sizes.users + 1)
            yield (i, user, statuses[i % 5], str(total), address, created, self.micro(created))

    def order_items(self) -> Iterator[tuple[Any, ...]]:
        yield from self._items


TABLES: Sequence[tuple[str, Sequence[str]]] = (
    (
        "users",
        (
            "id",
            "email",
            "username",
            "password_hash",
            "first_name",
            "last_name",
            "is_seller",
            "status",
            "preferences",
            "bio",
            "created_at",
            "updated_at",
        ),
    ),
    ("categories", ("id", "name", "parent_id", "created_at", "updated_at")),
    (
        "products",
        (
            "id",
            "seller_id",
            "category_id",
            "sku",
            "name",
            "description",
            "price",
            "weight_kg",
            "lifetime_value",
            "inventory_quantity",
            "attributes",
            "image_url",
            "created_at",
            "updated_at",
        ),
    ),
    ("shopping_carts", ("id", "user_id", "product_id", "quantity", "added_at", "updated_at")),
    (
        "orders",
        ("id", "user_id", "status", "total_amount", "shipping_address", "created_at", "updated_at"),
    ),
    ("order_items", ("id", "order_id", "product_id", "quantity", "unit_price")),
)


def _insert(conn: Any, table: str, columns: Sequence[str], rows: Iterator[tuple[Any, ...]]) -> int:
    sql = (
        f"INSERT INTO {quote_ident(table)} ({', '.join(quote_ident(c) for c in columns)}) "
        f"VALUES ({', '.join(['%s'] * len(columns))})"
    )
    count = 0
    chunk: list[tuple[Any, ...]] = []
    with conn.cursor() as cur:
        for row in rows:
            chunk.append(row)
            if len(chunk) >= CHUNK or (table == "products" and len(chunk) >= 100):
                cur.executemany(sql, chunk)
                count += len(chunk)
                chunk = []
        if chunk:
            cur.executemany(sql, chunk)
            count += len(chunk)
    return count


def _schema_statements() -> list[str]:
    text = resources.files("cutover.sample").joinpath("schema.sql").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def load_sample(settings: Settings, scale: int = 1, seed: int = 7) -> SampleReport:
    """Drop and recreate the database of ``settings.mysql`` and fill it."""
    if scale < 1:
        raise ValueError("scale must be 1 or more")
    started = time.perf_counter()
    database = settings.mysql.database
    admin = connect(settings.mysql, database=False)
    try:
        query(admin, f"DROP DATABASE IF EXISTS {quote_ident(database)}")
        query(
            admin,
            f"CREATE DATABASE {quote_ident(database)} "
            "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
        )
    finally:
        admin.close()
    conn = connect(settings.mysql, autocommit=False)
    report = SampleReport(planted=planted_defects(scale, seed))
    try:
        for statement in _schema_statements():
            query(conn, statement)
        gen = _Gen(scale, seed)
        query(conn, "SET FOREIGN_KEY_CHECKS = 0, UNIQUE_CHECKS = 0")
        for table, columns in TABLES:
            report.rows[table] = _insert(conn, table, columns, getattr(gen, table)())
        query(conn, "SET FOREIGN_KEY_CHECKS = 1, UNIQUE_CHECKS = 1")
        conn.commit()
    finally:
        conn.close()
    report.seconds = time.perf_counter() - started
    return report
