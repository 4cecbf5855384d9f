"""The backfill's last step, the snapshot handoff: every change MySQL's binlog holds since
the position the run recorded before its first read is applied over the loaded items, by the
sync's own code (``cutover.sync.runner.handoff``), deletes and joined rows included, with no
version column. What it replaced: the version-column catch-up (which missed deletes, changes
to joined rows and contracts without a version column) and the routing layer's replay of its
MySQL outbox over the snapshot (which missed every writer but the layer).

Rows the handoff cannot turn into items are kept in the run's quarantine
(``quarantine/handoff.parquet``) and counted with the backfill's for the gate, once: a row
the snapshot already quarantined is not counted again."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from cutover.backfill.run import BackfillRun
from cutover.binlog.position import Position

log = logging.getLogger("cutover.backfill")
QUARANTINE_FILE = "handoff.parquet"
NO_BINLOG = (
    "unavailable: the run recorded no binlog position (the server had no binlog), so changes "
    "made while it ran are not applied; turn the binlog on (`cutover sync --check`) or let "
    "reconcile repair them"
)


def handoff(run: BackfillRun) -> dict[str, Any]:
    """Apply the changes since the run's snapshot position; records and returns what it did
    (done once per run: a resumed run does not apply them again)."""
    if done := run.checkpoints.done("handoff", "all"):
        return done
    from cutover.phases.guard import refuse_mysql_to_dynamodb
    from cutover.sync.runner import handoff as sync_handoff

    refuse_mysql_to_dynamodb(run.settings, run.contract.name, "the backfill's handoff")

    position = run.plan_doc().get("binlog_position")
    if position is None:
        log.warning("run %s: %s", run.run_id, NO_BINLOG)
        return run.checkpoints.mark("handoff", "all", {"unavailable": NO_BINLOG, "reasons": {}})
    start = Position.from_dict(position)
    report, rejected = sync_handoff(run.contract, run.settings, start)
    # a row the snapshot quarantined, or one derived again in several batches, counts once
    seen = run.checkpoints.quarantined_keys(exclude=QUARANTINE_FILE)
    rejections = []
    for r in rejected:
        if (key := (r.table, r.entity_type, r.source_pk)) not in seen:
            seen.add(key)
            rejections.append(r)
    reasons = Counter(r.reason for r in rejections)
    record = {
        "from": start.to_dict(),
        "to": report["position"],
        "transactions": report["transactions"],
        "items_written": report["items_written"],
        "items_deleted": report["items_deleted"],
        "kept_newer": report["kept_newer"],
        "fallbacks": report["fallbacks"],
        "quarantined": sum(reasons.values()),
        "reasons": dict(sorted(reasons.items())),
        "quarantine_file": run.checkpoints.write_quarantine(QUARANTINE_FILE, rejections),
        "unavailable": None,
    }
    log.info("run %s: handoff applied %d transactions from %s (%d items written, %d deleted)",
             run.run_id, record["transactions"], start, record["items_written"],
             record["items_deleted"])  # fmt: skip
    return run.checkpoints.mark("handoff", "all", record)
