"""A backfill run's plan (plan.json): what it records (the contract's hash, the settings it
was planned with, the binlog position and phase epoch of its snapshot, the partitions and
the rate), and the checks that refuse to resume a run with another contract, other settings
or another partition count."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from cutover.binlog.position import Position, current_position
from cutover.contract.model import Contract
from cutover.db import connect
from cutover.errors import ServiceError, TerminalError
from cutover.extract.plan import Partition, plan
from cutover.load.rate_limit import RunRate
from cutover.settings import Settings
from cutover.transform.items import item_version

log = logging.getLogger("cutover.backfill")


class RunRefused(TerminalError):
    """A backfill run cannot be resumed as asked (its contract or settings changed, it does
    not exist, it finished): the message names the run and says what to do instead."""


def contract_sha256(contract: Contract) -> str:
    """sha256 of the contract's canonical JSON (keys sorted): equal contracts, equal hash,
    whatever the order or layout of their files."""
    canonical = json.dumps(
        contract.model_dump(mode="json", by_alias=True), sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _short(digest: str | None) -> str:
    return (digest or "none")[:12]


def _without_userinfo(url: str | None) -> str | None:
    """``url`` without any user:password@ part (a plan records where, never secrets)."""
    if not url or "@" not in url:
        return url
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1]))


def planned_settings(settings: Settings, partitions: int | None) -> dict[str, Any]:
    """What the plan depends on, recorded with it; never a password."""
    m = settings.mysql
    return {
        "partitions": partitions,
        "mysql": {"host": m.host, "port": m.port, "user": m.user, "database": m.database},
        "table_prefix": settings.table_prefix,
        "staging": _without_userinfo(settings.staging),
        "dynamodb_endpoint": _without_userinfo(settings.dynamodb_endpoint),
        "region": settings.region,
    }


def verify_plan(doc: dict[str, Any], contract: Contract, settings: Settings, run_id: str) -> None:
    """Refuse (``RunRefused``) a plan made from another contract, or against another MySQL
    database or table prefix than ``settings`` name."""
    name = contract.name
    recorded = doc.get("contract_sha256")
    if recorded is None:
        raise RunRefused(
            f"run {run_id} of contract {name} was planned by an earlier cutover that did "
            "not record the contract's hash, so resuming it cannot be checked against this "
            "contract; start a new run with --new"
        )
    now_sha = contract_sha256(contract)
    if recorded != now_sha:
        raise RunRefused(
            f"run {run_id} of contract {name} was planned from another version of the "
            f"contract (sha256 {_short(recorded)}, now {_short(now_sha)}): "
            "resuming it would mix items of both; start a new run with --new"
        )
    planned = doc.get("settings") or {}
    was = ((planned.get("mysql") or {}).get("database"), planned.get("table_prefix"))
    now = (settings.mysql.database, settings.table_prefix)
    if was != now:
        raise RunRefused(
            f"run {run_id} of contract {name} was planned against MySQL database "
            f"{was[0]!r} and table prefix {was[1]!r}, these settings name {now[0]!r} and "
            f"{now[1]!r}: resume it with the settings it was planned with, or start a new "
            "run with --new"
        )


def check_partitions(doc: dict[str, Any], partitions: int | None, contract: str,
                     run_id: str) -> None:  # fmt: skip
    """``--partitions`` cannot re-plan a run: a different count than planned is refused
    (none given resumes with the plan's)."""
    if partitions is None:
        return
    planned = (doc.get("settings") or {}).get("partitions")
    if partitions != planned:
        how = (
            f"--partitions {planned}"
            if planned is not None
            else "the contract's partitioning (no --partitions)"
        )
        raise RunRefused(
            f"run {run_id} of contract {contract} was planned with {how} "
            f"into {len(doc['partitions'])} partitions, not --partitions {partitions}: "
            "resume it without --partitions, or start a new run with --new to plan it "
            "again"
        )


def new_plan(contract: Contract, settings: Settings, run_id: str, partitions: int | None,
             epoch: int, rate: RunRate) -> dict[str, Any]:  # fmt: skip
    """Partition every table of ``contract`` and record the binlog position before any
    extraction; the plan document (``rate``'s concurrency capped at the partition count)."""
    conn = connect(settings.mysql)
    try:
        position = snapshot_position(conn, contract.name)
        planned = plan(conn, contract, partitions)
    finally:
        conn.close()
    concurrency = max(1, min(rate.concurrency, len(planned)))
    return {
        "run_id": run_id,
        "contract": contract.name,
        "contract_sha256": contract_sha256(contract),
        "planned_at": dt.datetime.now(dt.UTC).isoformat(),
        "settings": planned_settings(settings, partitions),
        "binlog_position": position,
        "phase_epoch": epoch,
        "partitions": [p.to_dict() for p in planned],
        "rate": RunRate(rate.items_per_s, rate.share, concurrency).to_dict(),
    }


def resumed_rate(doc: dict[str, Any], rate: float | None, rate_share: float | None,
                 concurrency: int) -> RunRate | None:  # fmt: skip
    """On resume: the rate given replaces the recorded one (none given keeps it), and the
    concurrency is the resumer's (the CLI loads one partition at a time, the DAG up to its
    load concurrency). None when the plan records that rate already."""
    was = RunRate.from_dict(doc.get("rate"))
    now = RunRate(
        was.items_per_s if rate is None else rate,
        was.share if rate_share is None else rate_share,
        max(1, min(concurrency, len(doc["partitions"]))),
    )
    if now == was and "rate" in doc:
        return None
    return now


def partitions_of(doc: dict[str, Any]) -> list[Partition]:
    return [Partition.from_dict(p) for p in doc["partitions"]]


def snapshot_version(doc: dict[str, Any]) -> int | None:
    """The ordinal of the binlog position the run's snapshot starts from (None without a
    binlog): the version of every item the run loads."""
    position = doc.get("binlog_position")
    if position is None:
        return None
    return item_version(int(doc.get("phase_epoch") or 0), Position.from_dict(position).ordinal)


def snapshot_position(conn: Any, contract: str) -> dict[str, Any] | None:
    """The binlog position now, as the plan records it; None (with a warning) when the
    server has no binlog: then nothing follows the changes made during the backfill."""
    try:
        return current_position(conn).to_dict()
    except ServiceError as exc:
        log.warning(
            "contract %s: %s; changes made during this backfill will not be applied "
            "(`cutover sync --check` lists what the sync needs)",
            contract,
            exc,
        )
        return None
