"""The MySQL binlog as committed transactions of the contract's tables, through
``pymysqlreplication`` (row events, MariaDB and MySQL).

The reader owns its position. The library's own reconnect starts again from the position the
stream was first given, and a connection dropped under a large backlog makes it replay in a
loop; so the stream is built from the last commit this reader yielded, every commit moves the
stream's own resume point, a position that goes backwards is treated as a lost stream, and a
lost stream is rebuilt here (``Restarted`` tells the caller to drop the rows of the
transaction it was reading). Rows of a transaction come before its ``Commit``; the caller
buffers what it needs up to the commit event.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from cutover.binlog.position import Position, ordinal
from cutover.errors import ServiceError
from cutover.settings import MySQLSettings

log = logging.getLogger("cutover.sync")

RECONNECT_BACKOFF = (0.2, 0.5, 1.0, 2.0, 5.0)
MAX_RECONNECTS = 20  # in a row, without a commit between them


@dataclass(frozen=True)
class RowChange:
    table: str
    before: dict[str, Any] | None  # None for an insert
    after: dict[str, Any] | None  # None for a delete


@dataclass(frozen=True)
class Commit:
    position: Position
    committed_at: float  # unix seconds, the server's commit time


@dataclass(frozen=True)
class Idle:
    """Nothing new for a heartbeat's time: the caller may flush, check its clock or stop."""

    position: Position  # where the stream stands (past events of other schemas too)


@dataclass(frozen=True)
class Restarted:
    """The stream was rebuilt from the last commit: rows read since then come again."""

    reason: str


Event = RowChange | Commit | Idle | Restarted


def _server_id() -> int:
    """A replica server id of this reader's own: the server drops the older of two
    connections with one id, so a sync and a backfill's handoff (or two syncs) must not
    share one."""
    return 1_000_000 + secrets.randbelow(2**31 - 2_000_000)


