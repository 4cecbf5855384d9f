"""Stream one partition of a view from MySQL into a Parquet file in the staging area.

connectorx reads the result set straight into Arrow record batches (Rust, no Python per
row), so memory is bounded by the batch size and throughput approaches the `mysql` client.
DECIMAL columns are read as text, so numbers never pass through float and wide decimals
(beyond Arrow's 38 digits) survive to the transform stage, which judges them.

Every connectorx call goes through ``arrow_stream``, which turns whatever the reader raises
(including the Rust panics pyo3 raises as ``PanicException``, a ``BaseException``) into an
``ExtractError`` naming the view, the partition and, where it can be found, the column.
"""

from __future__ import annotations

import errno
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pyarrow as pa
import pyarrow.parquet as pq

from cutover.db import query, quote_ident
from cutover.errors import CutoverError, ExtractError, ExtractFailed, ExtractInterrupted
from cutover.extract.staging import Staging
from cutover.settings import MySQLSettings

BATCH_ROWS = 20_000
_AS_TEXT = {"decimal", "time", "bit", "set", "geometry"}
_PRE_EXECUTION = ["SET time_zone = '+00:00'", "SET NAMES utf8mb4"]


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


def _missing_view(view: str) -> str:
    return f"view {view!r} does not exist; run `cutover prepare` first"


def select_list(conn: Any, view: str) -> str:
    """The view's columns, with those Arrow cannot carry exactly cast to text."""
    rows = query(
        conn,
        "SELECT COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS "
        "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
        (view,),
    )
    if not rows:
        raise ExtractFailed(_missing_view(view), view=view)
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


# --- reading, and what a failed read means ---------------------------------------------------


class ViewStream:
    """The record batches of one read of a view (a pyarrow RecordBatchReader underneath);
    errors raised while fetching a batch become ``ExtractError`` too."""

    def __init__(self, reader: Any, translating: Callable[[], Any]) -> None:
        self._reader = reader
        self._translating = translating

    @property
    def schema(self) -> pa.Schema:
        return self._reader.schema

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        batches = iter(self._reader)
        while True:
            with self._translating():
                try:
                    batch = next(batches)
                except StopIteration:
                    return
            yield batch

    def read_all(self) -> pa.Table:
        return pa.Table.from_batches(list(self), schema=self.schema)


def arrow_stream(
    mysql: MySQLSettings,
    sql: str,
    batch_rows: int = BATCH_ROWS,
    *,
    view: str | None = None,
    partition: str | None = None,
) -> ViewStream:
    """The record batches of ``sql`` (a read of ``view``; ``partition`` when it reads one),
    read in UTC and utf8mb4. The one place connectorx is called: anything it raises, at the
    call or while batches are fetched, becomes an ``ExtractError``. ``view`` defaults to the
    first backquoted name after FROM in ``sql``."""
    view = view or _view_of(sql)

    @contextmanager
    def translating() -> Iterator[None]:
        try:
            yield
        except CutoverError:
            raise
        except BaseException as exc:
            if not _is_reader_error(exc):
                raise  # KeyboardInterrupt, SystemExit, GeneratorExit, ...
            raise extract_error(exc, mysql, view, partition) from exc

    with translating():
        import connectorx as cx

        reader = cx.read_sql(
            connectorx_url(mysql),
            sql,
            return_type="arrow_stream",
            batch_size=batch_rows,
            pre_execution_query=_PRE_EXECUTION,
        )
    return ViewStream(reader, translating)


def _view_of(sql: str) -> str:
    match = re.search(r"\bFROM\s+`((?:[^`]|``)+)`", sql, re.IGNORECASE)
    return match.group(1).replace("``", "`") if match else "(query)"


def _is_reader_error(exc: BaseException) -> bool:
    """An ordinary exception, or a Rust panic surfaced by pyo3 (``pyo3_runtime.PanicException``
    derives from BaseException and cannot be imported by name)."""
    return isinstance(exc, Exception) or type(exc).__name__ == "PanicException"


