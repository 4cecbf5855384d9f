"""Deterministic rows for the DynamoDB modernizer workshop's MySQL schema, which ships empty.

The schema file is the workshop's own (``../shared/workshop/schema.sql``); it is read, never
copied. The data is awkward the way real data is: NULL and empty names, emoji (including ZWJ
sequences and flags), apostrophes, backslashes and double quotes, decomposed accents, DECIMAL
prices from 0.00 to the DECIMAL(10,2) maximum, out-of-stock products, a three-level category
hierarchy with several roots and empty categories, child categories with smaller ids than their
parents, users with no cart and no orders, orders with no items, all three order statuses.

Every foreign key is valid, sellers are users with ``is_seller``, order timestamps have distinct
seconds (so ``ORDER#{created_at}#{id}`` sort keys are unique), and (parent name, name) is unique
among categories (the workshop's Categories table keys them that way). Nothing depends on the
current time: the same (scale, seed) always gives the same rows.
"""

from __future__ import annotations

import datetime as dt
import random
import re
import unicodedata
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from cutover.db import connect, query, quote_ident
from cutover.settings import Settings

Row = tuple[Any, ...]

CHUNK = 500
CENT = Decimal("0.01")
MAX_PRICE = Decimal("99999999.99")  # DECIMAL(10,2)
INT_MAX = 2_147_483_647

# All timestamps are whole seconds in UTC, well inside the TIMESTAMP range (1970-2038).
CATEGORIES_FROM = dt.datetime(2021, 12, 1)
USERS_FROM = dt.datetime(2022, 1, 1)
PRODUCTS_FROM = dt.datetime(2023, 1, 1)
ORDERS_FROM = dt.datetime(2023, 7, 1)
CARTS_FROM = dt.datetime(2025, 7, 1)
YEAR = 365 * 86_400

COLUMNS: dict[str, tuple[str, ...]] = {
    "users": (
        "id",
        "username",
        "email",
        "password_hash",
        "first_name",
        "last_name",
        "is_seller",
        "super_admin",
        "created_at",
        "updated_at",
    ),
    "categories": ("id", "name", "parent_id", "created_at"),
    "products": (
        "id",
        "seller_id",
        "category_id",
        "name",
        "description",
        "price",
        "inventory_quantity",
        "image_url",
        "created_at",
        "updated_at",
    ),
    "shopping_carts": ("id", "user_id", "product_id", "quantity", "created_at", "updated_at"),
    "orders": ("id", "user_id", "total_amount", "status", "created_at", "updated_at"),
    "order_items": ("id", "order_id", "product_id", "quantity", "price_at_time"),
}
TABLES: tuple[str, ...] = tuple(COLUMNS)  # parents before children
STATUSES = ("pending", "completed", "cancelled")

# (first_name, last_name) pairs that every data set contains, at seed-chosen ids.
AWKWARD_NAMES: tuple[tuple[str | None, str | None], ...] = (
    ("Zoë 🦄", "O'Brien"),
    (None, "Nguyễn"),
    ("Ana", None),
    (None, None),
    ('Dwayne "The Rock"', "Johnson"),
    ("Back\\slash", "C:\\Users\\Name"),
    ("👩‍💻", "🇳🇿 Kiwi"),
    ("Jose\u0301", "Zoe\u0308"),  # decomposed accents: equal to "José"/"Zoë" under *_ci
    ("", "Empty-First"),
    ("Robert'); DROP TABLE users;--", "Tables"),
    ("Ω" * 50, "Max-Length"),  # VARCHAR(50) counts characters, not bytes
    (" Padded ", "Trailing  "),
    ("张伟", "李"),
    ("D'Arcy", "D'Angelo"),
)
FIRST = (
    "Ana",
    "Björn",
    "Chloé",
    "Dmitri",
    "Fatima",
    "Giulia",
    "Hiro",
    "Ingrid",
    "Kwame",
    "Léa",
    "Mei",
    "Nuño",
    "Priya",
    "Siobhán",
    "Søren",
    "Tomás",
    "Wei",
    "Xochitl",
    "Yusuf",
    "さくら",
    "Jean-Luc",
    "Mary Ann",
)
LAST = (
    "Smith",
    "Müller",
    "García",
    "Rossi",
    "Kowalski",
    "Nakamura",
    "O'Neill",
    "Østergaard",
    "Çelik",
    "van der Berg",
    "Svensson",
    "Okafor",
    "Smith-Jones",
    "Ramírez 🌮",
)
BCRYPT_ALPHABET = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
DOMAINS = ("example.com", "example.org", "mail.example.net", "exämple.de")