def _gtid_state(gtid: str | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in (gtid or "").split(","):
        part = part.strip()
        if part:
            out[part.split("-", 1)[0]] = part
    return out


class BinlogReader:
    """Committed transactions after ``start``, rows of ``tables`` in database ``schema``."""

    def __init__(
        self,
        mysql: MySQLSettings,
        start: Position,
        *,
        schema: str,
        tables: set[str],
        mariadb: bool,
        heartbeat: float = 1.0,
        read_timeout: float = 30.0,
    ) -> None:
        self.mysql = mysql
        self.schema = schema
        self.tables = tables
        self.mariadb = mariadb
        self.heartbeat = heartbeat
        self.read_timeout = read_timeout
        self.committed = start  # the last commit yielded: where a rebuilt stream starts
        self._gtids = _gtid_state(start.gtid)
        self._stream: Any = None
        self._file = start.file
        self._pending_gtid: str | None = None
        self.reconnects = 0

    # --- the stream --------------------------------------------------------------------

    def _build(self) -> Any:
        from pymysqlreplication import BinLogStreamReader
        from pymysqlreplication.event import (
            GtidEvent,
            HeartbeatLogEvent,
            MariadbGtidEvent,
            QueryEvent,
            RotateEvent,
            XidEvent,
        )
        from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

        settings = {
            "host": self.mysql.host,
            "port": self.mysql.port,
            "user": self.mysql.user,
            "passwd": self.mysql.password,
            "charset": "utf8mb4",
            "read_timeout": self.read_timeout,
            "connect_timeout": 10,
        }
        position: dict[str, Any]
        if self.mariadb and self.committed.gtid:
            position = {"auto_position": self.committed.gtid}
        else:
            position = {"log_file": self.committed.file, "log_pos": self.committed.offset,
                        "resume_stream": True}  # fmt: skip
        events = [MariadbGtidEvent, GtidEvent, XidEvent, QueryEvent, RotateEvent,
                  HeartbeatLogEvent, WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent]  # fmt: skip
        return BinLogStreamReader(
            connection_settings=settings,
            server_id=_server_id(),
            blocking=True,
            slave_heartbeat=self.heartbeat,
            only_events=events,
            only_schemas=[self.schema],
            only_tables=sorted(self.tables),
            is_mariadb=self.mariadb,
            enable_logging=False,
            **position,
        )

    def close(self) -> None:
        if self._stream is not None:
            try:
                self._stream.close()
            except Exception:  # already broken
                log.debug("closing the binlog stream failed", exc_info=True)
            self._stream = None

    # --- events ------------------------------------------------------------------------

    def events(self) -> Iterator[Event]:
        """Forever (the caller stops iterating); a lost stream is rebuilt from the last
        commit, with backoff, and ``ServiceError`` after ``MAX_RECONNECTS`` in a row."""
        failures = 0
        while True:
            try:
                if self._stream is None:
                    self._stream = self._build()
                    self._file = self.committed.file
                for event in self._translate(self._stream):
                    if isinstance(event, Commit):
                        failures = 0
                    yield event
            except GeneratorExit:
                self.close()
                raise
            except Exception as exc:
                self.close()
                failures += 1
                self.reconnects += 1
                if failures > MAX_RECONNECTS:
                    raise ServiceError(
                        f"the binlog stream of {self.mysql.url} failed {failures} times in a "
                        f"row from {self.committed}: {exc}"
                    ) from None
                log.warning("binlog stream lost at %s (%s); rebuilding it", self.committed, exc)
                time.sleep(RECONNECT_BACKOFF[min(failures, len(RECONNECT_BACKOFF)) - 1])
                yield Restarted(str(exc))

    def _translate(self, stream: Any) -> Iterator[Event]:
        from pymysqlreplication.event import (
            GtidEvent,
            HeartbeatLogEvent,
            MariadbGtidEvent,
            QueryEvent,
            RotateEvent,
            XidEvent,
        )
        from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

        standalone = False
        for ev in stream:
            if isinstance(ev, RotateEvent):
                self._file = ev.next_binlog
                continue
            end = int(getattr(ev.packet, "log_pos", 0) or 0)
            if isinstance(ev, HeartbeatLogEvent):
                yield Idle(Position(self._file, end or self.committed.offset, self.committed.gtid))
                continue
            if (
                end
                and ordinal(self._file, end) <= self.committed.ordinal
                and not isinstance(ev, MariadbGtidEvent | GtidEvent)
            ):
                # the library reconnected on its own, from the position it was first given
                raise ServiceError(f"the binlog stream went back to {self._file}:{end}")
            if isinstance(ev, MariadbGtidEvent):
                self._pending_gtid = ev.gtid
                standalone = bool(ev.flags & 1)  # FL_STANDALONE: no COMMIT/XID follows
                continue
            if isinstance(ev, GtidEvent):
                continue
            if isinstance(ev, WriteRowsEvent):
                for row in ev.rows:
                    yield RowChange(ev.table, None, dict(row["values"]))
            elif isinstance(ev, UpdateRowsEvent):
                for row in ev.rows:
                    yield RowChange(ev.table, dict(row["before_values"]), dict(row["after_values"]))
            elif isinstance(ev, DeleteRowsEvent):
                for row in ev.rows:
                    yield RowChange(ev.table, dict(row["values"]), None)
            elif isinstance(ev, XidEvent) or (
                isinstance(ev, QueryEvent) and (standalone or _is_commit(ev.query))
            ):
                standalone = False
                yield self._commit(end, float(ev.timestamp))

    def _commit(self, end: int, committed_at: float) -> Commit:
        if self._pending_gtid:
            self._gtids[self._pending_gtid.split("-", 1)[0]] = self._pending_gtid
            self._pending_gtid = None
        gtid = ",".join(self._gtids[d] for d in sorted(self._gtids, key=int)) or None
        self.committed = Position(self._file, end, gtid)
        if self._stream is not None and gtid and self.mariadb:
            self._stream.auto_position = gtid  # the library's own reconnect starts here
        return Commit(self.committed, committed_at)


def _is_commit(sql: Any) -> bool:
    text = sql.decode(errors="replace") if isinstance(sql, bytes) else str(sql)
    return text.strip().upper() in ("COMMIT", "XA COMMIT")
