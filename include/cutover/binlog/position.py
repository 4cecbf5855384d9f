"""A binlog position: the file and end offset of a transaction's commit event, and its GTID.

The item version the sync writes is the position's ordinal, ``file number << 32 | offset``:
the binlog's own order, which is MySQL's commit order. A server's binlog files are numbered
in sequence (``binlog.000042``), and an offset fits in 32 bits (``max_binlog_size`` is at
most 1 GiB), so ordinals of one server compare as positions do."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from cutover.db import query
from cutover.errors import ServiceError

_NUMBER = re.compile(r"\.(\d+)$")


@dataclass(frozen=True)
class Position:
    file: str
    offset: int
    gtid: str | None = None  # MariaDB: the GTID state to resume after (``0-1-42``)

    @property
    def ordinal(self) -> int:
        return ordinal(self.file, self.offset)

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "offset": self.offset, "gtid": self.gtid}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Position:
        return cls(str(data["file"]), int(data["offset"]), data.get("gtid") or None)

    def __str__(self) -> str:
        where = f"{self.file}:{self.offset}"
        return f"{where} (GTID {self.gtid})" if self.gtid else where


def file_number(name: str) -> int:
    m = _NUMBER.search(name)
    if m is None:
        raise ServiceError(f"binlog file name {name!r} has no sequence number")
    return int(m.group(1))


def ordinal(file: str, offset: int) -> int:
    return (file_number(file) << 32) | offset


def is_mariadb(conn: Any) -> bool:
    return "mariadb" in str(query(conn, "SELECT VERSION()")[0][0]).lower()


def gtid_seq(gtid: str | None, domain: str) -> int | None:
    """The sequence number of ``domain`` in a MariaDB GTID or GTID state (``0-1-42``)."""
    for part in (gtid or "").split(","):
        fields = part.strip().split("-")
        if len(fields) == 3 and fields[0] == domain and fields[2].isdigit():
            return int(fields[2])
    return None


class NoBinlog(ServiceError):
    """The server writes no binlog (``log_bin`` off)."""


def current_position(conn: Any) -> Position:
    """Where the server's binlog ends now (what ``sync --once`` stops at and what a backfill
    records before its snapshot)."""
    rows = query(conn, "SHOW MASTER STATUS")
    if not rows:
        raise NoBinlog(
            "the MySQL server has no binlog (SHOW MASTER STATUS is empty): turn on log_bin; "
            "`cutover sync --check CONTRACT` lists every setting the sync needs"
        )
    file, offset = str(rows[0][0]), int(rows[0][1])
    gtid = None
    if is_mariadb(conn):
        gtid = str(query(conn, "SELECT @@GLOBAL.gtid_binlog_pos")[0][0] or "") or None
    return Position(file, offset, gtid)


def binlog_sizes(conn: Any) -> list[tuple[str, int]]:
    return [(str(name), int(size)) for name, size, *_ in query(conn, "SHOW BINARY LOGS")]


def bytes_between(sizes: list[tuple[str, int]], start: Position, end: Position) -> int:
    """Bytes of binlog from ``start`` to ``end`` (0 when ``start`` is at or past it)."""
    if start.ordinal >= end.ordinal:
        return 0
    if start.file == end.file:
        return end.offset - start.offset
    first, last = file_number(start.file), file_number(end.file)
    total = 0
    for name, size in sizes:
        n = file_number(name)
        if n == first:
            total += max(size - start.offset, 0)
        elif first < n < last:
            total += size
        elif n == last:
            total += end.offset
    return total