# Per block of 30 categories: (name, children), children as (name, grandchildren).
TAXONOMY: tuple[tuple[str, tuple[tuple[str, tuple[str, ...]], ...]], ...] = (
    (
        "Electronics",
        (
            ("Audio", ("Headphones", "Speakers", 'Hi-Fi "Vintage"')),
            ("Computers", ("Laptops", "Monitors", "Keyboards & Mice")),
            ("Accessories", ()),
        ),
    ),
    (
        "Home & Garden",
        (
            ("Kitchen", ("Cookware", "Knives")),
            ("Garden", ("Seeds & Bulbs", "Tools \\ Hardware")),
            ("Furniture", ()),
            ("Accessories", ()),  # same name as under Electronics, different parent
        ),
    ),
    (
        "Fashion 👗",
        (
            ("Women", ("Dresses", "Shoes")),
            ("Men", ("Shirts",)),
            ("Kids'", ()),
        ),
    ),
    ("Books & Média", (("Fiction", ()), ("Comics / Manga", ()))),
    ("Gift Cards 🎁", ()),
)
# Categories with no products and no children (paths into TAXONOMY).
EMPTY_CATEGORIES = frozenset(
    {
        ("Gift Cards 🎁",),
        ("Home & Garden", "Accessories"),
        ("Electronics", "Computers", "Keyboards & Mice"),
    }
)

ADJ = ("Rustic", "Ergonomic", "Sleek", "Handmade", "Vintage", "Smart", "Tiny", "Über", "Crème")
NOUNS = ("lamp", "chair", "kettle", "notebook", "guitar", "scarf", "tent", "mug", "backpack")
AWKWARD_PRODUCTS = (
    'Monitor 27" 4K',
    "Kids' Bike",
    "C:\\Temp mug",
    "Café ☕ Mug",
    "🚀 Rocket Lamp",
    "Robert'); DROP TABLE products;--",
)
SPECIAL_PRICES = (
    Decimal("0.10"),
    Decimal("1.00"),
    MAX_PRICE,
    Decimal("0.01"),
    Decimal("0.00"),
    Decimal("1234567.89"),
)
ORDERABLE_PRICE = Decimal("10000.00")  # dearer products are never ordered: totals fit DECIMAL

_STATEMENT_SKIP = re.compile(r"^\s*(USE\b|CREATE\s+(DATABASE|SCHEMA)\b)", re.IGNORECASE)
_CREATE_TABLE = re.compile(
    r"^\s*CREATE\s+(?:TEMPORARY\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?"
    r"(`(?:[^`]|``)+`|[\w$]+)(?:\s*\.\s*(`(?:[^`]|``)+`|[\w$]+))?",
    re.IGNORECASE,
)


# --- schema --------------------------------------------------------------------------------


