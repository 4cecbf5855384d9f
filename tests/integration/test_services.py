"""`cutover up/down/status` against real processes: a DynamoDB Local on a free port."""

from __future__ import annotations

import socket
from pathlib import Path

import boto3
import pytest

from cutover.local.services import DynamoLocal, status
from cutover.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.mysql, pytest.mark.dynamodb]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_status_reports_the_running_services(settings: Settings) -> None:
    states = {s.name: s for s in status(settings)}
    assert states["mysql"].running and states["dynamodb"].running


def test_dynamodb_local_starts_answers_is_idempotent_and_stops(tmp_path: Path) -> None:
    local = DynamoLocal(port=_free_port(), state_dir=tmp_path, in_memory=True)
    first = local.up()
    assert first.running and first.managed_by_cutover
    pid = local.pid_file.read_text()
    client = boto3.client("dynamodb", endpoint_url=local.address, region_name="us-east-1",
                          aws_access_key_id="x", aws_secret_access_key="x")  # fmt: skip
    assert client.list_tables()["TableNames"] == []
    again = local.up()
    assert again.running and local.pid_file.read_text() == pid
    stopped = local.down()
    assert not stopped.running and not local.pid_file.exists()
