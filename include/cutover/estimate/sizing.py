"""DynamoDB's item size rules and write costs, as ``cutover estimate`` uses them.

They are those of ``cutover.dynamo_item_size``, the one implementation the item builder and
the loader use as well (see its docstring for the rules); this module only names them for
the estimator.
"""

from __future__ import annotations

from collections.abc import Iterable

from cutover.dynamo_item_size import (
    KB,
    gsi_write_units,
    index_entry,
    item_size_bytes,
    number_size,
    value_size,
    write_units,
)

__all__ = [
    "KB",
    "gsi_write_units",
    "index_entry",
    "item_size_bytes",
    "mean",
    "number_size",
    "value_size",
    "write_units",
]


def mean(values: Iterable[float]) -> float:
    values = list(values)
    return float(sum(values) / len(values)) if values else 0.0