def split_statements(sql: str) -> list[str]:
    """Statements of a MySQL script, without comments; ``;`` inside quotes does not split."""
    statements: list[str] = []
    current: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch in "'\"`":
            end = i + 1
            while end < n:
                if sql[end] == "\\" and ch != "`":
                    end += 2
                    continue
                if sql[end] == ch:
                    if end + 1 < n and sql[end + 1] == ch:  # doubled quote
                        end += 2
                        continue
                    break
                end += 1
            current.append(sql[i : end + 1])
            i = end + 1
        elif (sql.startswith("--", i) and (i + 2 == n or sql[i + 2].isspace())) or ch == "#":
            newline = sql.find("\n", i)
            i = n if newline < 0 else newline
        elif sql.startswith("/*", i):
            close = sql.find("*/", i + 2)
            i = n if close < 0 else close + 2
            current.append(" ")
        elif ch == ";":
            statements.append("".join(current).strip())
            current = []
            i += 1
        else:
            current.append(ch)
            i += 1
    statements.append("".join(current).strip())
    return [s for s in statements if s]


def _unquote(ident: str) -> str:
    return ident[1:-1].replace("``", "`") if ident.startswith("`") else ident


def apply_schema(conn: Any, schema_sql: str) -> list[str]:
    """Create the tables of ``schema_sql`` in the connection's current database.

    ``CREATE DATABASE`` and ``USE`` are skipped; the tables are dropped first, children before
    parents, so a reload starts clean. Returns the created table names in schema order.
    """
    statements: list[str] = []
    tables: list[str] = []
    for statement in split_statements(schema_sql):
        if _STATEMENT_SKIP.match(statement):
            continue
        match = _CREATE_TABLE.match(statement)
        if match:
            # a qualified name (db.table) would escape the current database: keep the table
            name = _unquote(match.group(2) or match.group(1))
            tables.append(name)
            statement = statement[: match.start(1)] + quote_ident(name) + statement[match.end() :]
        statements.append(statement)
    for table in reversed(tables):  # the schema creates parents before their children
        query(conn, f"DROP TABLE IF EXISTS {quote_ident(table)}")
    for statement in statements:
        query(conn, statement)
    return tables


# --- generation ----------------------------------------------------------------------------


def _ascii_slug(text: str | None, keep: str = "") -> str:
    plain = unicodedata.normalize("NFKD", text or "").encode("ascii", "ignore").decode()
    return re.sub(rf"[^a-z0-9{re.escape(keep)}]+", "", plain.lower())[:20]


