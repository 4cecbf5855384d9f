"""Fenced phase changes (DESIGN.md, "Migration phases"): each phase has an epoch, the
version of the contract's PHASE item, and every write through cutover carries the epoch it
was routed under.

* In MySQL a writer reads its contract's row of ``cutover_fence`` with a shared lock inside
  its own transaction (``mysql_fence``) and gives up (``EpochMoved``) when the row is closed
  or at a later epoch. Closing the row (``close_mysql``) waits for every transaction holding
  that lock, so once it returns no MySQL writer of the old epoch can commit.
* In DynamoDB a writer's TransactWriteItems carries a ``ConditionCheck`` on the PHASE item
  (``dynamo_condition``): the version it routed under, and no move in progress.

``fenced_move`` changes a phase: it bumps the epoch with the move in progress
(``PhaseStore.begin_move``: DynamoDB writers of the old epoch fail from then on), closes the
MySQL row at the new epoch, waits until the follower store has caught up (``catch_up``),
then writes the new phase (``finish_move``, another epoch) and opens the MySQL row at it.
A writer that meets a moved epoch re-reads the phase (``PhaseClient.wait_open``) and retries:
a pause, not an error.

Follower writes (the binlog sync into DynamoDB, the outbox replay into MySQL) do not check
the fence: they are what ``catch_up`` waits for.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from contextlib import suppress
from typing import Any

import MySQLdb

from cutover.db import quote_ident
from cutover.errors import ServiceError, TerminalError, TransientError
from cutover.phases.model import Phase
from cutover.phases.store import ConcurrentChange, PhaseState, PhaseStore
from cutover.prepare.control_table import CONTROL_TABLE

log = logging.getLogger("cutover.phases")

FENCE_TABLE = "cutover_fence"

# MySQL client errors that mean the server is not there (as opposed to a refused statement)
_UNREACHABLE = {2002, 2003, 2005, 2006, 2013, 2055}
_LOCK_WAIT_TIMEOUT = 1205
_NO_SUCH_TABLE = 1146

_T = quote_ident(FENCE_TABLE)
_CONTRACT, _EPOCH, _OPEN = quote_ident("contract"), quote_ident("epoch"), quote_ident("open")


class EpochMoved(TransientError):
    """The phase changed under a write; re-read it and retry."""


class MoveAborted(TerminalError):
    """A fenced move gave up before the new phase opened; the phase did not change."""


def ensure_fence(cur: Any, contract: str, epoch: int) -> None:
    """Create the fence table if missing and the contract's row (open, at ``epoch``) if it
    has none. DDL commits: call it outside a transaction of the caller's."""
    cur.execute(
        f"CREATE TABLE IF NOT EXISTS {_T} ({_CONTRACT} VARCHAR(191) NOT NULL PRIMARY KEY, "
        f"{_EPOCH} BIGINT NOT NULL, {_OPEN} TINYINT NOT NULL) ENGINE=InnoDB"
    )
    cur.execute(
        f"INSERT IGNORE INTO {_T} ({_CONTRACT}, {_EPOCH}, {_OPEN}) VALUES (%s, %s, 1)",
        (contract, epoch),
    )


def mysql_fence(cur: Any, contract: str, epoch: int) -> None:
    """Inside the writer's open transaction: hold the contract's fence row shared until the
    transaction ends, and raise ``EpochMoved`` when a move is in progress (the row is closed)
    or the phase moved past ``epoch``. No row (or no table) passes: the layer creates it when
    it starts. An epoch below the writer's passes too: a bare ``PhaseStore.move`` does not
    update the row."""
    try:
        # LOCK IN SHARE MODE, not FOR SHARE: MariaDB (10.x) knows only the former, MySQL both
        cur.execute(
            f"SELECT {_EPOCH}, {_OPEN} FROM {_T} WHERE {_CONTRACT} = %s LOCK IN SHARE MODE",
            (contract,),
        )
    except MySQLdb.ProgrammingError as exc:
        if exc.args and exc.args[0] == _NO_SUCH_TABLE:
            return
        raise
    row = cur.fetchone()
    if row is None:
        return
    fenced_epoch, is_open = int(row[0]), bool(row[1])
    if not is_open:
        raise EpochMoved(
            f"contract {contract!r} is changing phase (epoch {fenced_epoch}): the write was not "
            "made; re-read the phase and retry"
        )
    if fenced_epoch > epoch:
        raise EpochMoved(
            f"contract {contract!r} moved from epoch {epoch} to {fenced_epoch} under the write: "
            "it was not made; re-read the phase and retry"
        )