# MySQL error codes and driver phrases after which the same read may succeed: the connection
# was refused, lost or killed, the server went away, or the statement timed out.
_TRANSIENT_CODES = {1053, 1205, 1213, 1317, 1927, 1969, 2002, 2003, 2006, 2013, 2055, 3024, 4031}
_TRANSIENT_PHRASES = (
    "io error",
    "ioerror",
    "os error",
    "disconnected",
    "could not connect",
    "connection refused",
    "connection reset",
    "broken pipe",
    "bytes remaining on stream",
    "server has gone away",
    "lost connection",
    "timed out",
    "timeout",
)
# Logins and databases the server refuses: a setting is wrong, retrying cannot help.
_LOGIN_CODES = {1044, 1045, 1049, 1698}
# Staging write failures a retry cannot fix by itself.
_LASTING_OS_ERRORS = {errno.ENOSPC, errno.EACCES, errno.EPERM, errno.EROFS, errno.EDQUOT}
# connectorx's name of the Rust type it failed to convert a value to -> MySQL DATA_TYPEs.
_RUST_TYPES = {
    "NaiveDateTime": ("datetime", "timestamp"),
    "Utc": ("timestamp", "datetime"),
    "NaiveDate": ("date",),
    "NaiveTime": ("time",),
    "Decimal": ("decimal",),
    "Value": ("json",),
    "f64": ("double", "float", "decimal"),
    "f32": ("float",),
}
_GEOMETRY = (
    "geometry",
    "point",
    "linestring",
    "polygon",
    "multipoint",
    "multilinestring",
    "multipolygon",
    "geometrycollection",
)


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def extract_error(
    exc: BaseException, mysql: MySQLSettings, view: str, partition: str | None = None
) -> ExtractError:
    """What ``exc``, raised while reading ``view``, means, as a one-sentence ``ExtractError``.
    A type or conversion failure is traced to the view's column(s) through
    information_schema.COLUMNS and the types the server sends for them."""
    text = _one_line(str(exc) or type(exc).__name__)
    lowered = text.lower()
    codes = {int(c) for c in re.findall(r"ERROR (\d{4})", text)}
    where = {"view": view, "partition": partition}

    if codes & _LOGIN_CODES:
        return ExtractFailed(
            f"MySQL at {mysql.url} refused the login or the database ({text}); "
            "fix the user, password or database in CUTOVER_MYSQL_URL",
            **where,
        )
    if codes & _TRANSIENT_CODES or any(p in lowered for p in _TRANSIENT_PHRASES):
        return ExtractInterrupted(
            f"the connection to MySQL at {mysql.url} was lost or timed out ({text}); "
            "retry the step (a partition is extracted again from its start)",
            **where,
        )
    if 1146 in codes:
        return ExtractFailed(_missing_view(view), **where)
    if 1054 in codes and (m := re.search(r"Unknown column '([^']+)'", text)):
        return ExtractFailed(
            "the view has no such column (it is older than the contract); "
            "run `cutover prepare` again",
            columns=(m.group(1).rsplit(".", 1)[-1],),
            **where,
        )
    if m := re.search(r"not implemented: MYSQL_TYPE_(\w+)", text):
        return _unsupported_type(m.group(1), mysql, view, partition)
    if m := re.search(r"Could not retrieve `[^`]*?(\w+)>*`: .*?value `([^`]*)`", text):
        return _unconvertible_value(m.group(1), m.group(2), mysql, view, partition)
    if isinstance(exc, (TypeError, ValueError, pa.ArrowException)) or "convert" in lowered:
        return ExtractFailed(
            f"a value cannot be read ({text}); cast the column to a type in the contract; "
            "run `cutover prepare` again",
            **where,
        )
    return ExtractFailed(
        f"{text}; check the view (`cutover contract views`) and run `cutover prepare` again",
        **where,
    )


def _view_columns(mysql: MySQLSettings, view: str) -> list[tuple[str, str, str, int | None]]:
    """(name, DATA_TYPE, COLUMN_TYPE, CHARACTER_MAXIMUM_LENGTH) of each column of ``view``,
    and the type code the server sends for it; [] when MySQL cannot be asked."""
    from cutover.db import connect

    try:
        conn = connect(mysql)
    except CutoverError:
        return []
    try:
        rows = query(
            conn,
            "SELECT COLUMN_NAME, LOWER(DATA_TYPE), LOWER(COLUMN_TYPE), CHARACTER_MAXIMUM_LENGTH "
            "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() "
            "AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
            (view,),
        )
        return [(str(n), str(d), str(c), length) for n, d, c, length in rows]
    except Exception:
        return []
    finally:
        conn.close()


def _wire_types(mysql: MySQLSettings, view: str, columns: list[str]) -> dict[str, int]:
    """The type codes the server sends for ``columns`` of ``view`` (what connectorx sees)."""
    from cutover.db import connect

    if not columns:
        return {}
    try:
        conn = connect(mysql)
    except CutoverError:
        return {}
    try:
        with conn.cursor() as cur:
            cur.execute(
                f"SELECT {', '.join(quote_ident(c) for c in columns)} "
                f"FROM {quote_ident(view)} LIMIT 0"
            )
            return {d[0]: d[1] for d in cur.description or ()}
    except Exception:
        return {}
    finally:
        conn.close()