class _Gen:
    def __init__(self, scale: int, seed: int) -> None:
        if scale < 1:
            raise ValueError("scale must be 1 or more")
        self.rng = random.Random(seed)
        self.scale = scale

    def at(self, start: dt.datetime, span_seconds: int) -> dt.datetime:
        return start + dt.timedelta(seconds=self.rng.randrange(span_seconds))

    def later(self, created: dt.datetime, max_seconds: int) -> dt.datetime:
        """An ``updated_at``: often equal to ``created``, otherwise some time after it."""
        if self.rng.random() < 0.3:
            return created
        return created + dt.timedelta(seconds=self.rng.randrange(1, max_seconds))

    def users(self) -> list[Row]:
        n = 200 * self.scale
        ids = range(1, n + 1)
        awkward = dict(zip(self.rng.sample(ids, len(AWKWARD_NAMES)), AWKWARD_NAMES, strict=True))
        self.sellers = sorted(self.rng.sample(ids, n // 8))
        sellers = set(self.sellers)
        admins = set(self.rng.sample(ids, 2))
        # users who never shop: no cart row, no order (some of them sell)
        self.shoppers = sorted(set(ids) - set(self.rng.sample(ids, n // 6)))
        rows: list[Row] = []
        for i in ids:
            if i in awkward:
                first, last = awkward[i]
            else:
                first = None if self.rng.random() < 0.08 else self.rng.choice(FIRST)
                last = None if self.rng.random() < 0.08 else self.rng.choice(LAST)
            slug = _ascii_slug(first) or _ascii_slug(last) or "user"
            local = _ascii_slug(last or first, keep="'.") or "user"
            domain = self.rng.choice(DOMAINS)
            if i % 7 == 0:
                email = f"{local}+shop{i}@{domain}"
            elif i % 11 == 0:
                email = f"{local.upper()}.{i}@{domain.upper()}"
            else:
                email = f"{local}.{i}@{domain}"
            salt = "".join(self.rng.choices(BCRYPT_ALPHABET, k=53))
            created = self.at(USERS_FROM, YEAR)
            rows.append(
                (
                    i,
                    f"{slug}_{i}",
                    email,
                    f"$2b$12${salt}",
                    first,
                    last,
                    i in sellers,
                    i in admins,
                    created,
                    self.later(created, YEAR),
                )
            )
        return rows

    def categories(self) -> list[Row]:
        """Blocks of 30; ids are shuffled, so a child may have a smaller id than its parent.

        Rows come parents first, so they can be inserted in order with foreign key checks on.
        """
        levels: list[list[tuple[tuple[str, ...], str]]] = [[], [], []]
        for block in range(self.scale):
            suffix = "" if block == 0 else f" ({block + 1})"
            for root, children in TAXONOMY:
                levels[0].append(((str(block), root), root + suffix))
                for child, grandchildren in children:
                    levels[1].append(((str(block), root, child), child + suffix))
                    for leaf in grandchildren:
                        levels[2].append(((str(block), root, child, leaf), leaf + suffix))
        nodes = [node for level in levels for node in level]
        ids = self.rng.sample(range(1, len(nodes) + 1), len(nodes))
        id_of = {path: ids[k] for k, (path, _) in enumerate(nodes)}
        self.stocked: list[int] = []
        self.leaves: list[int] = []
        parents = {path[:-1] for path, _ in nodes if len(path) > 2}
        rows: list[Row] = []
        for path, name in nodes:
            parent = id_of[path[:-1]] if len(path) > 2 else None
            rows.append((id_of[path], name, parent, self.at(CATEGORIES_FROM, 30 * 86_400)))
            if path[1:] not in EMPTY_CATEGORIES:
                self.stocked.append(id_of[path])
                if path not in parents:
                    self.leaves.append(id_of[path])
        return rows

    def products(self) -> list[Row]:
        n = 400 * self.scale
        ids = range(1, n + 1)
        specials = self.rng.sample(ids, len(SPECIAL_PRICES) + len(AWKWARD_PRODUCTS) + 3)
        prices = dict(zip(specials, SPECIAL_PRICES, strict=False))
        names = dict(zip(specials[len(SPECIAL_PRICES) :], AWKWARD_PRODUCTS, strict=False))
        empty_description, long_description, max_inventory = specials[-3:]
        self.prices: dict[int, Decimal] = {}
        rows: list[Row] = []
        for i in ids:
            noun = self.rng.choice(NOUNS)
            name = names.get(i) or f"{self.rng.choice(ADJ)} {noun}"
            price = prices.get(i, Decimal(self.rng.randrange(99, 200_000)) / 100)
            self.prices[i] = price
            if i == empty_description:
                description: str | None = ""
            elif i == long_description:
                description = "Spec sheet — ✨ line\n\t" * 1_500  # ~38 KB of TEXT's 64 KB
            elif self.rng.random() < 0.15:
                description = None
            else:
                description = f"A {noun} for everyday life.\nCare: wipe with a damp cloth."
            if i == max_inventory:
                inventory = INT_MAX
            elif self.rng.random() < 0.1:
                inventory = 0
            else:
                inventory = self.rng.randrange(1, 500)
            image = (
                None
                if self.rng.random() < 0.2
                else f"https://img.example.com/p/{i}.jpg?w=640&h=480"
            )
            # mostly leaves, sometimes a category that also has children
            category = self.rng.choice(self.leaves if self.rng.random() < 0.9 else self.stocked)
            created = self.at(PRODUCTS_FROM, YEAR // 2)
            rows.append(
                (
                    i,
                    self.rng.choice(self.sellers),
                    category,
                    name,
                    description,
                    price,
                    inventory,
                    image,
                    created,
                    self.later(created, YEAR),
                )
            )
        return rows

    def shopping_carts(self) -> list[Row]:
        n = 300 * self.scale
        products = len(self.prices)
        seen: set[tuple[int, int]] = set()
        rows: list[Row] = []
        while len(rows) < n:
            pair = (self.rng.choice(self.shoppers), self.rng.randrange(1, products + 1))
            if pair in seen:  # UNIQUE (user_id, product_id)
                continue
            seen.add(pair)
            quantity = 99 if self.rng.random() < 0.01 else self.rng.randrange(1, 6)
            created = self.at(CARTS_FROM, YEAR // 2)
            rows.append((len(rows) + 1, *pair, quantity, created, self.later(created, 86_400)))
        return rows

    def orders(self) -> list[Row]:
        n = 300 * self.scale
        span = max(2 * YEAR, 2 * n)
        offsets = sorted(self.rng.sample(range(span), n))  # distinct seconds
        orderable = [p for p, price in self.prices.items() if price <= ORDERABLE_PRICE]
        # the first orders guarantee one of each status and one order with no items
        statuses = [*STATUSES, *self.rng.choices(STATUSES, weights=(20, 65, 15), k=n - 3)]
        empty = {1, *(i for i in range(2, n + 1) if self.rng.random() < 0.06)}
        rows: list[Row] = []
        self.items: list[Row] = []
        for i, (offset, status) in enumerate(zip(offsets, statuses, strict=True), start=1):
            count = 0 if i in empty else self.rng.choices((1, 2, 3, 4, 5), (30, 25, 20, 15, 10))[0]
            total = Decimal("0.00")
            for product in self.rng.sample(orderable, count):
                quantity = self.rng.randrange(1, 5)
                price = self.prices[product]
                if self.rng.random() < 0.2:  # the price has changed since
                    price = (price * Decimal(self.rng.uniform(0.5, 1.5))).quantize(CENT)
                self.items.append((len(self.items) + 1, i, product, quantity, price))
                total += quantity * price
            created = ORDERS_FROM + dt.timedelta(seconds=offset)
            updated = created if status == "pending" else self.later(created, 30 * 86_400)
            rows.append((i, self.rng.choice(self.shoppers), total, status, created, updated))
        return rows

    def order_items(self) -> list[Row]:
        return self.items


def generate(scale: int = 1, seed: int = 7) -> dict[str, list[Row]]:
    """Rows per table (columns as in ``COLUMNS``), parents before children; deterministic."""
    gen = _Gen(scale, seed)
    return {table: getattr(gen, table)() for table in TABLES}


# --- loading -------------------------------------------------------------------------------


def _insert(conn: Any, table: str, rows: Sequence[Row]) -> int:
    columns = COLUMNS[table]
    sql = (
        f"INSERT INTO {quote_ident(table)} ({', '.join(quote_ident(c) for c in columns)}) "
        f"VALUES ({', '.join(['%s'] * len(columns))})"
    )
    with conn.cursor() as cur:
        for start in range(0, len(rows), CHUNK):
            cur.executemany(sql, rows[start : start + CHUNK])
    return len(rows)


def load(settings: Settings, schema_path: Path, *, scale: int = 1, seed: int = 7) -> dict[str, int]:
    """(Re)create the workshop tables in the database of ``settings.mysql`` and fill them.

    The database must exist and default to utf8mb4 (the schema names no character set).
    Returns the number of rows inserted per table.
    """
    data = generate(scale, seed)
    schema_sql = Path(schema_path).read_text(encoding="utf-8")
    conn = connect(settings.mysql, autocommit=False)
    try:
        charset = query(conn, "SELECT @@character_set_database")[0][0]
        if charset != "utf8mb4":
            raise ValueError(
                f"database {settings.mysql.database!r} defaults to {charset}, not utf8mb4: "
                "the workshop data has emoji"
            )
        apply_schema(conn, schema_sql)
        counts = {table: _insert(conn, table, data[table]) for table in TABLES}
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    finally:
        conn.close()
    return counts
