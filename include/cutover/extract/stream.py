"""Stream one partition of a view from MySQL into a Parquet file in the staging area.

connectorx reads the result set straight into Arrow record batches (Rust, no Python per
row), so memory is bounded by the batch size and throughput approaches the `mysql` client.
DECIMAL columns are read as text, so numbers never pass through float and wide decimals
(beyond Arrow's 38 digits) survive to the transform stage, which judges them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pyarrow.parquet as pq

from cutover.db import query, quote_ident
from cutover.extract.staging import Staging
from cutover.settings import MySQLSettings

BATCH_ROWS = 20_000
_AS_TEXT = {"decimal", "time", "bit", "set", "geometry"}


@dataclass(frozen=True)
class ExtractResult:
    file: str  # relative to the staging root
    rows: int
    bytes: int
    sha256: str
    seconds: float


def connectorx_url(mysql: MySQLSettings) -> str:
    auth = quote(mysql.user, safe="")
    if mysql.password:
        auth += ":" + quote(mysql.password, safe="")
    return f"mysql://{auth}@{mysql.host}:{mysql.port}/{mysql.database}"


def select_list(conn: Any, view: str) -> str:
    """The view's columns, with those Arrow cannot carry exactly cast to text."""
    rows = query(
        conn,
        "SELECT COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS "
        "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
        (view,),
    )
    if not rows:
        raise LookupError(f"view {view!r} does not exist; run `cutover prepare` first")
    parts = []
    for name, data_type in rows:
        col = quote_ident(name)
        parts.append(f"CAST({col} AS CHAR) AS {col}" if data_type in _AS_TEXT else col)
    return ", ".join(parts)


def view_query(mysql: MySQLSettings, view: str) -> str:
    """``SELECT <columns, decimals as text> FROM view`` for reading a whole view."""
    from cutover.db import connect

    conn = connect(mysql)
    try:
        return f"SELECT {select_list(conn, view)} FROM {quote_ident(view)}"
    finally:
        conn.close()


def arrow_stream(mysql: MySQLSettings, sql: str, batch_rows: int = BATCH_ROWS) -> Any:
    """A pyarrow RecordBatchReader over the rows of ``sql``, read in UTC and utf8mb4."""
    import connectorx as cx

    return cx.read_sql(
        connectorx_url(mysql),
        sql,
        return_type="arrow_stream",
        batch_size=batch_rows,
        pre_execution_query=["SET time_zone = '+00:00'", "SET NAMES utf8mb4"],
    )


def stream_to_parquet(
    mysql: MySQLSettings,
    sql: str,
    staging: Staging,
    relpath: str,
    *,
    batch_rows: int = BATCH_ROWS,
    progress: Callable[[int], None] | None = None,
) -> ExtractResult:
    """Run ``sql`` and write its rows to ``relpath`` in the staging area."""
    started = time.perf_counter()
    reader = arrow_stream(mysql, sql, batch_rows)
    rows = 0
    staging.makedirs(*relpath.split("/")[:-1])
    with pq.ParquetWriter(
        staging.path(relpath), reader.schema, filesystem=staging.fs, compression="zstd"
    ) as writer:
        for batch in reader:
            if batch.num_rows:
                writer.write_batch(batch)
                rows += batch.num_rows
                if progress:
                    progress(rows)
    digest, size = staging.sha256(relpath)
    return ExtractResult(relpath, rows, size, digest, time.perf_counter() - started)


def read_batches(staging: Staging, relpath: str, batch_rows: int = 5_000) -> Any:
    """Record batches of a staged Parquet file, one at a time."""
    with staging.fs.open_input_file(staging.path(relpath)) as src:
        yield from pq.ParquetFile(src).iter_batches(batch_size=batch_rows)
