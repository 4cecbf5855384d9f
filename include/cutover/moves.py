"""Changing a contract's phase as operators do (`cutover phase advance/rollback`, the
phase_gate and rollback DAGs): fenced (``cutover.phases.fence``), waiting for the follower
store to have every write of the old epoch before the new phase opens:

* into phase 4 (MySQL authoritative before, DynamoDB after): the binlog sync reaches the
  binlog's end as it was once MySQL's writers were fenced;
* out of phase 4 (DynamoDB authoritative before): DynamoDB's outbox is drained into MySQL.

This module sits above the phases, the sync and the routing layer; nothing below imports it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from cutover.contract.model import Contract
from cutover.db import connect
from cutover.errors import TerminalError
from cutover.phases.fence import ensure_fence, fenced_move, open_mysql
from cutover.phases.model import Phase
from cutover.phases.store import PhaseState, PhaseStore
from cutover.phases.transitions import Mover
from cutover.settings import Settings

log = logging.getLogger("cutover.phases")

STALL_SECONDS = 3.0  # a checkpoint that has not moved this long: no sync is running
POLL_SECONDS = 0.1


def _store(settings: Settings) -> PhaseStore:
    from cutover.aws import dynamodb_client

    return PhaseStore(dynamodb_client(settings), settings.table_prefix)


def move_phase(
    contract: Contract,
    settings: Settings,
    target: Phase,
    *,
    kind: str,
    actor: str,
    approved_by: str | None = None,
    reason: str | None = None,
    evidence: dict[str, Any] | None = None,
    timeout_seconds: float = 60.0,
    expected_version: int | None = None,
) -> PhaseState:
    """Move ``contract`` to ``target`` behind the fence, with the catch-up the move needs
    (``catch_up``); ``timeout_seconds`` bounds both the wait for MySQL's writers and the
    catch-up. The phase does not change when either fails (``MoveAborted`` says why)."""

    def caught_up(fenced: PhaseState) -> None:
        catch_up(contract, settings, fenced.phase, target, timeout_seconds=timeout_seconds)

    return fenced_move(
        _store(settings),
        contract.name,
        target,
        kind=kind,
        actor=actor,
        mysql_connect=lambda: connect(settings.mysql),
        catch_up=caught_up,
        timeout_seconds=timeout_seconds,
        evidence=evidence,
        approved_by=approved_by,
        reason=reason,
        expected_version=expected_version,
    )


def phase_mover(contract: Contract, settings: Settings, *, timeout_seconds: float = 60.0) -> Mover:
    """``move_phase`` as the ``move`` of ``transitions.advance``/``rollback``: the move
    happens only if the contract is still at the version their checks read."""

    def move(
        current: PhaseState,
        target: Phase,
        *,
        actor: str,
        kind: str,
        evidence: dict[str, Any] | None = None,
        approved_by: str | None = None,
        reason: str | None = None,
    ) -> PhaseState:
        return move_phase(contract, settings, target, kind=kind, actor=actor,
                          approved_by=approved_by, reason=reason, evidence=evidence,
                          timeout_seconds=timeout_seconds,
                          expected_version=current.version)  # fmt: skip

    return move


def catch_up(
    contract: Contract, settings: Settings, old: Phase, new: Phase, *, timeout_seconds: float
) -> None:
    """Return once the store that follows in ``old`` has every write of ``old``'s epoch."""
    if old <= Phase.DUAL_READ_MYSQL_PRIMARY < new:
        binlog_caught_up(contract, settings, timeout_seconds=timeout_seconds)
    elif old == Phase.DUAL_READ_DYNAMODB_PRIMARY:
        outbox_drained(contract, settings, timeout_seconds=timeout_seconds)
    # Among phases 1-3 MySQL stays authoritative and DynamoDB goes on following the same
    # binlog, so nothing changes hands; out of phase 5 DynamoDB stays authoritative and
    # nothing followed it (MySQL was retired: reconcile repairs it), so there is no log to
    # wait for.