def _unsupported_type(
    type_name: str, mysql: MySQLSettings, view: str, partition: str | None
) -> ExtractError:
    """connectorx has no Arrow type for MySQL's ``MYSQL_TYPE_<type_name>``: find the column.

    information_schema alone cannot tell: a bare ``NULL AS x`` shows as ``binary(0)`` on
    MariaDB (``null`` elsewhere), but so do ``CAST(NULL AS BINARY)`` and ``IF(c, NULL, NULL)``,
    which the server sends as strings and read fine. So the candidates it gives are checked
    against the type the server sends for them."""
    from MySQLdb.constants import FIELD_TYPE

    columns = _view_columns(mysql, view)
    if type_name == "NULL":
        candidates = [c for c in columns if c[1] == "null" or (c[1] == "binary" and not c[3])]
    elif type_name == "GEOMETRY":
        candidates = [c for c in columns if c[1] in _GEOMETRY]
    else:
        candidates = [c for c in columns if c[1] == type_name.lower()]
    code = getattr(FIELD_TYPE, type_name, None)
    wire = _wire_types(mysql, view, [c[0] for c in candidates])
    confirmed = [c for c in candidates if code is not None and wire.get(c[0]) == code]
    at_fault = confirmed or candidates
    names = tuple(c[0] for c in at_fault)
    declared = ", ".join(sorted({c[2] for c in at_fault})) or "?"
    if type_name == "NULL":
        subject = "MySQL gives it" if len(names) == 1 else "MySQL gives them"
        problem = (
            f"{subject if names else 'a column has'} type NULL (a bare NULL in the view; "
            f"information_schema says {declared}), which has no Arrow type; cast the "
            "placeholder to a type (e.g. CAST(NULL AS CHAR)); run `cutover prepare` again"
        )
    else:
        problem = (
            f"MySQL type {type_name} ({declared}) cannot be read; cast the column to a type "
            "Arrow carries (text or number) in the contract; run `cutover prepare` again"
        )
    return ExtractFailed(problem, view=view, partition=partition, columns=names)


def _unconvertible_value(
    rust_type: str, value: str, mysql: MySQLSettings, view: str, partition: str | None
) -> ExtractError:
    """A value the server sent does not fit its column's type (e.g. a zero date)."""
    types = _RUST_TYPES.get(rust_type, ())
    names = tuple(c[0] for c in _view_columns(mysql, view) if c[1] in types)
    shown = re.sub(r"^\w+\(\"?'?|'?\"?\)$", "", value) or value
    which = " (in one of these columns)" if len(names) > 1 else ""
    return ExtractFailed(
        f"MySQL returned the value {shown!r}{which}, which is not a valid "
        f"{'/'.join(t.upper() for t in types) or rust_type}; fix those rows, or map the value "
        "to NULL in the contract (e.g. NULLIF); run `cutover prepare` again",
        view=view,
        partition=partition,
        columns=names,
    )


def stream_to_parquet(
    mysql: MySQLSettings,
    sql: str,
    staging: Staging,
    relpath: str,
    *,
    view: str | None = None,
    partition: str | None = None,
    batch_rows: int = BATCH_ROWS,
    progress: Callable[[int], None] | None = None,
) -> ExtractResult:
    """Run ``sql`` (a read of ``view``, one ``partition``) and write its rows to ``relpath``
    in the staging area."""
    started = time.perf_counter()
    view = view or _view_of(sql)
    reader = arrow_stream(mysql, sql, batch_rows, view=view, partition=partition)
    rows = 0
    try:
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
    except (OSError, pa.ArrowException) as exc:
        message = _one_line(str(exc))
        lasting = getattr(exc, "errno", None) in _LASTING_OS_ERRORS or any(
            p in message.lower() for p in ("access denied", "permission denied", "no space")
        )
        raise (ExtractFailed if lasting else ExtractInterrupted)(
            f"cannot write {staging.uri(relpath)}: {message}; check the staging area "
            "(CUTOVER_STAGING: space, permissions) and retry",
            view=view,
            partition=partition,
        ) from exc
    return ExtractResult(relpath, rows, size, digest, time.perf_counter() - started)


def read_batches(staging: Staging, relpath: str, batch_rows: int = 5_000) -> Any:
    """Record batches of a staged Parquet file, one at a time."""
    with staging.fs.open_input_file(staging.path(relpath)) as src:
        yield from pq.ParquetFile(src).iter_batches(batch_size=batch_rows)
