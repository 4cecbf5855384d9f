"""Changed-key parity on the cut-down sample: after a full validation, three users change in
MySQL and the sync carries them to DynamoDB; then one of the changed items and one unchanged
item are corrupted in DynamoDB. Changed-key parity names the changed one, reads only the
changed items (counted here on the DynamoDB client it is given, not taken from its report),
and the next check, with nothing changed since, reads nothing."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from tests.dynamo_tables import drop_tables
from tests.helpers import sample_contract
from tests.integration.test_storage_s3 import sample  # noqa: F401  (the cut-down sample)

from cutover.db import connect
from cutover.settings import Settings
from cutover.stages import phase_store, run_backfill, run_changed_keys, run_prepare, run_validate
from cutover.sync.runner import run_sync
from cutover.validate.changed_keys import changed_key_parity, since_last_check

pytestmark = [pytest.mark.integration, pytest.mark.mysql, pytest.mark.dynamodb]


class CountingClient:
    """The real DynamoDB client, counting the keys asked of BatchGetItem and every Scan."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.keys = 0
        self.scans = 0

    def batch_get_item(self, **kwargs: Any) -> Any:
        self.keys += sum(len(r["Keys"]) for r in kwargs["RequestItems"].values())
        return self._client.batch_get_item(**kwargs)

    def scan(self, **kwargs: Any) -> Any:
        self.scans += 1
        return self._client.scan(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


@pytest.fixture
def migrated(sample: Settings, ddb: Any, tmp_path: Path) -> Iterator[tuple[Any, Settings]]:  # noqa: F811
    contract = sample_contract(tmp_path, "changed")
    settings = replace(sample, table_prefix=f"{sample.table_prefix}{contract.name}_")
    run_prepare(contract, settings)
    run_backfill(contract, settings)
    yield contract, settings
    drop_tables(ddb, settings.table_prefix)


def test_a_corrupted_changed_item_is_named_and_only_changed_items_are_read(
    migrated: tuple[Any, Settings], ddb: Any
) -> None:
    contract, settings = migrated
    assert run_validate(contract, settings)["success"]
    users = settings.table_prefix + "Users"
    total = ddb.scan(TableName=users, Select="COUNT")["Count"]
    conn = connect(settings.mysql)
    with conn.cursor() as cur:
        cur.execute("SELECT id FROM users ORDER BY id LIMIT 5")
        ids = [row[0] for row in cur.fetchall()]
        for user in ids[:3]:
            cur.execute("UPDATE users SET username = %s WHERE id = %s", (f"renamed{user}", user))
    conn.commit()
    conn.close()
    run_sync(contract, settings, once=True)
    changed, unchanged = ids[1], ids[4]
    for user, value in ((changed, "corrupted"), (unchanged, "also corrupted")):
        key = {"PK": {"S": f"USER#{user}"}, "SK": {"S": "PROFILE"}}
        item = ddb.get_item(TableName=users, Key=key, ConsistentRead=True)["Item"]
        ddb.put_item(TableName=users, Item={**item, "username": {"S": value}})

    counting = CountingClient(ddb)
    since = since_last_check(phase_store(settings).evidence(contract.name))
    result = changed_key_parity(contract, settings, since, client=counting)
    found = [(d["table"], d["kind"], d["key"], [a["attribute"] for a in d["attributes"]])
             for d in result["differences"]]  # fmt: skip
    assert found == [("Users", "mismatch", {"PK": f"USER#{changed}", "SK": "PROFILE"},
                      ["username"])], result  # fmt: skip
    assert result["success"] is False
    # reads in proportion to the changes: a key per changed item, no Scan of the table
    assert counting.scans == 0
    assert 3 <= counting.keys <= 3 * len(contract.tables) < total, (counting.keys, total)

    recorded = run_changed_keys(contract, settings)  # the stage: evidence for the gates
    assert recorded["mismatched"] == 1
    evidence = phase_store(settings).evidence(contract.name)["changed_keys"]
    assert evidence["success"] is False and evidence["differences"] == 1
    assert evidence["validated_at"] is not None

    again = CountingClient(ddb)  # nothing changed since the last check: nothing read
    since = since_last_check(phase_store(settings).evidence(contract.name))
    quiet = changed_key_parity(contract, settings, since, client=again)
    assert quiet["rows_changed"] == 0 and again.keys == 0 and quiet["success"] is True
