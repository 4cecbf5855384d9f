"""Small lookups several tests share."""

from __future__ import annotations

from cutover.db import connect, query
from cutover.settings import Settings


def user_of_order(settings: Settings, order_id: int) -> int:
    conn = connect(settings.mysql)
    try:
        return int(query(conn, "SELECT user_id FROM orders WHERE id = %s", (order_id,))[0][0])
    finally:
        conn.close()
