"""Removing a test's DynamoDB tables: every page of ListTables (one page holds 100 names,
and a shared DynamoDB Local holds more than that during a run)."""

from __future__ import annotations

from typing import Any


def table_names(client: Any) -> list[str]:
    pages = client.get_paginator("list_tables").paginate()
    return [name for page in pages for name in page["TableNames"]]


def drop_tables(client: Any, prefix: str) -> None:
    for name in table_names(client):
        if name.startswith(prefix):
            client.delete_table(TableName=name)
