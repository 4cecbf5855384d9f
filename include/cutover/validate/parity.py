"""Parity of one table, computed like a checksum diff with DuckDB over the Parquet files of
both sides: bucket every key by hash, compare per-bucket counts and digests, and list exact
differences only inside buckets that differ. Memory stays bounded (DuckDB spills), so this
works for tables larger than RAM."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from cutover.validate.canonical import differences

BUCKETS = 4096
# Differences kept whole (key, both sides) beyond the report's ``max_keys``, for a recheck
# that reads them again (``cutover.validate.export_read``): a table with more than this many
# differences is broken beyond what re-reading near an export's instant explains.
KEEP_DIFFERING = 10_000


@dataclass
class EntityParity:
    entity: str
    expected: int = 0
    actual: int = 0
    missing: int = 0
    extra: int = 0
    mismatched: int = 0

    @property
    def matched(self) -> int:
        return self.expected - self.missing - self.mismatched

    @property
    def value_parity(self) -> float:
        return self.matched / self.expected if self.expected else 1.0


@dataclass
class TableParity:
    table: str
    entities: dict[str, EntityParity] = field(default_factory=dict)
    differences: list[dict[str, Any]] = field(default_factory=list)
    duplicate_keys_in_source: int = 0
    duplicate_source_pks: dict[str, list[str]] = field(default_factory=dict)
    buckets: int = BUCKETS
    differing_buckets: int = 0
    # (kind, entity, pk, sk, expected canon, actual canon) of the first KEEP_DIFFERING
    # differences; not in the report
    differing: list[tuple[str, str, str, str | None, str | None, str | None]] = field(
        default_factory=list, repr=False
    )

    def entity(self, name: str) -> EntityParity:
        return self.entities.setdefault(name, EntityParity(name))

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "entities": {
                k: {**asdict(v), "matched": v.matched, "value_parity": v.value_parity}
                for k, v in sorted(self.entities.items())
            },
            "duplicate_keys_in_source": self.duplicate_keys_in_source,
            "buckets": self.buckets,
            "differing_buckets": self.differing_buckets,
            "differences": self.differences,
        }


def difference(kind: str, entity: str, pk: str, sk: str | None, expected: str | None,
               actual: str | None) -> dict[str, Any]:  # fmt: skip
    """One difference as the report lists it (``kind``: missing, extra or mismatch)."""
    return {
        "kind": kind,
        "entity": entity,
        "PK": pk,
        "SK": sk,
        "attributes": differences(expected, actual) if kind == "mismatch" else [],
        "expected": expected,
        "actual": actual,
    }


def _key(side: str, sample: float | None) -> str:
    where = f"WHERE hash(k) % 10000 < {int(sample * 10000)}" if sample else ""
    return (
        f"SELECT *, hash(k) % {BUCKETS} AS b FROM (SELECT pk, sk, entity, canon, source_pk, "
        f"pk || chr(0) || coalesce(sk, '') AS k FROM {side}) {where}"
    )


def compare_table(
    table: str,
    expected_dir: Path,
    actual_dir: Path,
    *,
    sample: float | None = None,
    max_keys: int = 50,
    memory_limit: str = "256MB",
) -> TableParity:
    result = TableParity(table)
    db = duckdb.connect()
    try:
        db.execute(f"SET memory_limit = '{memory_limit}'")
        db.execute("SET threads = 2")
        db.execute("SET preserve_insertion_order = false")
        db.execute(f"CREATE VIEW e_raw AS {_key(_parquet(expected_dir / '*.parquet'), sample)}")
        # duplicates are found over every key, sampled or not: the independent checks
        # exclude their source rows from the whole base tables
        db.execute(f"CREATE VIEW e_all AS {_key(_parquet(expected_dir / '*.parquet'), None)}")
        db.execute(f"CREATE VIEW a AS {_key(_parquet(actual_dir / '*.parquet'), sample)}")
        # a key two source rows produce is quarantined by the backfill, never expected
        db.execute("CREATE TEMP TABLE dup AS SELECT k FROM e_all GROUP BY k HAVING count(*) > 1")
        result.duplicate_keys_in_source = db.execute("SELECT count(*) FROM dup").fetchone()[0]
        for entity, source_pk in db.execute(
            "SELECT entity, source_pk FROM e_all WHERE k IN (SELECT k FROM dup)"
        ).fetchall():
            result.duplicate_source_pks.setdefault(entity, []).append(source_pk)
        db.execute("CREATE VIEW e AS SELECT * FROM e_raw WHERE k NOT IN (SELECT k FROM dup)")
        for side, column in (("e", "expected"), ("a", "actual")):
            for entity, count in db.execute(
                f"SELECT entity, count(*) FROM {side} GROUP BY entity"
            ).fetchall():
                setattr(result.entity(entity), column, count)
        db.execute(
            "CREATE TEMP TABLE diff_buckets AS "
            "WITH eb AS (SELECT b, count(*) n, bit_xor(hash(k || chr(1) || canon)) d FROM e "
            "GROUP BY b), ab AS (SELECT b, count(*) n, bit_xor(hash(k || chr(1) || canon)) d "
            "FROM a GROUP BY b) SELECT coalesce(eb.b, ab.b) AS b FROM eb FULL JOIN ab "
            "ON eb.b = ab.b WHERE eb.n IS DISTINCT FROM ab.n OR eb.d IS DISTINCT FROM ab.d"
        )
        result.differing_buckets = db.execute("SELECT count(*) FROM diff_buckets").fetchone()[0]
        cursor = db.execute(
            "SELECT e.pk, e.sk, a.pk, a.sk, e.entity, a.entity, e.canon, a.canon "
            "FROM (SELECT * FROM e WHERE b IN (SELECT b FROM diff_buckets)) e "
            "FULL JOIN (SELECT * FROM a WHERE b IN (SELECT b FROM diff_buckets)) a "
            "ON e.k = a.k WHERE e.canon IS DISTINCT FROM a.canon ORDER BY coalesce(e.k, a.k)"
        )
        while rows := cursor.fetchmany(10_000):
            for epk, esk, apk, ask, eent, aent, ecanon, acanon in rows:
                kind = "extra" if epk is None else "missing" if apk is None else "mismatch"
                entity = eent or aent
                if len(result.differing) < KEEP_DIFFERING:
                    pk, sk = (epk, esk) if epk is not None else (apk, ask)
                    result.differing.append((kind, entity, pk, sk, ecanon, acanon))
                stats = result.entity(entity)
                if kind == "extra":
                    stats.extra += 1
                elif kind == "missing":
                    stats.missing += 1
                else:
                    stats.mismatched += 1
                if len(result.differences) < max_keys:
                    pk, sk = (epk, esk) if epk is not None else (apk, ask)
                    result.differences.append(difference(kind, entity, pk, sk, ecanon, acanon))
    finally:
        db.close()
    return result


def _parquet(path: Path) -> str:
    return "read_parquet('" + str(path).replace("'", "''") + "')"
