"""Parity by hash bucket (cutover.validate.buckets) over a file:// staging folder: stable
bucketing, order-independent signatures, bounded writer memory, and a comparison that names
the planted corruption and skips the item level for equal buckets."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cutover.errors import TerminalError
from cutover.extract.staging import Staging
from cutover.validate import buckets
from cutover.validate.buckets import (
    BucketResult,
    BucketWriter,
    bucket_of,
    buckets_of,
    choose_buckets,
    compare_bucket,
    signature,
)
from cutover.validate.canonical import canonical_item

pytestmark = pytest.mark.unit

BASE = "contract/runs/r1/parity/orders"
BUCKETS = 8
Row = tuple[str, str | None, str]


@pytest.fixture
def staging(tmp_path: Path) -> Staging:
    return Staging((tmp_path / "staging").as_uri())


def item(i: int, qty: str | None = None) -> Row:
    pk, sk = f"USER#{i % 37}", f"ORDER#{i}"
    attrs = {
        "PK": {"S": pk},
        "SK": {"S": sk},
        "qty": {"N": qty if qty is not None else str(i)},
        "tags": {"SS": ["b", "a"]},
    }
    return pk, sk, canonical_item(attrs)


def rows(n: int = 400) -> list[Row]:
    return [item(i) for i in range(n)]


def as_table(data: list[Row]) -> pa.Table:
    return pa.table({k: [row[i] for row in data] for i, k in enumerate(("pk", "sk", "canon"))})


def write(
    staging: Staging,
    side: str,
    data: list[Row],
    writer_id: str = "w0",
    *,
    buckets: int = BUCKETS,
    flush_rows: int = 50,
) -> BucketWriter:
    with BucketWriter(staging, BASE, side, writer_id, buckets, flush_rows=flush_rows) as writer:
        writer.write_rows(data)
    return writer


def compare_all(staging: Staging, buckets: int = BUCKETS) -> list[BucketResult]:
    return [compare_bucket(staging, BASE, b) for b in range(buckets)]


def hand_digest(pk: str, sk: str | None, canon: str) -> int:
    data = f"{pk}\0{sk or ''}\0{canon}".encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=16).digest(), "little")


# --- bucket_of --------------------------------------------------------------------------


def test_bucket_of_is_blake2b_of_the_key_text() -> None:
    digest = hashlib.blake2b(b"USER#42\x00ORDER#7", digest_size=8).digest()
    assert bucket_of("USER#42", "ORDER#7", 1024) == int.from_bytes(digest, "big") % 1024
    # pinned, so a change of encoding or hash (which would re-bucket stored runs) shows
    assert bucket_of("USER#42", "ORDER#7", 1024) == 958
    assert bucket_of("USER#42", "ORDER#7", 7) == 5
    assert bucket_of("USER#42", None, 1024) == bucket_of("USER#42", "", 1024) == 524
    assert bucket_of("anything", "at all", 1) == 0


def test_buckets_of_equals_bucket_of_on_many_keys() -> None:
    rng = random.Random(7)
    prefixes = ["USER", "ÖRDER", "a\0b"]
    pks = [f"{rng.choice(prefixes)}#{rng.randrange(10**9)}" for _ in range(3000)]
    sks: list[str | None] = [rng.choice([None, "", f"SK#{rng.random()}", "日本"]) for _ in pks]
    for count in (1, 7, 64, 1024):
        expected = [bucket_of(pk, sk, count) for pk, sk in zip(pks, sks, strict=True)]
        assert len(set(expected)) > 0.9 * count  # the keys do spread
        assert buckets_of(pks, sks, count).to_pylist() == expected
        chunked = pa.chunked_array([pks[:1000], pks[1000:]], pa.large_string())
        assert buckets_of(chunked, pa.array(sks), count).to_pylist() == expected
    assert buckets_of(pks, None, 64).to_pylist() == [bucket_of(pk, None, 64) for pk in pks]


def test_bucket_counts_are_checked() -> None:
    with pytest.raises(ValueError):
        bucket_of("a", "b", 0)
    with pytest.raises(ValueError):
        buckets_of(["a", None], ["b", "c"], 8)


@pytest.mark.parametrize(
    ("count", "target", "maximum", "wanted"),
    [
        (0, 200_000, 1024, 1),
        (200_000, 200_000, 1024, 1),
        (200_001, 200_000, 1024, 2),
        (10**9, 200_000, 1024, 1024),
        (1_000, 100, 1024, 10),
        (1_000, 100, 4, 4),
    ],
)
def test_choose_buckets(count: int, target: int, maximum: int, wanted: int) -> None:
    assert choose_buckets(count, target, maximum) == wanted


def test_choose_buckets_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        choose_buckets(10, 0)
    with pytest.raises(ValueError):
        choose_buckets(-1)


# --- signature --------------------------------------------------------------------------


def test_signature_is_the_count_and_two_sums_of_row_hashes() -> None:
    """Each row's two hashes asked of DuckDB one row at a time, summed here in Python."""
    import duckdb

    data = rows(50)
    con = duckdb.connect()
    first = second = 0
    for pk, sk, canon in data:
        text = f"{pk}\0{sk or ''}\0{canon}"
        ((a, b),) = con.execute("SELECT hash(?), hash(? || chr(1))", [text, text]).fetchall()
        first, second = (first + a) % 2**64, (second + b) % 2**64
    assert signature(data) == f"50:{(first << 64) | second:032x}"
    assert signature([]) == f"0:{0:032x}"


