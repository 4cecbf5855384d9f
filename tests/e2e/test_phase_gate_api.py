"""A phase gate driven through a real approval: a real `airflow standalone` runs the
phase_gate DAG, the approval task waits for input, this test answers through Airflow's REST
API (hitlDetails) as a person would in the UI, and the phase store then holds the new phase
with the approver. A rejection, on a second run, changes nothing."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cutover.phases.model import Phase
from cutover.phases.store import PhaseStore
from cutover.prepare.control_table import ensure_control_table
from cutover.settings import PROJECT_ROOT, Settings

pytestmark = pytest.mark.e2e
PASSWORD = "gatekeeper"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Api:
    def __init__(self, base: str) -> None:
        self.base = base
        self.token = ""

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(request, timeout=30) as reply:
            return json.loads(reply.read() or b"null")

    def wait(self, what: str, check: Any, timeout: float = 240) -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = check()
                if last:
                    return last
            except (urllib.error.URLError, ConnectionError, KeyError, IndexError) as exc:
                last = exc
            time.sleep(1)
        raise AssertionError(f"timed out waiting for {what}: {last!r}")


@pytest.fixture(scope="module")
def airflow(
    settings: Settings, ddb: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Api, str, PhaseStore]]:
    home = tmp_path_factory.mktemp("airflow")
    contracts = home / "contracts"
    contracts.mkdir()
    name = f"gate_{uuid.uuid4().hex[:6]}"
    sample = json.loads((PROJECT_ROOT / "contracts" / "ecommerce.json").read_text())
    sample["cutover"]["name"] = name
    (contracts / f"{name}.json").write_text(json.dumps(sample))
    (home / "passwords.json").write_text(json.dumps({"admin": PASSWORD}))
    prefix = f"{settings.table_prefix}gate_"
    ensure_control_table(ddb, prefix)
    store = PhaseStore(ddb, prefix)
    port = _free_port()
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__CORE__PARALLELISM": "4",  # LocalExecutor keeps one process per slot
        "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "5",
        "CUTOVER_CONTRACTS_DIR": str(contracts),
        "CUTOVER_DYNAMODB_ENDPOINT": settings.dynamodb_endpoint or "",
        "CUTOVER_TABLE_PREFIX": prefix,
        # standalone starts its components as `airflow …` from PATH
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    }
    log = (home / "standalone.log").open("wb")
    airflow_bin = Path(sys.executable).with_name("airflow")
    proc = subprocess.Popen([str(airflow_bin), "standalone"], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    api = Api(f"http://127.0.0.1:{port}")
    try:
        try:
            api.wait("the API server", lambda: api.call("GET", "/api/v2/version"))
        except AssertionError as exc:
            tail = (home / "standalone.log").read_text(errors="replace")[-4000:]
            raise AssertionError(f"{exc}\n--- airflow standalone log ---\n{tail}") from None
        token = api.call("POST", "/auth/token", {"username": "admin", "password": PASSWORD})
        api.token = token["access_token"]
        yield api, name, store
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
        ddb.delete_table(TableName=f"{prefix}cutover_control")
        if os.environ.get("CUTOVER_KEEP_AIRFLOW_HOME") is None:
            shutil.rmtree(home, ignore_errors=True)


def _trigger_and_answer(api: Api, dag_id: str, option: str) -> str:
    api.wait(f"DAG {dag_id} to be parsed", lambda: api.call("GET", f"/api/v2/dags/{dag_id}"))
    run = api.call("POST", f"/api/v2/dags/{dag_id}/dagRuns",
                   {"logical_date": None, "conf": {"target_phase": "dual_write"}})  # fmt: skip
    run_id = run["dag_run_id"]
    path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}"
    details = api.wait("the approval to wait for input",
                       lambda: api.call("GET", f"{path}/hitlDetails")["hitl_details"])  # fmt: skip
    assert details[0]["task_instance"]["task_id"] == "approve"
    assert "prepare" in details[0]["body"]  # the evidence is shown to the approver
    # Answer only once the scheduler has parked the task (state "awaiting_input"), and as
    # a person would, not within the same second: an earlier answer makes Airflow 3.3 fail
    # the resumed task ("finished with state success, but ... queued").
    api.wait("the approval task to await input", lambda: api.call(
        "GET", f"{path}/taskInstances/approve")["state"] == "awaiting_input")  # fmt: skip
    time.sleep(3)
    api.call("PATCH", f"{path}/taskInstances/approve/-1/hitlDetails",
             {"chosen_options": [option], "params_input": {}})  # fmt: skip
    return str(api.wait("the run to finish", lambda: (
        r := api.call("GET", path))["state"] in ("success", "failed") and r["state"]))  # fmt: skip


def test_an_approved_gate_records_the_phase_and_the_approver(
    airflow: tuple[Api, str, PhaseStore],
) -> None:
    api, name, store = airflow
    store.record_evidence(name, "prepare", {"drifts": 0})
    assert _trigger_and_answer(api, f"{name}__phase_gate", "Reject") == "success"
    assert store.get(name).phase == Phase.MYSQL_ONLY  # a rejection changes nothing

    assert _trigger_and_answer(api, f"{name}__phase_gate", "Approve") == "success"
    state = store.get(name)
    assert state.phase == Phase.DUAL_WRITE
    assert state.approved_by == "admin"
    (entry,) = store.history(name)
    assert entry["approved_by"] == "admin" and entry["actor"].startswith("airflow:")
