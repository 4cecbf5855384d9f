"""Parity by hash bucket, for a check spread over many tasks: every item of both sides
(``expected`` from MySQL, ``actual`` from DynamoDB) is written as a row (pk, sk, canonical
text) to the Parquet files of its key's bucket; then each bucket is compared on its own,
first by an order-independent signature and item by item only when the signatures differ.

Layout under a run folder ``<base>`` of the staging storage::

    <base>/<side>/bucket=<n>/part-<writer id>.parquet

Any number of writers (tasks) may write the same side at once, each under its own writer id.
A writer retried under the same id replaces its own files, so a retry never duplicates rows.

An item's identity is its key text ``pk + "\\0" + (sk or "")``, as in ``parity.py``: a
missing sort key and an empty one are the same key (DynamoDB accepts no empty key value)."""

from __future__ import annotations

import contextlib
import hashlib
import re
import shutil
import tempfile
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cutover.errors import TerminalError
from cutover.extract.staging import Staging
from cutover.validate.canonical import differences

SIDES = ("expected", "actual")
ROW_SCHEMA = pa.schema([("pk", pa.string()), ("sk", pa.string()), ("canon", pa.large_string())])
COLUMNS = ROW_SCHEMA.names
# The bucket count a file was written with, in its Parquet schema metadata: both sides must
# have been bucketed alike, or a bucket's files would hold different slices of the key space.
BUCKETS_METADATA = b"cutover.buckets"
DEFAULT_FLUSH_ROWS = 50_000
READ_BATCH_ROWS = 65_536
MAX_BUCKETS = 1024
_WRITER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_BUCKET_FOLDER = re.compile(r"bucket=(\d+)")

Rows = Iterable[tuple[str, str | None, str]]
Column = pa.Array | pa.ChunkedArray | Sequence[str | None]


def key_text(pk: str, sk: str | None) -> str:
    return f"{pk}\0{sk or ''}"


def _key_hash(key: bytes, buckets: int) -> int:
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") % buckets


def bucket_of(pk: str, sk: str | None, buckets: int) -> int:
    """The bucket of a key: BLAKE2b with an 8-byte digest of the UTF-8 key text, read as a
    big-endian integer, modulo ``buckets``. The same on every process and machine, unlike
    ``hash()``, which is salted per process."""
    _check_buckets(buckets)
    return _key_hash(key_text(pk, sk).encode(), buckets)


def buckets_of(pks: Column, sks: Column | None, buckets: int) -> pa.Array:
    """``bucket_of`` of every key (int32), over pyarrow arrays or Python sequences. The key
    texts are joined by Arrow; hashing is one C call per key (Arrow has no BLAKE2b kernel)."""
    _check_buckets(buckets)
    pk_array = _string_array(pks)
    if pk_array.null_count:
        raise ValueError("a partition key is null")
    sk_array = pa.nulls(len(pk_array), pa.string()) if sks is None else _string_array(sks)
    if len(sk_array) != len(pk_array):
        raise ValueError(f"{len(pk_array)} partition keys but {len(sk_array)} sort keys")
    keys = pc.binary_join_element_wise(pk_array, pc.fill_null(sk_array, ""), "\0")
    hashed = [_key_hash(key, buckets) for key in keys.cast(pa.large_binary()).to_pylist()]
    return pa.array(hashed, pa.int32())