def test_signature_ignores_order_and_input_shape() -> None:
    data = rows(300)
    shuffled = data[:]
    random.Random(3).shuffle(shuffled)
    assert signature(data) == signature(shuffled) == signature(as_table(shuffled))


def test_signature_changes_with_any_corruption() -> None:
    data = rows(100)
    base = signature(data)
    changed = [*data[:10], item(10, qty="11"), *data[11:]]
    variants = {
        "changed attribute": changed,
        "missing": data[1:],
        "extra": [*data, item(999)],
        "duplicate": [*data, data[5]],
    }
    signatures = {name: signature(v) for name, v in variants.items()}
    assert base not in signatures.values()
    assert len(set(signatures.values())) == len(variants)


def test_signature_counts_duplicates_where_xor_would_cancel_them() -> None:
    a, b, c = item(1), item(2), item(3)
    # XOR plus count signs {a, b, b} and {a, c, c} alike: both are (3, digest(a))
    assert signature([a, b, b]) != signature([a, c, c])
    assert signature([a, b, b]) != signature([a])


def test_signature_treats_canonically_equal_items_as_equal() -> None:
    one = {"PK": {"S": "U#1"}, "n": {"N": "1.50"}, "s": {"SS": ["y", "x"]}, "m": {"M": {}}}
    two = {"m": {"M": {}}, "s": {"SS": ["x", "y"]}, "n": {"N": "1.5"}, "PK": {"S": "U#1"}}
    assert signature([("U#1", None, canonical_item(one))]) == signature(
        [("U#1", None, canonical_item(two))]
    )


# --- writing ----------------------------------------------------------------------------


def test_writers_in_different_chunks_and_orders_give_equal_buckets(staging: Staging) -> None:
    data = rows(600)
    write(staging, "expected", data[:250], "task-a", flush_rows=17)
    write(staging, "expected", data[250:], "task-b", flush_rows=1000)
    backwards = data[::-1]
    with BucketWriter(staging, BASE, "actual", "scan-0", BUCKETS, flush_rows=64) as writer:
        writer.write_table(as_table(backwards[:300]))
        for row in backwards[300:]:
            writer.write(*row)
    results = compare_all(staging)
    assert all(r.equal and not r.items_compared for r in results)
    assert sum(r.expected for r in results) == sum(r.actual for r in results) == 600
    for r in results:
        in_bucket = [row for row in data if bucket_of(row[0], row[1], BUCKETS) == r.bucket]
        assert r.expected == r.actual == len(in_bucket)
        assert r.expected_signature == signature(in_bucket)
        assert r.buckets == BUCKETS
    files = staging.files(BASE, "expected")
    assert "bucket=0/part-task-a.parquet" in files and "bucket=0/part-task-b.parquet" in files


