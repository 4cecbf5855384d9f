"""Jobs that write one store from the other obey the phase: none writes into the store that
is authoritative. The backfill and the binlog sync write DynamoDB from MySQL, which is right
only while MySQL answers reads (phases 1-3)."""

from __future__ import annotations

from typing import Any

from cutover.errors import TerminalError
from cutover.phases.model import Phase


class PhaseRefused(TerminalError):
    """The contract's phase forbids the job: what it would write is authoritative now."""


def phase_epoch(settings: Any, contract: str) -> int:
    """The contract's phase epoch (0 before the control table or the first move)."""
    from cutover.aws import dynamodb_client
    from cutover.phases.store import PhaseStore

    client = dynamodb_client(settings)
    try:
        return PhaseStore(client, settings.table_prefix).get(contract).version
    except client.exceptions.ResourceNotFoundException:
        return 0


def mysql_to_dynamodb_refusal(settings: Any, contract: str, job: str) -> str | None:
    """Why ``job`` (a writer of DynamoDB from MySQL's rows) must not run now, or None: from
    phase 4 on DynamoDB is authoritative and MySQL follows it."""
    from cutover.aws import dynamodb_client
    from cutover.phases.store import PhaseStore

    client = dynamodb_client(settings)
    try:
        phase = PhaseStore(client, settings.table_prefix).get(contract).phase
    except client.exceptions.ResourceNotFoundException:
        return None  # no control table: nothing prepared yet, phase 1
    if phase < Phase.DUAL_READ_DYNAMODB_PRIMARY:
        return None
    return (
        f"{contract} is in phase {int(phase)} ({phase.slug}): DynamoDB is authoritative and "
        f"MySQL follows it, so {job} does not write DynamoDB from MySQL; roll the phase back "
        "to 3 (dual_read_mysql_primary) first if MySQL's rows are the ones to keep"
    )


def refuse_mysql_to_dynamodb(settings: Any, contract: str, job: str) -> None:
    if why := mysql_to_dynamodb_refusal(settings, contract, job):
        raise PhaseRefused(why)
