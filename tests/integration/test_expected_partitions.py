"""MySQL's side of a validation derived by partition in worker processes: every row of the
view exactly once across the partitions, rejections of every partition counted, and a
partition that cannot be read failing the whole side with an error naming the view and the
partition, across the process boundary."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pyarrow.parquet as pq
import pytest

from cutover.contract.load import parse_contract
from cutover.contract.model import Contract
from cutover.contract.views import view_name
from cutover.db import connect, query
from cutover.errors import ExtractFailed
from cutover.prepare.views import apply_views
from cutover.settings import Settings
from cutover.validate.expected import expected_items

pytestmark = [pytest.mark.integration, pytest.mark.mysql]

ROWS = 40
EMPTY_NAMES = (3, 37)  # a GSI key may not be empty: one rejection near each end


def _contract() -> Contract:
    def attr(name: str, type_: str, column: str) -> dict[str, Any]:
        return {"name": name, "type": type_, "source_table": "things", "source_column": column}

    return parse_contract(
        {
            "cutover": {"name": "parts"},
            "tables": [
                {
                    "table": "Things",
                    "type": "single-entity",
                    "source_table": "things",
                    "pk": "thing_id",
                    "gsis": [{"index_name": "ByName", "pk": "name"}],
                    "attributes": [
                        attr("thing_id", "N", "id"),
                        attr("name", "S", "name"),
                        attr("price", "N", "price"),
                    ],
                    "cutover": {"partition_column": "id", "partitions": 3},
                }
            ],
        },
        "parts",
    )


@pytest.fixture
def things(scratch_db: Settings, monkeypatch: pytest.MonkeyPatch) -> tuple[Contract, Settings]:
    monkeypatch.setenv("CUTOVER_VALIDATE_PROCESSES", "2")
    contract = _contract()
    conn = connect(scratch_db.mysql)
    try:
        query(conn, "CREATE TABLE things (id INT PRIMARY KEY, name VARCHAR(20), "
                    "price DECIMAL(10, 2))")  # fmt: skip
        for n in range(1, ROWS + 1):
            name = "" if n in EMPTY_NAMES else f"thing {n}"
            query(conn, "INSERT INTO things VALUES (%s, %s, %s)", (n, name, f"{n}.50"))
        apply_views(conn, contract)
    finally:
        conn.close()
    return contract, scratch_db


def test_every_row_once_across_partitions(
    things: tuple[Contract, Settings], tmp_path: Path
) -> None:
    contract, settings = things
    rejected, rejected_pks = expected_items(contract, contract.tables[0], settings, tmp_path)
    files = sorted(tmp_path.glob("*.parquet"))
    assert len(files) == 3  # one per partition of the contract's three
    keys = [k for f in files for k in pq.read_table(f, columns=["pk"]).column("pk").to_pylist()]
    assert sorted(keys, key=int) == [str(n) for n in range(1, ROWS + 1) if n not in EMPTY_NAMES]
    assert rejected == {"empty_key": 2}
    assert sorted(rejected_pks["THINGS"]) == sorted(f'{{"id": {n}}}' for n in EMPTY_NAMES)


def test_a_partition_that_cannot_be_read_names_view_and_partition(
    things: tuple[Contract, Settings], tmp_path: Path
) -> None:
    contract, settings = things
    view = view_name(contract, contract.tables[0])
    conn = connect(settings.mysql)
    try:  # the view as it was, with a column of MySQL type NULL, which the reader cannot carry
        query(conn, f"RENAME TABLE `{view}` TO `{view}_was`")
        query(conn, f"CREATE VIEW `{view}` AS SELECT v.*, NULL AS broken FROM `{view}_was` v")
    finally:
        conn.close()
    with pytest.raises(ExtractFailed) as raised:
        expected_items(contract, contract.tables[0], settings, tmp_path)
    assert raised.value.view == view
    assert raised.value.partition is not None and raised.value.partition.startswith("Things.")
    assert f"`{view}`" in str(raised.value) and raised.value.partition in str(raised.value)


def test_a_worker_process_killed_leaves_its_partitions_to_this_process(
    things: tuple[Contract, Settings], tmp_path: Path
) -> None:
    """A worker of the pool is killed (SIGKILL, as the OOM killer would): the partitions it
    had not finished are derived in the test's process; every row still once, and the
    rejections counted once."""
    contract, settings = things
    view = view_name(contract, contract.tables[0])
    conn = connect(settings.mysql)
    try:  # a tenth of a second a row: the workers are still at it when one is killed
        query(conn, f"RENAME TABLE `{view}` TO `{view}_was`")
        query(conn, f"CREATE VIEW `{view}` AS SELECT v.*, SLEEP(0.1) AS slept FROM `{view}_was` v")
    finally:
        conn.close()
    me = psutil.Process()
    outcome: dict[str, Any] = {}

    def derive() -> None:
        try:
            outcome["result"] = expected_items(contract, contract.tables[0], settings, tmp_path)
        except BaseException as exc:  # reported to the test's thread
            outcome["error"] = exc

    thread = threading.Thread(target=derive)
    thread.start()
    deadline = time.monotonic() + 60
    workers: list[psutil.Process] = []
    while not workers and time.monotonic() < deadline and thread.is_alive():
        workers = [p for p in me.children() if "spawn_main" in " ".join(p.cmdline())]
        time.sleep(0.05)  # poll: until the pool's first worker process exists
    assert workers, "no worker process started"
    workers[0].kill()
    thread.join(120)
    assert not thread.is_alive() and "error" not in outcome, outcome
    rejected, rejected_pks = outcome["result"]
    files = sorted(tmp_path.glob("*.parquet"))
    keys = [k for f in files for k in pq.read_table(f, columns=["pk"]).column("pk").to_pylist()]
    assert sorted(keys, key=int) == [str(n) for n in range(1, ROWS + 1) if n not in EMPTY_NAMES]
    assert rejected == {"empty_key": 2}
    assert sorted(rejected_pks["THINGS"]) == sorted(f'{{"id": {n}}}' for n in EMPTY_NAMES)
