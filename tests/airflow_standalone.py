"""A real `airflow standalone` for end-to-end tests, in its own Airflow home, and its REST
API driven as a person would (token login, trigger, answer an approval)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cutover.settings import PROJECT_ROOT

PASSWORD = "gatekeeper"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ApiError(AssertionError):
    """An HTTP error from Airflow, with the status and the body it sent."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


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
        try:
            with urllib.request.urlopen(request, timeout=30) as reply:
                return json.loads(reply.read() or b"null")
        except urllib.error.HTTPError as exc:
            # keep the server's explanation: a bare "HTTP Error 500" says nothing
            detail = exc.read().decode(errors="replace")[:2000]
            raise ApiError(exc.code, f"{method} {path}: HTTP {exc.code}: {detail}") from None

    def login(self, username: str, password: str) -> str:
        reply = self.call("POST", "/auth/token", {"username": username, "password": password})
        return str(reply["access_token"])

    def wait(self, what: str, check: Any, timeout: float = 240) -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = check()
                if last:
                    return last
            except (ApiError, urllib.error.URLError, OSError, KeyError, IndexError) as exc:
                last = exc
            time.sleep(1)  # poll: until check() holds
        raise AssertionError(f"timed out waiting for {what}: {last!r}")


@contextmanager
def standalone(
    home: Path,
    contracts: Path,
    env_extra: Mapping[str, str],
    users: Mapping[str, tuple[str, str]] | None = None,
) -> Iterator[Api]:
    """Run `airflow standalone` with ``home`` as AIRFLOW_HOME and the contracts of
    ``contracts``; yields its API, logged in as admin. ``users`` adds simple-auth-manager
    users: name -> (role, password)."""
    with _airflow(["standalone"], home, contracts, env_extra, users) as api:
        yield api


@contextmanager
def api_server(
    home: Path,
    contracts: Path,
    env_extra: Mapping[str, str],
    users: Mapping[str, tuple[str, str]] | None = None,
) -> Iterator[Api]:
    """Only Airflow's API server (after `airflow db migrate`), e.g. with an auth manager of
    the test's choice: `airflow standalone` always forces the simple auth manager."""
    env = _env(home, contracts, env_extra, _accounts(home, users), free_port())
    migrate = subprocess.run([str(_airflow_bin()), "db", "migrate"], env=env,
                             capture_output=True, text=True)  # fmt: skip
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    with _airflow(["api-server"], home, contracts, env_extra, users) as api:
        yield api


def _accounts(
    home: Path, users: Mapping[str, tuple[str, str]] | None
) -> dict[str, tuple[str, str]]:
    accounts = {"admin": ("admin", PASSWORD), **(users or {})}
    (home / "passwords.json").write_text(json.dumps({u: p for u, (_, p) in accounts.items()}))
    return accounts


def _airflow_bin() -> Path:
    return Path(sys.executable).with_name("airflow")


def _env(
    home: Path,
    contracts: Path,
    env_extra: Mapping[str, str],
    accounts: Mapping[str, tuple[str, str]],
    port: int,
) -> dict[str, str]:
    return {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(
            f"{u}:{role}" for u, (role, _) in accounts.items()
        ),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__CORE__PARALLELISM": "4",  # LocalExecutor keeps one process per slot
        "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "5",
        # a task's retry after a transient error comes within the tests' waits (30 s else)
        "CUTOVER_TASK_RETRY_DELAY": "2",
        "CUTOVER_CONTRACTS_DIR": str(contracts),
        # standalone starts its components as `airflow …` from PATH
        "PATH": f"{_airflow_bin().parent}:{os.environ.get('PATH', '')}",
        # the tests' own modules (e.g. an auth manager a test configures) import from here
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT),
                                                     os.environ.get("PYTHONPATH")])),
        **env_extra,
    }  # fmt: skip


