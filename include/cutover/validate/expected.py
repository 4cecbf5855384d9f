"""The expected side of parity: the items MySQL should produce, computed from the views by
the transform stage, written to Parquet a batch at a time."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from cutover.contract.model import Contract, Table
from cutover.contract.views import view_name
from cutover.extract.stream import arrow_stream, view_query
from cutover.progress import Progress
from cutover.settings import Settings
from cutover.transform.items import Item, ItemBuilder
from cutover.validate.canonical import canonical_item
from cutover.validate.export import SIDE_SCHEMA


def expected_items(
    contract: Contract, table: Table, settings: Settings, out_file: Path
) -> tuple[Counter[str], dict[str, list[str]]]:
    """Writes the expected items of ``table``; returns the rows rejected by reason, and their
    source primary keys by entity (they are in the backfill's quarantine, not in DynamoDB)."""
    view = view_name(contract, table)
    sql = view_query(settings.mysql, view)
    builder = ItemBuilder(contract, table)
    rejected: Counter[str] = Counter()
    rejected_pks: dict[str, list[str]] = {}
    progress = Progress(f"expected {table.table}", None)
    done = 0
    out_file.parent.mkdir(parents=True, exist_ok=True)
    with pq.ParquetWriter(out_file, SIDE_SCHEMA) as writer:
        for batch in arrow_stream(settings.mysql, sql, 5_000, view=view):
            rows: dict[str, list[Any]] = {k: [] for k in SIDE_SCHEMA.names}
            for row in batch.to_pylist():
                result = builder.build(row)
                if not isinstance(result, Item):
                    rejected[result.reason] += 1
                    rejected_pks.setdefault(result.entity_type, []).append(result.source_pk)
                    continue
                rows["pk"].append(result.pk)
                rows["sk"].append(result.sk)
                rows["entity"].append(result.entity_type)
                rows["canon"].append(canonical_item(json.loads(result.body)))
                rows["source_pk"].append(result.source_pk)
            writer.write_table(pa.table(rows, schema=SIDE_SCHEMA))
            done += batch.num_rows
            progress.update(done)
    progress.done(done)
    return rejected, rejected_pks