def _set_row(
    conn_or_cursor: Any, contract: str, epoch: int, is_open: bool, lock_wait: float | None
) -> None:
    conn = conn_or_cursor if hasattr(conn_or_cursor, "cursor") else conn_or_cursor.connection
    with conn.cursor() as cur:
        if lock_wait is not None:
            cur.execute(
                "SET SESSION innodb_lock_wait_timeout = %s", (max(1, math.ceil(lock_wait)),)
            )
        # an upsert, so that a row ensure_fence has not made yet is made closed, not skipped
        cur.execute(
            f"INSERT INTO {_T} ({_CONTRACT}, {_EPOCH}, {_OPEN}) VALUES (%s, %s, %s) "
            f"ON DUPLICATE KEY UPDATE {_EPOCH} = %s, {_OPEN} = %s",
            (contract, epoch, int(is_open), epoch, int(is_open)),
        )
    conn.commit()


def close_mysql(
    conn_or_cursor: Any, contract: str, epoch: int, *, lock_wait_seconds: float | None = None
) -> None:
    """Close the contract's fence row at ``epoch``, committed on its own (the connection must
    not be in a transaction). It waits for every writer holding the row shared: once it
    returns, no MySQL writer of an earlier epoch can commit. ``lock_wait_seconds`` bounds that
    wait (else the server's ``innodb_lock_wait_timeout``)."""
    _set_row(conn_or_cursor, contract, epoch, False, lock_wait_seconds)


def open_mysql(
    conn_or_cursor: Any, contract: str, epoch: int, *, lock_wait_seconds: float | None = None
) -> None:
    """Open the contract's fence row at ``epoch`` (committed on its own): writers of
    ``epoch`` and later pass from now on."""
    _set_row(conn_or_cursor, contract, epoch, True, lock_wait_seconds)


def dynamo_condition(table_prefix: str, contract: str, epoch: int) -> dict[str, Any]:
    """A TransactWriteItems entry that cancels the transaction unless the contract is still
    at ``epoch`` with no move in progress (epoch 0: no PHASE item yet)."""
    check: dict[str, Any] = {
        "TableName": table_prefix + CONTROL_TABLE,
        "Key": {"contract": {"S": contract}, "record": {"S": "PHASE"}},
    }
    if epoch == 0:
        check["ConditionExpression"] = "attribute_not_exists(#v)"
        check["ExpressionAttributeNames"] = {"#v": "version"}
    else:
        check["ConditionExpression"] = "#v = :e AND attribute_not_exists(#m)"
        check["ExpressionAttributeNames"] = {"#v": "version", "#m": "moving_to"}
        check["ExpressionAttributeValues"] = {":e": {"N": str(epoch)}}
    return {"ConditionCheck": check}


# --- the move ------------------------------------------------------------------------------


def _code(exc: BaseException) -> int | None:
    args = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def _unreachable(exc: BaseException) -> bool:
    """MySQL did not answer: no connection (``cutover.db.connect`` says so with a
    ``ServiceError``) or a lost one."""
    return isinstance(exc, ServiceError) or (
        isinstance(exc, MySQLdb.OperationalError) and _code(exc) in _UNREACHABLE
    )


def _with_mysql(mysql_connect: Callable[[], Any], fn: Callable[[Any], None]) -> None:
    conn = mysql_connect()
    try:
        fn(conn)
    finally:
        conn.close()


def _reopen(
    mysql_connect: Callable[[], Any] | None, contract: str, epoch: int
) -> BaseException | None:
    """Open the MySQL row at ``epoch``; the error when it could not be, else None."""
    if mysql_connect is None:
        return None
    try:
        _with_mysql(mysql_connect, lambda conn: open_mysql(conn, contract, epoch))
    except Exception as exc:
        log.warning("could not open the MySQL fence of %s at epoch %d: %s", contract, epoch, exc)
        return exc
    return None


def _unfence_hint(contract: str) -> str:
    return (
        f"run `cutover phase unfence CONTRACT --reason ...` for {contract!r} once the stores "
        "answer, or writes through cutover keep waiting"
    )


def _abort(
    store: PhaseStore,
    fenced: PhaseState,
    mysql_connect: Callable[[], Any] | None,
    *,
    actor: str,
    reason: str,
) -> str:
    """Abort the move and reopen MySQL; what went wrong doing so, as a sentence ('' if not)."""
    try:
        aborted = store.abort_move(fenced, actor=actor, reason=reason)
    except Exception as exc:
        return f"; aborting the move failed too ({exc}), so its fence stays closed: " + (
            _unfence_hint(fenced.contract)
        )
    if (error := _reopen(mysql_connect, fenced.contract, aborted.version)) is not None:
        return f"; MySQL's fence row could not be reopened ({error}): " + _unfence_hint(
            fenced.contract
        )
    return ""