def test_writer_holds_at_most_flush_rows(staging: Staging) -> None:
    data = rows(5000)
    table = as_table(data[:3000])
    with BucketWriter(staging, BASE, "expected", "w", BUCKETS, flush_rows=256) as writer:
        writer.write_table(table)
        writer.write_rows(data[3000:4000])
        for row in data[4000:]:
            writer.write(*row)
            assert writer.held_rows <= 256
    assert writer.peak_rows == 256
    assert writer.held_rows == 0
    assert writer.rows_written == 5000
    assert writer.flushes == -(-5000 // 256)
    for rel in staging.files(BASE, "expected"):
        meta = pq.ParquetFile(staging.path(BASE, "expected", rel)).metadata
        assert all(meta.row_group(g).num_rows <= 256 for g in range(meta.num_row_groups))


def test_writer_counter_counts_what_it_holds(staging: Staging) -> None:
    # with a flush size above the data, the counter must see every row held at once
    writer = write(staging, "expected", rows(700), flush_rows=10_000)
    assert writer.peak_rows == 700 and writer.flushes == 1


def test_retried_writer_replaces_its_own_files_only(staging: Staging) -> None:
    data = rows(400)
    write(staging, "expected", data, "task-a")
    write(staging, "expected", data[:3], "task-b")
    retry = [row for row in data if bucket_of(row[0], row[1], BUCKETS) == 0]
    write(staging, "expected", retry, "task-a")
    files = staging.files(BASE, "expected")
    assert {f for f in files if "task-a" in f} == {"bucket=0/part-task-a.parquet"}
    assert any("task-b" in f for f in files)
    result = compare_bucket(staging, BASE, 0)
    extra_b = [r for r in data[:3] if bucket_of(r[0], r[1], BUCKETS) == 0]
    assert result.expected == len(retry) + len(extra_b)


def test_aborted_writer_publishes_nothing(staging: Staging, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    with (
        pytest.raises(RuntimeError),
        BucketWriter(
            staging, BASE, "actual", "w", BUCKETS, flush_rows=10, spool_dir=spool
        ) as writer,
    ):
        writer.write_rows(rows(100))
        assert list(spool.iterdir())  # flushed rows wait in the local spool
        raise RuntimeError("task failed")
    assert staging.files(BASE) == {}
    assert list(spool.iterdir()) == []


def test_closed_writer_leaves_no_spool(staging: Staging, tmp_path: Path) -> None:
    with BucketWriter(
        staging, BASE, "actual", "w", BUCKETS, flush_rows=10, spool_dir=tmp_path
    ) as w:
        w.write_rows(rows(100))
    assert [p.name for p in tmp_path.iterdir()] == ["staging"]
    assert sum(compare_bucket(staging, BASE, b).actual for b in range(BUCKETS)) == 100


def test_writer_rejects_bad_ids_and_sides(staging: Staging) -> None:
    with pytest.raises(ValueError):
        BucketWriter(staging, BASE, "expected", "../x", BUCKETS)
    with pytest.raises(ValueError):
        BucketWriter(staging, BASE, "dynamo", "w", BUCKETS)


# --- comparing --------------------------------------------------------------------------


def corrupt(data: list[Row], kind: str) -> tuple[list[Row], list[Row], Row]:
    """Expected rows, actual rows, and the row whose key is corrupted."""
    target = data[123]
    at = data.index(target)
    if kind == "mismatch":
        return data, [*data[:at], item(123, qty="-1"), *data[at + 1 :]], target
    if kind == "missing":
        return data, [*data[:at], *data[at + 1 :]], target
    if kind == "extra":
        target = item(5000)
        return data, [*data, target], target
    return data, [*data, target], target  # duplicate


@pytest.mark.parametrize("kind", ["mismatch", "missing", "extra", "duplicate"])
def test_compare_bucket_names_the_planted_corruption(staging: Staging, kind: str) -> None:
    expected, actual, target = corrupt(rows(400), kind)
    write(staging, "expected", expected, "e")
    write(staging, "actual", actual, "a")
    bad = bucket_of(target[0], target[1], BUCKETS)
    results = compare_all(staging)
    assert [r.bucket for r in results if not r.equal] == [bad]
    result = results[bad]
    assert result.items_compared
    assert len(result.differences) == 1
    (diff,) = result.differences
    assert (diff["kind"], diff["PK"], diff["SK"]) == (kind, target[0], target[1])
    counts = {
        "mismatch": result.mismatched,
        "missing": result.missing,
        "extra": result.extra,
        "duplicate": result.duplicates,
    }
    assert counts == {k: int(k == kind) for k in counts}
    assert result.actual - result.expected == {"missing": -1, "extra": 1, "duplicate": 1}.get(
        kind, 0
    )
    if kind == "mismatch":
        assert diff["attributes"] == [
            {"attribute": "qty", "kind": "value", "expected": {"N": "123"}, "actual": {"N": "-1"}}
        ]
    if kind == "duplicate":
        assert (diff["expected_copies"], diff["actual_copies"]) == (1, 2)


def test_equal_buckets_do_no_item_level_work(
    staging: Staging, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected, actual, target = corrupt(rows(400), "mismatch")
    write(staging, "expected", expected, "e")
    write(staging, "actual", actual, "a")
    calls: list[int] = []

    def refuse(result: BucketResult, *_: Any) -> None:
        calls.append(result.bucket)
        raise AssertionError("item-level comparison of an equal bucket")

    monkeypatch.setattr(buckets, "_compare_items", refuse)
    bad = bucket_of(target[0], target[1], BUCKETS)
    for b in range(BUCKETS):
        if b != bad:
            result = compare_bucket(staging, BASE, b)
            assert result.equal and not result.items_compared and result.expected > 0
    assert calls == []
    # the patch is the function compare_bucket uses: the differing bucket reaches it
    with pytest.raises(AssertionError):
        compare_bucket(staging, BASE, bad)
    assert calls == [bad]


def test_differences_are_capped_but_counted_in_full(staging: Staging) -> None:
    data = rows(400)
    write(staging, "expected", data, "e")
    write(staging, "actual", data[:1], "a")
    results = [compare_bucket(staging, BASE, b, max_keys=2) for b in range(BUCKETS)]
    assert sum(r.missing for r in results) == 399
    assert all(len(r.differences) <= 2 for r in results)
    assert all(d["kind"] == "missing" for r in results for d in r.differences)


def test_a_bucket_missing_on_one_side_is_all_extra(staging: Staging) -> None:
    data = rows(400)
    write(staging, "actual", data, "a")
    result = compare_bucket(staging, BASE, 3)
    in_bucket = [r for r in data if bucket_of(r[0], r[1], BUCKETS) == 3]
    assert (result.expected, result.actual, result.extra) == (0, len(in_bucket), len(in_bucket))
    assert result.to_dict()["equal"] is False


def test_sides_bucketed_differently_are_refused(staging: Staging) -> None:
    data = rows(200)
    write(staging, "expected", data, "e", buckets=8)
    write(staging, "actual", data, "a", buckets=16)
    with pytest.raises(TerminalError, match="different bucket counts"):
        compare_bucket(staging, BASE, 0)


@pytest.mark.parametrize(
    ("buckets", "limit"), [((7, 12), 10), ((7, 12), 19), ((1, 1024, 1024), 1024), ((5,), 1)]
)
def test_bucket_groups_cover_every_bucket_once_under_the_map_limit(
    buckets: tuple[int, ...], limit: int
) -> None:
    from cutover.validate.distributed import bucket_work

    sides = [{"table": f"T{n}", "base": f"b/T{n}", "buckets": b} for n, b in enumerate(buckets)]
    work = bucket_work(sides, max_tasks=limit)
    assert len(work) <= limit
    seen = sorted((w["table"], b) for w in work for b in w["buckets"])
    assert seen == sorted((f"T{n}", b) for n, count in enumerate(buckets) for b in range(count))
    assert all(w["base"] == f"b/{w['table']}" and w["buckets"] for w in work)
    if sum(buckets) <= limit:
        assert all(len(w["buckets"]) == 1 for w in work)


def test_more_tables_than_mapped_tasks_is_a_clear_error() -> None:
    from cutover.errors import ConfigError
    from cutover.validate.distributed import bucket_work

    sides = [{"table": f"T{n}", "base": "b", "buckets": 1} for n in range(3)]
    with pytest.raises(ConfigError, match="max_map_length"):
        bucket_work(sides, max_tasks=2)