def binlog_caught_up(contract: Contract, settings: Settings, *, timeout_seconds: float) -> None:
    """Wait until the binlog sync's checkpoint reaches the binlog's end as it is now (MySQL's
    writers are fenced: nothing of the old epoch comes after it). When the checkpoint has not
    moved for ``STALL_SECONDS`` no sync is running: run one here, up to the binlog's end (the
    sync's lease makes it take turns with one that starts meanwhile)."""
    from cutover.aws import dynamodb_client
    from cutover.binlog.checkpoint import CheckpointStore
    from cutover.binlog.position import current_position
    from cutover.sync.runner import run_sync

    conn = connect(settings.mysql)
    try:
        end = current_position(conn)
    finally:
        conn.close()
    checkpoints = CheckpointStore(dynamodb_client(settings), settings.table_prefix)
    seen = checkpoints.load(contract.name)
    if seen is None:
        raise TerminalError(
            f"no binlog sync has run for {contract.name} (it has no checkpoint), so DynamoDB "
            "does not follow MySQL: run the backfill (its handoff starts the sync) and keep "
            "`cutover sync` running before DynamoDB becomes authoritative"
        )
    deadline = time.monotonic() + timeout_seconds
    since = time.monotonic()
    while seen.ordinal < end.ordinal:
        now = time.monotonic()
        if now >= deadline:
            raise TerminalError(
                f"the binlog sync of {contract.name} did not reach {end} within "
                f"{timeout_seconds:g} s (its checkpoint is at {seen}); look at the sync's log "
                "or run `cutover sync --once CONTRACT`"
            )
        if now - since >= STALL_SECONDS:
            log.info("the sync of %s is at %s, not moving: running it up to %s",
                     contract.name, seen, end)  # fmt: skip
            report = run_sync(contract, settings, once=True)
            if report.get("stood_down"):
                raise TerminalError(f"the sync did not run: {report['stood_down']}")
            # it started after the fence closed and ran to the binlog's end (its end may be
            # past the last commit, e.g. DDL, which no checkpoint reaches): caught up
            return
        time.sleep(POLL_SECONDS)
        current = checkpoints.load(contract.name)
        if current is not None and current != seen:
            seen, since = current, time.monotonic()


def outbox_drained(contract: Contract, settings: Settings, *, timeout_seconds: float) -> None:
    """Replay DynamoDB's outbox into MySQL until nothing is left (DynamoDB's writers are
    fenced: no entry of the old epoch comes after)."""
    from cutover.routing.replay import replay

    deadline = time.monotonic() + timeout_seconds
    while True:
        report = replay(contract, settings)
        if report.get("error"):
            raise TerminalError(
                f"the outbox replay into MySQL failed ({report['error']}) with "
                f"{report.get('left')} entries left; fix that, or run `cutover outbox replay "
                "CONTRACT` to see it again"
            )
        if report.get("left") == 0:
            return
        if time.monotonic() >= deadline:
            raise TerminalError(
                f"DynamoDB's outbox of {contract.name} still has {report.get('left')} entries "
                f"after {timeout_seconds:g} s of replay; run `cutover outbox replay CONTRACT`"
            )
        time.sleep(POLL_SECONDS)


def unfence(contract: Contract, settings: Settings, *, actor: str, reason: str) -> PhaseState:
    """Clear a fence a failed move left behind: abort the move in progress, if any, and open
    MySQL's fence row at the current epoch (also after the control table was recreated and
    its versions started again below the row's). Only for a move whose mover is gone: a live
    one then fails to finish and leaves the phase as it was."""
    if not reason.strip():
        raise TerminalError("unfencing needs a reason")
    store = _store(settings)
    state = store.get(contract.name)
    if state.moving_to is not None:
        state = store.abort_move(state, actor=actor, reason=reason)
    try:
        conn = connect(settings.mysql)
        try:
            with conn.cursor() as cur:
                ensure_fence(cur, contract.name, state.version)
            open_mysql(conn, contract.name, state.version)
        finally:
            conn.close()
    except Exception as exc:
        if state.phase <= Phase.DUAL_READ_MYSQL_PRIMARY:
            raise TerminalError(
                f"the move of {contract.name} is cleared, but MySQL's fence row could not be "
                f"opened ({exc}); start MySQL and run this again"
            ) from exc
        log.warning("MySQL's fence row of %s not opened (%s); DynamoDB is authoritative",
                    contract.name, exc)  # fmt: skip
    return state