def _close(conn: Any, contract: str, state: PhaseState, fenced: PhaseState, timeout: float) -> None:
    with conn.cursor() as cur:
        ensure_fence(cur, contract, state.version)
    close_mysql(conn, contract, fenced.version, lock_wait_seconds=timeout)


def fenced_move(
    store: PhaseStore,
    contract_name: str,
    target: Phase,
    *,
    kind: str,
    actor: str,
    mysql_connect: Callable[[], Any] | None,
    catch_up: Callable[[PhaseState], None],
    timeout_seconds: float = 60.0,
    evidence: dict[str, Any] | None = None,
    approved_by: str | None = None,
    reason: str | None = None,
    expected_version: int | None = None,
) -> PhaseState:
    """Move ``contract_name`` to ``target`` behind a fence (see the module's docstring) and
    return the new state, whose ``fenced_seconds`` (also in its history entry) says how long
    writes waited. ``mysql_connect`` opens a connection to the contract's MySQL database
    (None: no MySQL side to fence); ``catch_up`` returns once the follower store has every
    write of the old epoch, and the phase does not change when it raises. ``timeout_seconds``
    bounds the wait for MySQL's writers of the old epoch. ``expected_version``: the version
    the caller decided on (``ConcurrentChange`` when the contract is no longer at it)."""
    state = store.get(contract_name)
    if expected_version is not None and state.version != expected_version:
        raise ConcurrentChange(
            f"contract {contract_name!r} is at version {state.version}, not {expected_version} "
            "as when the move was decided; nothing was changed: run `cutover phase show` and "
            "decide again"
        )
    fenced = store.begin_move(state, target, actor=actor, kind=kind)
    started = time.monotonic()
    unchanged = (f"contract {contract_name!r}: the phase did not change (still "
                 f"{state.phase.value} {state.phase.slug})")  # fmt: skip

    if mysql_connect is not None:
        try:
            _with_mysql(mysql_connect, lambda conn: _close(conn, contract_name, state, fenced,
                                                           timeout_seconds))  # fmt: skip
        except Exception as exc:
            mysql_follows = min(state.phase, target) >= Phase.DUAL_READ_DYNAMODB_PRIMARY
            if _unreachable(exc) and mysql_follows:
                log.warning(
                    "MySQL cannot be reached to fence %s (%s); moving from %s to %s without "
                    "it: DynamoDB is authoritative in both", contract_name, exc,
                    state.phase.slug, target.slug,
                )  # fmt: skip
                mysql_connect = None
            else:
                if _unreachable(exc):
                    why = (f"MySQL cannot be reached to fence its writers ({exc}); it is "
                           "authoritative on one side of the move: start it")  # fmt: skip
                elif _code(exc) == _LOCK_WAIT_TIMEOUT:
                    why = (f"MySQL writers of epoch {state.version} held the fence for over "
                           f"{timeout_seconds:.0f} s: look for long transactions")  # fmt: skip
                else:
                    why = f"MySQL's fence row could not be closed ({exc})"
                # the row was not closed (one autocommitted statement), so it stays open;
                # reopening it would only queue behind the same writers
                trouble = _abort(store, fenced, None, actor=actor, reason=why)
                raise MoveAborted(
                    f"{unchanged}: the move to {target.slug} was aborted because {why}; then "
                    f"move again{trouble}"
                ) from exc

    try:
        catch_up(fenced)
    except BaseException as exc:
        why = f"the follower store did not catch up: {exc}"
        trouble = _abort(store, fenced, mysql_connect, actor=actor, reason=why)
        if not isinstance(exc, Exception):  # Ctrl-C, SystemExit: aborted, then go on with it
            raise
        raise MoveAborted(
            f"{unchanged}: the move to {target.slug} was aborted because {why}; fix that and "
            f"move again{trouble}"
        ) from exc

    try:
        final = store.finish_move(fenced, target, actor=actor, kind=kind, evidence=evidence,
                                  approved_by=approved_by, reason=reason)  # fmt: skip
    except BaseException:
        # whether the write landed is unknown (or the move was unfenced meanwhile): MySQL
        # opens at whatever epoch the store holds once no move is in progress
        with suppress(Exception):
            now = store.get(contract_name)
            if now.moving_to is None:
                _reopen(mysql_connect, contract_name, now.version)
        raise
    log.info("%s moved to %s; writes were fenced for %.3f s", contract_name, target.slug,
             time.monotonic() - started)  # fmt: skip
    error = _reopen(mysql_connect, contract_name, final.version)
    if error is not None and target <= Phase.DUAL_READ_MYSQL_PRIMARY:
        raise TerminalError(
            f"contract {contract_name!r} moved to {target.value} ({target.slug}), but MySQL's "
            f"fence row could not be reopened ({error}): MySQL writes through cutover wait "
            f"until it is: run `cutover phase unfence CONTRACT --reason ...`"
        )
    return final
