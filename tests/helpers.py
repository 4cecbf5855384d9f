"""Small lookups and fixtures several tests share."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cutover.db import connect, query
from cutover.settings import Settings

# `rated`: one table whose rows make items of about 1.2 KB (2 WCUs) with a KEYS_ONLY GSI (1
# WCU), on a provisioned table of 3200 WCU: at a share of 0.25 the table takes
# 0.25 x 3200 / 2 = 400 items/s, the GSI 0.25 x 3200 / 1 = 800, so the run 400 items/s.
RATED_NAME_BYTES = 1_200
RATED_CONTRACT: dict[str, Any] = {
    "cutover": {"name": "rated"},
    "tables": [
        {
            "table": "Rated",
            "type": "single-entity",
            "source_table": "rated",
            "pk": "code",
            "gsis": [{"index_name": "by_shelf", "pk": "shelf", "projection": "KEYS_ONLY"}],
            "attributes": [
                {"name": name, "type": kind, "source_table": "rated", "source_column": name}
                for name, kind in (("code", "S"), ("id", "N"), ("shelf", "S"), ("name", "S"))
            ],
            "cutover": {"billing_mode": "PROVISIONED", "write_capacity": 3200},
        }
    ],
}


def create_rated(settings: Settings, rows: int) -> None:
    """The source table of RATED_CONTRACT with ``rows`` rows, in ``settings``' database."""
    conn = connect(settings.mysql)
    try:
        query(conn, "CREATE TABLE rated (id INT PRIMARY KEY, code VARCHAR(20) NOT NULL, "
                    "shelf VARCHAR(8) NOT NULL, name VARCHAR(2000) NOT NULL)")  # fmt: skip
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO rated VALUES (%s, %s, %s, %s)",
                [(i, f"R{i:05d}", f"S{i % 7}", "n" * RATED_NAME_BYTES) for i in range(1, rows + 1)],
            )
        conn.commit()
    finally:
        conn.close()


def user_of_order(settings: Settings, order_id: int) -> int:
    conn = connect(settings.mysql)
    try:
        return int(query(conn, "SELECT user_id FROM orders WHERE id = %s", (order_id,))[0][0])
    finally:
        conn.close()


def sample_contract(folder: Path, stem: str) -> Any:
    """The sample contract under a name of its own (``<stem>_<6 hex>``), written to
    ``folder`` and loaded: a test's tables and reports never meet another's."""
    import json
    import uuid

    from cutover.contract.load import load_contract
    from cutover.settings import PROJECT_ROOT

    doc = json.loads((PROJECT_ROOT / "contracts" / "ecommerce.json").read_text())
    doc["cutover"]["name"] = f"{stem}_{uuid.uuid4().hex[:6]}"
    path = folder / "contract.json"
    path.write_text(json.dumps(doc))
    return load_contract(path)
