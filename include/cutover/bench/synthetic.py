"""The benchmark's synthetic source: one table of N rows and six columns, and its contract."""

from __future__ import annotations

import re
from typing import Any

from cutover.contract.load import parse_contract
from cutover.contract.model import Contract
from cutover.db import connect, query
from cutover.db import quote_ident as q
from cutover.settings import Settings

BENCH_DATABASE = "cutover_bench"
BENCH_TABLE = "bench_items"


def bench_contract(partitions: int = 4) -> Contract:
    def attr(name: str, type_: str, column: str) -> dict[str, Any]:
        return {"name": name, "type": type_, "source_table": BENCH_TABLE, "source_column": column}

    return parse_contract(
        {
            "cutover": {"name": "bench"},
            "tables": [
                {
                    "table": "BenchItems",
                    "type": "single-entity",
                    "source_table": BENCH_TABLE,
                    "pk": "item_id",
                    "attributes": [
                        attr("item_id", "N", "id"),
                        attr("name", "S", "name"),
                        attr("price", "N", "price"),
                        attr("quantity", "N", "quantity"),
                        attr("created_at", "S", "created_at"),
                        attr("active", "BOOL", "active"),
                    ],
                    "cutover": {
                        "partition_column": "id",
                        "partitions": partitions,
                        "version_column": "created_at",
                    },
                }
            ],
        },
        "bench",
    )


def bench_database(base: str, settings: Settings) -> str:
    """A bench's MySQL database, named after the caller's table prefix, so that two runs with
    different prefixes (two test sessions at once) never share one; ``base`` without one."""
    suffix = re.sub(r"[^0-9A-Za-z_]", "_", settings.table_prefix).strip("_")
    return (base + (f"_{suffix}" if suffix else ""))[:64]


def build_source(settings: Settings, rows: int) -> Settings:
    """(Re)create ``bench_items`` in the bench database with ``rows`` rows unless it already
    has exactly that many. Returns settings pointing at the bench database."""
    from dataclasses import replace

    database = bench_database(BENCH_DATABASE, settings)
    bench = replace(settings, mysql=settings.mysql.with_database(database))
    admin = connect(settings.mysql, database=False)
    try:
        query(admin, f"CREATE DATABASE IF NOT EXISTS {q(database)} CHARACTER SET utf8mb4")
    finally:
        admin.close()
    conn = connect(bench.mysql)
    try:
        existing = query(
            conn,
            "SELECT TABLE_ROWS FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s",
            (BENCH_TABLE,),
        )
        if existing and query(conn, f"SELECT COUNT(*) FROM {BENCH_TABLE}")[0][0] == rows:
            return bench
        query(conn, f"DROP TABLE IF EXISTS {BENCH_TABLE}")
        query(
            conn,
            f"CREATE TABLE {BENCH_TABLE} (id BIGINT PRIMARY KEY, name VARCHAR(64) NOT NULL, "
            "price DECIMAL(10,2) NOT NULL, quantity INT NOT NULL, created_at DATETIME(6) NOT NULL, "
            "active TINYINT(1) NOT NULL) ENGINE=InnoDB",
        )
        query(conn, "DROP TABLE IF EXISTS digits")
        query(conn, "CREATE TABLE digits (d INT PRIMARY KEY)")
        query(conn, "INSERT INTO digits VALUES (0),(1),(2),(3),(4),(5),(6),(7),(8),(9)")
        width = max(1, len(str(rows - 1)))  # one digits table per decimal place
        number = " + ".join(f"{10**i}*t{i}.d" for i in range(width))
        tables = ", ".join(f"digits t{i}" for i in range(width))
        query(
            conn,
            f"INSERT INTO {BENCH_TABLE} "
            "SELECT n, CONCAT('item ', n), ROUND(MOD(n * 7919, 100000) / 100, 2), "
            "MOD(n, 1000), TIMESTAMP('2024-01-01') + INTERVAL n SECOND, MOD(n, 2) FROM ("
            f"SELECT {number} + 1 AS n FROM {tables}) AS seq WHERE n <= %s",
            (rows,),
        )
        query(conn, "DROP TABLE digits")
    finally:
        conn.close()
    return bench