def choose_buckets(
    item_count: int, target_items_per_bucket: int = 200_000, max_buckets: int = MAX_BUCKETS
) -> int:
    """Enough buckets for about ``target_items_per_bucket`` items each (a bucket is what one
    item-level comparison holds in memory), at least 1 and at most ``max_buckets``."""
    if item_count < 0 or target_items_per_bucket < 1 or max_buckets < 1:
        raise ValueError("item_count must be >= 0, the target and the maximum >= 1")
    wanted = -(-item_count // target_items_per_bucket)
    return max(1, min(max_buckets, wanted))


def _check_buckets(buckets: int) -> None:
    if buckets < 1:
        raise ValueError(f"the bucket count must be at least 1, not {buckets}")


def _string_array(values: Column) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if not isinstance(values, pa.Array):
        values = pa.array(values, pa.string())
    if pa.types.is_large_string(values.type):
        values = values.cast(pa.string())
    return values


# --- signatures --------------------------------------------------------------------------


def _row_digests(
    pks: Sequence[str], sks: Sequence[str | None], canons: Sequence[str]
) -> list[bytes]:
    # "pk\0sk\0canon" is injective on (key text, canon): canonical JSON escapes NUL, so the
    # last NUL always separates the canonical text from the key text.
    return [
        hashlib.blake2b(f"{pk}\0{sk or ''}\0{canon}".encode(), digest_size=16).digest()
        for pk, sk, canon in zip(pks, sks, canons, strict=True)
    ]


_HALF = 1 << 64
# one key text a row, "pk\0sk\0canon": injective on (key text, canon), since canonical JSON
# escapes NUL (the last NUL always separates the canonical text from the key text)
_SUMS = (
    "SELECT count(*), coalesce(sum(hash(k)::HUGEINT), 0), "
    "coalesce(sum(hash(k || chr(1))::HUGEINT), 0) "
    "FROM (SELECT pk || chr(0) || coalesce(sk, '') || chr(0) || canon AS k FROM rows)"
)
_duck = threading.local()


def _connection() -> duckdb.DuckDBPyConnection:
    con = getattr(_duck, "con", None)
    if con is None:
        con = _duck.con = duckdb.connect()
    return con


def _sums(table: pa.Table | pa.RecordBatch) -> tuple[int, int, int]:
    """(rows, sum of hash(k), sum of hash(k + "\x01")) of ``table``, by DuckDB's vectorised
    64-bit hash, over the Arrow data without copying it into Python objects."""
    con = _connection()
    con.register("rows", table)
    try:
        ((count, first, second),) = con.execute(_SUMS).fetchall()
    finally:
        con.unregister("rows")
    return int(count), int(first), int(second)


def _file_sums(paths: list[str]) -> tuple[int, int, int]:
    """``_sums`` of the rows of local Parquet files, read by DuckDB itself."""
    query = _SUMS.replace("FROM rows", "FROM read_parquet(?)")
    ((count, first, second),) = _connection().execute(query, [paths]).fetchall()
    return int(count), int(first), int(second)


class Signature:
    """An order-independent signature of a multiset of rows: the row count and two sums
    modulo 2**64 of 64-bit hashes of each row's ``pk\0sk\0canon`` (DuckDB's ``hash`` of the
    text, and of the text with a byte appended), 128 bits in all.

    A sum is commutative and associative, so neither row order nor the way rows were split
    over writers, files and batches changes it; partial signatures add up. A sum rather than
    an XOR: XOR cancels equal hashes, so a row present twice would vanish and {A, B, B} would
    sign like {A} (and, even with the count, {A, B, B} like {A, C, C}); a sum counts every
    copy. For rows not chosen adversarially the hashes behave as independent uniform values,
    and a fixed change to the multiset leaves both sums unchanged with probability about
    2**-128 per bucket. Not a defence against rows crafted to collide: the threat here is
    accidents, not an adversary. Both sides of a bucket are signed in one process by one
    DuckDB, so the hash function is the same for both (it is not meant to be kept).

    DuckDB hashes in C++, vectorised: the signature path costs a fraction of the item-level
    comparison's per-row Python work (``cutover bench`` measures the ratio)."""

    def __init__(self) -> None:
        self.count = 0
        self.first = 0
        self.second = 0

    def add(self, pks: Sequence[str], sks: Sequence[str | None], canons: Sequence[str]) -> None:
        self.add_batch(pa.table([_string_array(pks), _string_array(sks),
                                 _string_array(canons)], names=COLUMNS))  # fmt: skip

    def add_batch(self, batch: pa.RecordBatch | pa.Table) -> None:
        self._add(*_sums(batch.select(COLUMNS)))

    def add_files(self, paths: list[str]) -> None:
        """Add the rows of local Parquet files (columns pk, sk, canon)."""
        self._add(*_file_sums(paths))

    def _add(self, count: int, first: int, second: int) -> None:
        self.count += count
        self.first = (self.first + first) % _HALF
        self.second = (self.second + second) % _HALF

    @property
    def total(self) -> int:
        return (self.first << 64) | self.second

    @property
    def text(self) -> str:
        return f"{self.count}:{self.total:032x}"

    def __str__(self) -> str:
        return self.text


def signature(rows: Rows | pa.Table | pa.RecordBatch) -> str:
    """The ``Signature`` text (``<count>:<sum as 32 hex digits>``) of rows given as
    (pk, sk, canonical text) tuples or as a table with columns pk, sk, canon."""
    sig = Signature()
    if isinstance(rows, pa.Table | pa.RecordBatch):
        sig.add_batch(rows)
        return sig.text
    chunk: list[tuple[str, str | None, str]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == READ_BATCH_ROWS:
            sig.add(*zip(*chunk, strict=True))
            chunk.clear()
    if chunk:
        sig.add(*zip(*chunk, strict=True))
    return sig.text


# --- writing -----------------------------------------------------------------------------


class BucketWriter:
    """Writes the rows of one side to ``<base>/<side>/bucket=<n>/part-<writer_id>.parquet``.

    Rows are buffered up to ``flush_rows``, then spooled, sorted by bucket, to one local
    Parquet file (one row group per bucket per flush). ``close`` copies each bucket's row
    groups to its staging file, at most ``flush_rows`` rows at a time. So memory is bounded by
    ``flush_rows`` whatever the table's size or the bucket count, one file is open at a time
    (an open S3 upload buffers megabytes; a thousand of them would not fit), and nothing is
    published until the writer closes. ``held_rows`` is the rows held in memory now,
    ``peak_rows`` the most ever held."""

    def __init__(
        self,
        staging: Staging,
        base: str,
        side: str,
        writer_id: str,
        buckets: int,
        *,
        flush_rows: int = DEFAULT_FLUSH_ROWS,
        spool_dir: Path | None = None,
    ) -> None:
        if side not in SIDES:
            raise ValueError(f"side must be one of {SIDES}, not {side!r}")
        if not _WRITER_ID.fullmatch(writer_id):
            raise ValueError(f"writer id {writer_id!r} must be letters, digits, '_', '.', '-'")
        _check_buckets(buckets)
        if flush_rows < 1:
            raise ValueError("flush_rows must be at least 1")
        self.staging = staging
        self.base = base
        self.side = side
        self.writer_id = writer_id
        self.buckets = buckets
        self.flush_rows = flush_rows
        self.held_rows = 0
        self.peak_rows = 0
        self.rows_written = 0
        self.flushes = 0
        self._tables: list[pa.Table] = []
        self._pks: list[str] = []
        self._sks: list[str | None] = []
        self._canons: list[str] = []
        self._spool_parent = spool_dir
        self._spool_dir: Path | None = None
        self._spool: pq.ParquetWriter | None = None
        self._row_groups: dict[int, list[int]] = {}
        self._next_row_group = 0
        self._closed = False

    def __enter__(self) -> BucketWriter:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _hold(self, rows: int) -> None:
        self.held_rows += rows
        self.peak_rows = max(self.peak_rows, self.held_rows)

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("the bucket writer is closed")

    def write(self, pk: str, sk: str | None, canon: str) -> None:
        self._check_open()
        self._pks.append(pk)
        self._sks.append(sk)
        self._canons.append(canon)
        self._hold(1)
        if self.held_rows >= self.flush_rows:
            self.flush()

    def write_rows(self, rows: Rows) -> None:
        for pk, sk, canon in rows:
            self.write(pk, sk, canon)

    def write_table(self, table: pa.Table | pa.RecordBatch) -> None:
        """Rows from a table or batch with columns pk, sk and canon (others are ignored), such
        as the Parquet files of ``export.py`` and ``expected.py``."""
        self._check_open()
        if isinstance(table, pa.RecordBatch):
            table = pa.Table.from_batches([table])
        table = table.select(COLUMNS).cast(ROW_SCHEMA)
        offset = 0
        while offset < table.num_rows:
            take = min(self.flush_rows - self.held_rows, table.num_rows - offset)
            self._tables.append(table.slice(offset, take))
            self._hold(take)
            offset += take
            if self.held_rows >= self.flush_rows:
                self.flush()

    def flush(self) -> None:
        """Spools the buffered rows, sorted by bucket, and empties the buffer."""
        if self._pks:
            self._tables.append(pa.table([self._pks, self._sks, self._canons], schema=ROW_SCHEMA))
            self._pks, self._sks, self._canons = [], [], []
        if not self._tables:
            return
        table = pa.concat_tables(self._tables)
        self._tables = []
        bucket = buckets_of(table.column("pk"), table.column("sk"), self.buckets)
        order = pc.sort_indices(bucket)
        table = table.take(order)
        bucket = bucket.take(order)
        if self._spool is None:
            self._spool_dir = Path(
                tempfile.mkdtemp(prefix="cutover-buckets-", dir=self._spool_parent)
            )
            self._spool = pq.ParquetWriter(self._spool_dir / "spool.parquet", ROW_SCHEMA)
        counts = pc.value_counts(bucket)
        values, sizes = counts.field("values").to_pylist(), counts.field("counts").to_pylist()
        start = 0
        for value, count in sorted(zip(values, sizes, strict=True)):
            self._spool.write_table(table.slice(start, count), row_group_size=count)
            self._row_groups.setdefault(value, []).append(self._next_row_group)
            self._next_row_group += 1
            start += count
        self.rows_written += table.num_rows
        self.flushes += 1
        self.held_rows = 0

    def close(self) -> dict[int, int]:
        """Publishes every bucket's file; returns the rows written per bucket."""
        self._check_open()
        self.flush()
        try:
            if self._spool is not None:
                self._spool.close()
            written = self._publish()
            self._remove_stale(set(written))
        finally:
            self._closed = True
            self._remove_spool()
        return written

    def abort(self) -> None:
        """Drops everything written so far; publishes nothing."""
        if self._closed:
            return
        self._closed = True
        self._tables, self._pks, self._sks, self._canons = [], [], [], []
        self.held_rows = 0
        if self._spool is not None:
            self._spool.close()
        self._remove_spool()

    def _remove_spool(self) -> None:
        if self._spool_dir is not None:
            shutil.rmtree(self._spool_dir, ignore_errors=True)

    def _file_name(self) -> str:
        return f"part-{self.writer_id}.parquet"

    def _publish(self) -> dict[int, int]:
        written: dict[int, int] = {}
        if not self._row_groups or self._spool_dir is None:
            return written
        spool = pq.ParquetFile(self._spool_dir / "spool.parquet")
        if spool.metadata.num_row_groups != self._next_row_group:
            raise RuntimeError(
                f"spool has {spool.metadata.num_row_groups} row groups, "
                f"{self._next_row_group} were written"
            )
        schema = ROW_SCHEMA.with_metadata({BUCKETS_METADATA: str(self.buckets).encode()})
        for bucket, groups in sorted(self._row_groups.items()):
            target = self.staging.path(self.base, self.side, f"bucket={bucket}", self._file_name())
            written[bucket] = _write_bucket(
                self.staging, target, schema, spool, groups, self.flush_rows, self._hold
            )
        return written

    def _remove_stale(self, written: set[int]) -> None:
        """Deletes this writer's files in buckets it did not write this time (left by an
        earlier attempt over other rows), so a retry leaves exactly what it wrote."""
        for rel in self.staging.files(self.base, self.side):
            folder, _, name = rel.rpartition("/")
            match = _BUCKET_FOLDER.fullmatch(folder)
            if name == self._file_name() and match and int(match[1]) not in written:
                self.staging.fs.delete_file(self.staging.path(self.base, self.side, rel))


def _write_bucket(
    staging: Staging,
    target: str,
    schema: pa.Schema,
    spool: pq.ParquetFile,
    groups: list[int],
    flush_rows: int,
    hold: Callable[[int], None],
) -> int:
    """Copies row groups of the spool to ``target``, merged into row groups of at most
    ``flush_rows`` rows. On a local disk through a temporary file, so a reader never sees a
    half-written file; an S3 object appears whole when its upload completes, and one cut
    short by an error is deleted (a retry of the writer rewrites it anyway)."""
    if staging.local:
        staging.fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
    temp = f"{target}.{uuid.uuid4().hex}.tmp" if staging.local else target
    rows = 0
    pending: list[pa.Table] = []
    pending_rows = 0
    try:
        with staging.fs.open_output_stream(temp) as out, pq.ParquetWriter(out, schema) as writer:
            for group in groups:
                part = spool.read_row_group(group)
                if pending and pending_rows + part.num_rows > flush_rows:
                    writer.write_table(pa.concat_tables(pending))
                    hold(-pending_rows)
                    pending, pending_rows = [], 0
                pending.append(part)
                pending_rows += part.num_rows
                hold(part.num_rows)
                rows += part.num_rows
            if pending:
                writer.write_table(pa.concat_tables(pending))
                hold(-pending_rows)
    except BaseException:
        with contextlib.suppress(OSError):
            staging.fs.delete_file(temp)
        raise
    if staging.local:
        staging.fs.move(temp, target)
    return rows


# --- comparing ---------------------------------------------------------------------------


@dataclass
class BucketResult:
    """One bucket's comparison. ``expected`` and ``actual`` count rows; ``missing`` (in
    expected, not in actual), ``extra``, ``mismatched`` and ``duplicates`` (a key more than
    once on a side) count keys; ``differences`` lists the first of them by key."""

    bucket: int
    expected: int
    actual: int
    expected_signature: str
    actual_signature: str
    buckets: int | None = None
    items_compared: bool = False
    missing: int = 0
    extra: int = 0
    mismatched: int = 0
    duplicates: int = 0
    differences: list[dict[str, Any]] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        return self.expected_signature == self.actual_signature

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "equal": self.equal}


def bucket_files(staging: Staging, base: str, side: str, bucket: int) -> list[str]:
    folder = (base, side, f"bucket={bucket}")
    return [
        staging.path(*folder, name)
        for name in staging.listdir(*folder)
        if name.startswith("part-") and name.endswith(".parquet")
    ]


def _declared_buckets(files: list[pq.ParquetFile], where: str) -> set[int]:
    declared: set[int] = set()
    for file in files:
        metadata = file.schema_arrow.metadata or {}
        if BUCKETS_METADATA not in metadata:
            raise TerminalError(f"{where}: a file has no bucket count; write it with BucketWriter")
        declared.add(int(metadata[BUCKETS_METADATA]))
    return declared


def compare_bucket(staging: Staging, base: str, bucket: int, *, max_keys: int = 50,
                   items: bool = False) -> BucketResult:  # fmt: skip
    """Compares both sides of one bucket: the signatures first, streamed a batch at a time;
    the items only when the signatures differ (then memory is bounded by the bucket), or
    always with ``items`` (what the signature saves, measured by ``cutover bench``)."""
    where = staging.display(base, f"*/bucket={bucket}")
    files = {side: bucket_files(staging, base, side, bucket) for side in SIDES}
    with contextlib.ExitStack() as stack:
        opened = {
            side: [pq.ParquetFile(stack.enter_context(staging.fs.open_input_file(path)))
                   for path in files[side]]
            for side in SIDES
        }  # fmt: skip
        # on a local disk DuckDB reads the files itself (in C++, in parallel); else Arrow does
        paths = None
        if staging.local:
            paths = files  # the file system's own paths: on a local disk, the files
        return _compare(bucket, opened, where, max_keys, items, paths)


def _compare(
    bucket: int, opened: dict[str, list[pq.ParquetFile]], where: str, max_keys: int,
    items: bool = False, paths: dict[str, list[str]] | None = None,
) -> BucketResult:  # fmt: skip
    """Signatures, streamed; then ``_compare_items`` only if they differ."""
    declared = _declared_buckets([f for side in SIDES for f in opened[side]], where)
    if len(declared) > 1:
        raise TerminalError(
            f"{where}: files were written with different bucket counts {sorted(declared)}; "
            "write both sides again with the same count"
        )
    buckets = next(iter(declared), None)
    if buckets is not None and bucket >= buckets:
        raise TerminalError(f"{where}: bucket {bucket} is not below the bucket count {buckets}")
    signatures = {}
    for side in SIDES:
        sig = Signature()
        if paths is not None:
            if paths[side]:
                sig.add_files(paths[side])
        else:
            for file in opened[side]:
                for batch in file.iter_batches(READ_BATCH_ROWS, columns=COLUMNS):
                    sig.add_batch(batch)
        signatures[side] = sig
    result = BucketResult(
        bucket=bucket,
        expected=signatures["expected"].count,
        actual=signatures["actual"].count,
        expected_signature=signatures["expected"].text,
        actual_signature=signatures["actual"].text,
        buckets=buckets,
    )
    if items or not result.equal:
        tables = {
            side: pa.concat_tables([f.read(columns=COLUMNS) for f in opened[side]])
            if opened[side]
            else ROW_SCHEMA.empty_table()
            for side in SIDES
        }
        _compare_items(result, tables["expected"], tables["actual"], max_keys)
    return result


def _keys_and_digests(table: pa.Table) -> tuple[list[str], list[bytes]]:
    keys: list[str] = []
    digests: list[bytes] = []
    for batch in table.to_batches(READ_BATCH_ROWS):
        pks, sks, canons = (batch.column(name).to_pylist() for name in COLUMNS)
        keys.extend(key_text(pk, sk) for pk, sk in zip(pks, sks, strict=True))
        digests.extend(_row_digests(pks, sks, canons))
    return keys, digests


def _rows_of(keys: list[str], wanted: set[str]) -> dict[str, list[int]]:
    rows: dict[str, list[int]] = {}
    for index, key in enumerate(keys):
        if key in wanted:
            rows.setdefault(key, []).append(index)
    return rows


def _compare_items(
    result: BucketResult, expected: pa.Table, actual: pa.Table, max_keys: int
) -> None:
    """The item-level comparison of one bucket. Rows whose digest (key and canonical text)
    is on both sides as often match; the keys of the other rows are then classified."""
    result.items_compared = True
    e_keys, e_digests = _keys_and_digests(expected)
    a_keys, a_digests = _keys_and_digests(actual)
    e_count, a_count = Counter(e_digests), Counter(a_digests)
    e_left, a_left = e_count - a_count, a_count - e_count
    suspects = {k for k, d in zip(e_keys, e_digests, strict=True) if d in e_left}
    suspects |= {k for k, d in zip(a_keys, a_digests, strict=True) if d in a_left}
    del e_count, a_count, e_digests, a_digests
    e_rows, a_rows = _rows_of(e_keys, suspects), _rows_of(a_keys, suspects)
    for key in sorted(suspects):
        e_at, a_at = e_rows.get(key, []), a_rows.get(key, [])
        if len(e_at) > 1 or len(a_at) > 1:
            kind = "duplicate"
            result.duplicates += 1
        elif not a_at:
            kind = "missing"
            result.missing += 1
        elif not e_at:
            kind = "extra"
            result.extra += 1
        else:
            kind = "mismatch"
            result.mismatched += 1
        if len(result.differences) >= max_keys:
            continue
        e_row = _row(expected, e_at[0]) if e_at else None
        a_row = _row(actual, a_at[0]) if a_at else None
        pk, sk, _ = e_row or a_row or (None, None, None)
        e_canon = e_row[2] if e_row else None
        a_canon = a_row[2] if a_row else None
        entry: dict[str, Any] = {
            "kind": kind,
            "PK": pk,
            "SK": sk,
            "attributes": differences(e_canon, a_canon) if e_row and a_row else [],
            "expected": e_canon,
            "actual": a_canon,
        }
        if kind == "duplicate":
            entry["expected_copies"] = len(e_at)
            entry["actual_copies"] = len(a_at)
        result.differences.append(entry)


def _row(table: pa.Table, index: int) -> tuple[Any, Any, Any]:
    row = table.slice(index, 1).to_pylist()[0]
    return row["pk"], row["sk"], row["canon"]