@contextmanager
def _airflow(
    command: list[str],
    home: Path,
    contracts: Path,
    env_extra: Mapping[str, str],
    users: Mapping[str, tuple[str, str]] | None,
) -> Iterator[Api]:
    accounts = _accounts(home, users)
    port = free_port()
    env = _env(home, contracts, env_extra, accounts, port)
    log_path = home / f"{command[0]}.log"
    log = log_path.open("wb")
    proc = subprocess.Popen([str(_airflow_bin()), *command], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    api = Api(f"http://127.0.0.1:{port}")
    try:
        try:
            api.wait("the API server", lambda: api.call("GET", "/api/v2/version"))
        except AssertionError as exc:
            tail = log_path.read_text(errors="replace")[-4000:]
            raise AssertionError(f"{exc}\n--- airflow {command[0]} log ---\n{tail}") from None
        api.token = api.login("admin", PASSWORD)
        yield api
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def _trigger(api: Api, dag_id: str, conf: dict[str, Any]) -> str:
    """Create a run under an id of our own. The standalone's SQLite may be locked by the
    scheduler for a moment (HTTP 500 "Database error"): the same request is sent again, and
    a 409 then means the first one did create the run."""
    run_id = f"test__{uuid.uuid4().hex[:12]}"
    body = {"dag_run_id": run_id, "logical_date": None, "conf": conf}
    for attempt in range(4):
        try:
            return str(api.call("POST", f"/api/v2/dags/{dag_id}/dagRuns", body)["dag_run_id"])
        except ApiError as exc:
            if exc.code == 409 and attempt:
                return run_id
            if exc.code != 500 or "Database error" not in str(exc) or attempt == 3:
                raise
            time.sleep(1.0 * (attempt + 1))  # the writer holding the lock finishes
    raise AssertionError("unreachable")


def trigger_and_answer(
    api: Api, dag_id: str, option: str, target: str = "dual_write",
    expect_in_body: str | tuple[str, ...] = "",
) -> str:  # fmt: skip
    api.wait(f"DAG {dag_id} to be parsed", lambda: api.call("GET", f"/api/v2/dags/{dag_id}"))
    run_id = _trigger(api, dag_id, {"target_phase": target})
    path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}"

    def asking() -> Any:  # the approval's details, or the run's end when it never asks
        if found := api.call("GET", f"{path}/hitlDetails")["hitl_details"]:
            return found
        return api.call("GET", path)["state"] in ("success", "failed")

    try:
        details = api.wait("the approval to wait for input", asking)
    except AssertionError as exc:  # say where the run stands: which task, in which state
        raise AssertionError(f"{exc}; the run's tasks: {run_tasks(api, path)}") from None
    if details is True:  # ended before asking: check_evidence refused (see its task log)
        state = str(api.call("GET", path)["state"])
        print(f"\n{dag_id} run {run_id} ended {state} before asking: {run_tasks(api, path)}")
        return state
    assert details[0]["task_instance"]["task_id"] == "approve"
    for shown in (expect_in_body,) if isinstance(expect_in_body, str) else expect_in_body:
        assert shown in details[0]["body"]  # the evidence is shown to the approver
    # Answer only once the task awaits input and the scheduler has since gone round its loop
    # twice, as a person would answer, not within the same second. An answer that comes
    # before the scheduler has processed the executor's event of the deferral makes Airflow
    # 3.3 fail the resumed task ("finished with state success, but ... queued"); a fixed 3 s
    # was not always enough on a loaded machine.
    api.wait("the approval task to await input", lambda: api.call(
        "GET", f"{path}/taskInstances/approve")["state"] == "awaiting_input")  # fmt: skip
    _scheduler_loops(api, 2)
    api.call("PATCH", f"{path}/taskInstances/approve/-1/hitlDetails",
             {"chosen_options": [option], "params_input": {}})  # fmt: skip
    state = str(api.wait("the run to finish", lambda: (
        r := api.call("GET", path))["state"] in ("success", "failed") and r["state"]))  # fmt: skip
    if state != "success":
        print(f"\n{dag_id} run {run_id} ended {state}: {run_tasks(api, path)}")
    return state


def _scheduler_loops(api: Api, loops: int) -> None:
    """Return once the scheduler's heartbeat (written from its loop) has changed ``loops``
    times, i.e. it has gone round its loop since the call."""

    def beat() -> str:
        health = api.call("GET", "/api/v2/monitor/health")
        return str(health["scheduler"]["latest_scheduler_heartbeat"])

    seen = beat()
    for _ in range(loops):
        seen = api.wait("the scheduler's next heartbeat",
                        lambda last=seen: (b := beat()) != last and b)  # fmt: skip


def run_tasks(api: Api, path: str) -> list[tuple[str, Any, Any]]:
    """(task, state, try) of each task instance of the DAG run at ``path``: what a failed
    run's assertion shows."""
    tasks = api.call("GET", f"{path}/taskInstances")["task_instances"]
    return [(t["task_id"], t["state"], t["try_number"]) for t in tasks]
