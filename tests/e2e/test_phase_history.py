"""The promise, tested as applications would hold cutover to it: two OS processes with three
threads each write a few shared users through ``DualDatabase`` (updates of different
columns of one row, multi-row writes, deletes and re-creates, unique-key violations), a
writer that bypasses cutover writes the same rows (plain SQL in phases 1-3, boto3 in phase
5), and the contract moves 1 → 2 → 3 → 4 → 3 → 4 → 5 with fenced changes of phase while they
run. The test keeps its own history of every operation (tests/history.py) and judges the
final state of the authoritative store against it; at the end of phases 2, 3 and 4 (writers
paused, the follower caught up) both stores pass full parity.

In phase 4 each store in turn is cut from the workers (DynamoDB in the first stay, MySQL
in the second), and the sync is killed during every change of phase.

Not covered here: a writer bypassing cutover in phase 4 (MySQL follows the change records
the layer writes, not DynamoDB Streams, so such a write would not reach MySQL), and the
gates' evidence (the moves are the fenced moves the gate DAG makes once its gate allows)."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from tests.dynamo_tables import drop_tables
from tests.history import read_log, read_violations, violations
from tests.history_worker import email_of, user_row
from tests.integration.test_routing_drills import _small_sample
from tests.tcp_proxy import TcpProxy

from cutover.aws import dynamodb_client
from cutover.contract.load import load_contract
from cutover.db import connect
from cutover.load.dynamo_http import DynamoHttp
from cutover.moves import move_phase
from cutover.phases.model import Phase
from cutover.phases.store import PhaseStore
from cutover.routing.dynamo_store import DynamoStore
from cutover.routing.replay import replay
from cutover.settings import PROJECT_ROOT, Settings
from cutover.stages import run_backfill, run_prepare
from cutover.sync.runner import run_sync
from cutover.validate.run import validate

pytestmark = [pytest.mark.e2e, pytest.mark.mysql, pytest.mark.dynamodb]

KEYS = [3, 4, 5, 6]  # sample users with orders and carts: updated, never deleted
SPARE = [950_001, 950_002, 950_003]  # users of their own: deleted and made again
PATH = [
    Phase.DUAL_WRITE,
    Phase.DUAL_READ_MYSQL_PRIMARY,
    Phase.DUAL_READ_DYNAMODB_PRIMARY,
    Phase.DUAL_READ_MYSQL_PRIMARY,
    Phase.DUAL_READ_DYNAMODB_PRIMARY,
    Phase.DYNAMODB_ONLY,
]
OPS_PER_PHASE = 20  # acknowledged writes each process makes in each phase before it ends


class Bypass:
    """A writer that does not go through cutover: plain SQL while MySQL is authoritative,
    boto3 in phase 5; it logs its operations as the workers do."""

    def __init__(self, settings: Settings, table: str, log: Path) -> None:
        self.settings = settings
        self.table = table
        self.log = log.open("a", encoding="utf-8")
        self.phase = Phase.MYSQL_ONLY
        self.enabled = threading.Event()
        self.idle = threading.Event()  # no request of its own in flight
        self.idle.set()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        conn = connect(self.settings.mysql)
        ddb = dynamodb_client(self.settings)
        n = 0
        while not self.stop.is_set():
            if not self.enabled.wait(0.05):
                continue
            self.idle.clear()
            if not self.enabled.is_set():  # disabled meanwhile: the test waits on idle
                self.idle.set()
                continue
            n += 1
            key, value = KEYS[n % len(KEYS)], f"bypass.{n}"
            start = time.time()
            outcome = "ok"
            try:
                if self.phase <= Phase.DUAL_READ_MYSQL_PRIMARY:
                    with conn.cursor() as cur:
                        cur.execute("UPDATE users SET bio = %s WHERE id = %s", (value, key))
                    conn.commit()
                elif self.phase == Phase.DYNAMODB_ONLY:
                    ddb.update_item(
                        TableName=self.table,
                        Key=key_av_users(key),
                        UpdateExpression="SET bio = :b",
                        ConditionExpression="attribute_exists(PK)",
                        ExpressionAttributeValues={":b": {"S": value}},
                    )
                else:
                    self.idle.set()
                    continue
            except Exception:
                outcome = "unknown"
            self.log.write(
                json.dumps(
                    {
                        "proc": "bypass",
                        "thread": 0,
                        "op": "bypass",
                        "keys": [key],
                        "col": "bio",
                        "value": value,
                        "start": start,
                        "end": time.time(),
                        "outcome": outcome,
                    }
                )
                + "\n"
            )
            self.log.flush()
            self.idle.set()
            self.stop.wait(0.05)
        conn.close()


def key_av_users(user: int) -> dict[str, Any]:
    return {"PK": {"S": f"USER#{user}"}, "SK": {"S": "PROFILE"}}


class SyncLoop:
    """The binlog sync as the sync DAG runs it: following, standing down in phases 4-5 and
    starting again after a rollback."""

    def __init__(self, contract: Any, settings: Settings) -> None:
        self.stop = threading.Event()
        self.errors: list[str] = []

        def loop() -> None:
            while not self.stop.is_set():
                try:
                    report = run_sync(contract, settings, max_seconds=3, stop=self.stop)
                    if report.get("stood_down"):
                        self.stop.wait(0.3)
                except Exception as exc:  # noted; the test fails on it at the end
                    self.errors.append(str(exc))
                    self.stop.wait(0.5)

        self.thread = threading.Thread(target=loop, daemon=True)
        self.thread.start()


class Fault:
    """No fault: the hooks the history run calls, and what each fault overrides."""

    sync: Any = None  # a sync loop of the fault's own, when it needs one
    provokes_failures = False  # requests may fail (outcome unknown to the history)

    def start(self, settings: Settings, contract: Any, contract_path: Path, logs: list[Path],
              env: dict[str, str]) -> None:  # fmt: skip
        self.settings, self.contract, self.logs = settings, contract, logs

    def worker_env(self, env: dict[str, str]) -> dict[str, str]:
        return env

    def in_phase(self, phase: Phase) -> None:
        pass

    def before_move(self, store: PhaseStore, contract: str) -> None:
        pass

    def close(self) -> None:
        pass

    def worker_ops(self, since: float) -> list[dict[str, Any]]:
        return [o for o in read_log(self.logs[:2]) if o["start"] >= since and o["op"] != "read"]


class ProcessSync:
    """The sync as its own OS process (`cutover sync --max-seconds 5`), started again when it
    ends; ``kill`` sends the running one SIGKILL."""

    def __init__(self, contract_path: Path, env: dict[str, str]) -> None:
        self.stop = threading.Event()
        self.errors: list[str] = []  # a killed sync's exit says nothing; parity judges
        self.proc: subprocess.Popen[bytes] | None = None
        self.lock = threading.Lock()
        cutover = str(Path(sys.executable).with_name("cutover"))

        def loop() -> None:
            while not self.stop.is_set():
                with self.lock:
                    self.proc = subprocess.Popen(
                        [cutover, "sync", str(contract_path), "--max-seconds", "5"],
                        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    )  # fmt: skip
                self.proc.wait()
                self.stop.wait(0.2)

        self.thread = threading.Thread(target=loop, daemon=True)
        self.thread.start()

    def kill(self) -> bool:
        with self.lock:
            proc = self.proc
        if proc is None or proc.poll() is not None:
            return False
        proc.kill()
        proc.wait()
        return True


class KillSync(Fault):
    def __init__(self) -> None:
        self.kills = 0  # before each move
        self.closed = threading.Event()  # the run is over: the tables may be gone
        self.during = 0  # while a move waits for the follower: when the poll catches it

    def start(self, settings: Settings, contract: Any, contract_path: Path, logs: list[Path],
              env: dict[str, str]) -> None:  # fmt: skip
        super().start(settings, contract, contract_path, logs, env)
        self.sync = ProcessSync(contract_path, env)
        _wait("the sync process", lambda: self.sync.proc is not None)

    def before_move(self, store: PhaseStore, contract: str) -> None:
        _wait("a sync process to kill", self.sync.kill)
        self.kills += 1

        def again() -> None:  # once the move waits for the follower
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not self.closed.is_set():
                try:
                    moving = store.get(contract).moving_to is not None
                except Exception:  # the run ended meanwhile and took its tables away
                    return
                if moving and self.sync.kill():
                    self.during += 1
                    return
                time.sleep(0.02)  # poll: until the move waits

        threading.Thread(target=again, daemon=True).start()

    def close(self) -> None:
        self.closed.set()
        self.sync.stop.set()
        self.sync.kill()


class _Relayed(Fault):
    """A fault on the workers' connection to one store, through a TCP relay."""

    proxy: TcpProxy

    def __init__(self, visit: int = 1) -> None:
        self.visit = visit  # which stay in phase 4 the store goes away in (there are two)
        self.visits = 0

    def in_phase(self, phase: Phase) -> None:
        if phase != Phase.DUAL_READ_DYNAMODB_PRIMARY:
            return
        self.visits += 1
        if self.visits == self.visit:
            opened = time.time()
            # the workers settled in phase 4 (none waiting for the move) before the cut
            _wait("writes in phase 4", lambda: sum(
                o["outcome"] == "ok" and o.get("phase") == 4
                for o in self.worker_ops(opened)) >= 6)  # fmt: skip
            started = time.time()
            self.proxy.down()
            try:
                self.while_down(started)
            finally:
                self.proxy.up()
            back = time.time()
            _wait("writes after the store came back", lambda: sum(
                o["outcome"] == "ok" for o in self.worker_ops(back)) >= 6)  # fmt: skip

    def while_down(self, since: float) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.proxy.__exit__(None, None, None)


class DynamoDown(_Relayed):
    failed = 0
    provokes_failures = True

    def worker_env(self, env: dict[str, str]) -> dict[str, str]:
        url = urlsplit(self.settings.dynamodb_endpoint or "")
        self.proxy = TcpProxy(url.hostname or "127.0.0.1", url.port or 80).__enter__()
        return {**env, "CUTOVER_DYNAMODB_ENDPOINT": f"http://127.0.0.1:{self.proxy.port}"}

    def while_down(self, since: float) -> None:
        def failed() -> bool:
            self.failed = sum(o["outcome"] == "unknown" for o in self.worker_ops(since))
            return self.failed >= 4

        _wait("writes failing while DynamoDB is away", failed)


class MySQLDown(_Relayed):
    waiting = 0
    # phase 4 writes stand in DynamoDB; the writes that fail are those a stale phase cache
    # sends to MySQL, and phase 3's first ones after the rollback while the workers' MySQL
    # breaker has not yet probed the store again
    provokes_failures = True

    def worker_env(self, env: dict[str, str]) -> dict[str, str]:
        mysql = self.settings.mysql
        self.proxy = TcpProxy(mysql.host, mysql.port).__enter__()
        auth = mysql.user + (f":{quote(mysql.password, safe='')}" if mysql.password else "")
        url = f"mysql://{auth}@127.0.0.1:{self.proxy.port}/{mysql.database}"
        return {**env, "CUTOVER_MYSQL_URL": url}

    def while_down(self, since: float) -> None:
        store = DynamoStore(DynamoHttp(self.settings), self.settings.table_prefix)

        def waiting() -> bool:
            self.waiting = len(store.outbox_pending(self.contract.name))
            return self.waiting >= 5

        try:
            _wait("change records waiting for MySQL", waiting)
        finally:
            store.http.close()


class Faults(Fault):
    """Several faults in one run, each with its own hooks."""

    def __init__(self, *faults: Fault) -> None:
        self.faults = faults
        self.provokes_failures = any(f.provokes_failures for f in faults)

    def start(self, settings: Settings, contract: Any, contract_path: Path, logs: list[Path],
              env: dict[str, str]) -> None:  # fmt: skip
        for f in self.faults:
            f.start(settings, contract, contract_path, logs, env)
        self.sync = next((f.sync for f in self.faults if f.sync is not None), None)

    def worker_env(self, env: dict[str, str]) -> dict[str, str]:
        for f in self.faults:
            env = f.worker_env(env)
        return env

    def in_phase(self, phase: Phase) -> None:
        for f in self.faults:
            f.in_phase(phase)

    def before_move(self, store: PhaseStore, contract: str) -> None:
        for f in self.faults:
            f.before_move(store, contract)

    def close(self) -> None:
        for f in self.faults:
            f.close()


def _acked(logs: list[Path], phase: int) -> Counter[str]:
    ops = read_log(logs)
    return Counter(
        str(o["proc"])
        for o in ops
        if o.get("phase") == phase and o["outcome"] == "ok" and o["op"] != "read"
    )


def _wait(what: str, check: Any, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)  # poll: until check() holds


def _final_dynamodb(ddb: Any, table: str) -> dict[int, dict[str, Any] | None]:
    out: dict[int, dict[str, Any] | None] = {}
    for key in KEYS + SPARE:
        item = ddb.get_item(TableName=table, Key=key_av_users(key), ConsistentRead=True).get("Item")
        out[key] = (
            None
            if item is None
            else {c: item[c].get("S") for c in ("bio", "username") if c in item}
        )
    return out


def _mysql_rows(settings: Settings) -> dict[int, dict[str, Any] | None]:
    conn = connect(settings.mysql)
    try:
        with conn.cursor() as cur:
            out: dict[int, dict[str, Any] | None] = {}
            for key in KEYS + SPARE:
                cur.execute("SELECT bio, username FROM users WHERE id = %s", (key,))
                row = cur.fetchone()
                out[key] = None if row is None else {"bio": row[0], "username": row[1]}
            return out
    finally:
        conn.close()


def test_no_acknowledged_write_is_lost_across_every_change_of_phase(
    scratch_db: Settings, tmp_path: Path
) -> None:
    """The headline run, with the three drills in it:

    * the sync killed during each change of phase: it runs as its own process (`cutover
      sync`) and is killed with SIGKILL as each move begins and again while the move waits
      for it; the move's catch-up still ends with DynamoDB at the fence (it runs the sync
      itself when the checkpoint does not move);
    * DynamoDB cut from the workers in the first stay in phase 4 (a relay in front of the
      real DynamoDB Local resets every connection): writes fail as unavailable (outcome
      unknown to the history), reads go to MySQL and must still see every acknowledged write;
    * MySQL cut from the workers in the second stay in phase 4: writes stand in DynamoDB with
      their change records waiting, and MySQL has them all once the move out replays them.
    """
    kill, dynamo, mysql = KillSync(), DynamoDown(visit=1), MySQLDown(visit=2)
    _history(scratch_db, tmp_path, Faults(kill, dynamo, mysql))
    assert kill.kills == len(PATH), kill.kills
    # a short move can end between two polls; most are caught
    assert kill.during >= len(PATH) // 2, kill.during
    assert dynamo.failed >= 4, dynamo.failed
    assert mysql.waiting >= 5, mysql.waiting


def _history(scratch_db: Settings, tmp_path: Path, fault: Fault) -> None:
    settings = replace(
        scratch_db, table_prefix=f"{scratch_db.table_prefix}h{uuid.uuid4().hex[:6]}_"
    )
    _small_sample(settings)
    conn = connect(settings.mysql)
    with conn.cursor() as cur:
        for key in SPARE:
            row = user_row(key, f"initial.{key}")
            cur.execute(
                f"INSERT INTO users ({', '.join(row)}) VALUES ({', '.join(['%s'] * len(row))})",
                list(row.values()),
            )
    conn.commit()
    conn.close()
    assert email_of(SPARE[0]).endswith("@example.com")
    doc = json.loads((PROJECT_ROOT / "contracts" / "ecommerce.json").read_text())
    doc["cutover"]["name"] = f"history_{uuid.uuid4().hex[:6]}"
    contract_path = tmp_path / "contract.json"
    contract_path.write_text(json.dumps(doc))
    contract = load_contract(contract_path)
    run_prepare(contract, settings)
    run_backfill(contract, settings)
    initial = _mysql_rows(settings)
    users = settings.table_prefix + "Users"
    ddb = dynamodb_client(settings)
    store = PhaseStore(ddb, settings.table_prefix)

    control = tmp_path / "control"
    control.mkdir()
    logs = [tmp_path / f"proc{i}.jsonl" for i in (1, 2)] + [tmp_path / "bypass.jsonl"]
    env = {
        **os.environ,
        "CUTOVER_MYSQL_URL": settings.mysql.url,
        "CUTOVER_DYNAMODB_ENDPOINT": settings.dynamodb_endpoint or "",
        "CUTOVER_TABLE_PREFIX": settings.table_prefix,
        "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), str(PROJECT_ROOT / "include")]),
    }
    fault.start(settings, contract, contract_path, logs, env)
    env = fault.worker_env(env)
    sync = fault.sync or SyncLoop(contract, settings)
    bypass = Bypass(settings, users, logs[2])
    bypass.enabled.set()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.history_worker",
                str(contract_path),
                str(logs[i - 1]),
                "--proc",
                str(i),
                "--threads",
                "3",
                "--seed",
                str(i),
                "--keys",
                ",".join(map(str, KEYS)),
                "--spare",
                ",".join(map(str, SPARE)),
                "--control",
                str(control),
            ],
            cwd=PROJECT_ROOT,
            env=env,
            stderr=(tmp_path / f"proc{i}.err").open("w"),
        )
        for i in (1, 2)
    ]
    moves: list[tuple[int, int, float, float]] = []
    try:
        phase = Phase.MYSQL_ONLY
        for target in PATH:
            fault.in_phase(phase)
            _wait(
                f"writes in phase {int(phase)}",
                lambda p=phase: (
                    all(n >= OPS_PER_PHASE for n in _acked(logs[:2], p).values())
                    and len(_acked(logs[:2], p)) == 2
                ),
            )
            if phase in (
                Phase.DUAL_WRITE,
                Phase.DUAL_READ_MYSQL_PRIMARY,
                Phase.DUAL_READ_DYNAMODB_PRIMARY,
            ):
                _full_parity_paused(contract, settings, control, bypass, phase, logs)
            if target >= Phase.DUAL_READ_DYNAMODB_PRIMARY:
                bypass.enabled.clear()  # plain SQL must not write MySQL once it follows
                _wait("the bypass writer to be idle", bypass.idle.is_set)
                _no_violations_from_now(control)
            started = time.time()
            kind = "advance" if target > phase else "rollback"
            fault.before_move(store, contract.name)
            move_phase(
                contract,
                settings,
                target,
                kind=kind,
                actor="history-test",
                approved_by="history-test" if kind == "advance" else None,
                reason="the history test goes back" if kind == "rollback" else None,
            )
            moves.append((int(phase), int(target), started, time.time()))
            phase = target
            bypass.phase = phase
            if phase <= Phase.DUAL_READ_MYSQL_PRIMARY:  # MySQL refuses them again, at once
                (control / "no-violate").unlink(missing_ok=True)
            if phase <= Phase.DUAL_READ_MYSQL_PRIMARY or phase == Phase.DYNAMODB_ONLY:
                bypass.enabled.set()
        _wait(
            "writes in phase 5",
            lambda: all(n >= OPS_PER_PHASE for n in _acked(logs[:2], 5).values()),
        )
    finally:
        (control / "stop").write_text("")
        for p in procs:
            p.wait(timeout=60)
        bypass.stop.set()
        bypass.thread.join(timeout=10)
        sync.stop.set()
        sync.thread.join(timeout=30)
        fault.close()
        final = _final_dynamodb(ddb, users)
        final_phase = store.get(contract.name).phase
        drop_tables(ddb, settings.table_prefix)

    assert [p.returncode for p in procs] == [0, 0], [
        (tmp_path / f"proc{i}.err").read_text()[-2000:] for i in (1, 2)
    ]
    assert final_phase == Phase.DYNAMODB_ONLY
    ops = read_log(logs)
    outcomes = Counter((o["op"], o["outcome"]) for o in ops)
    print("history:", dict(outcomes))
    for kind in ("update", "multi", "put", "delete", "read", "bypass"):
        assert outcomes[(kind, "ok")] > 0, (kind, outcomes)
    assert outcomes[("violate", "failed")] > 0, outcomes  # the unique key refused them
    assert outcomes[("violate", "ok")] == 0, outcomes
    unknown = [o for o in ops if o["outcome"] == "unknown"]
    if fault.provokes_failures:  # only while the store was away: what it failed with
        assert {o["error"].split(":")[0] for o in unknown} <= {"StoreUnavailable"}, unknown[:5]
    else:
        assert not unknown, unknown[:5]  # no request failed other than the provoked refusals
    assert not sync.errors, sync.errors
    assert violations(ops, initial, final) == []
    assert read_violations(ops) == []
    _report_pauses(ops, moves)


@contextmanager
def _paused(control: Path) -> Iterator[None]:
    """The workers paused with no request in flight: each answers this pause's token."""
    token = uuid.uuid4().hex
    (control / "pause").write_text(token)
    try:
        _wait(
            "the workers to pause",
            lambda: all(
                (p := control / f"paused.{i}").exists() and p.read_text() == token for i in (1, 2)
            ),
        )
        yield
    finally:
        (control / "pause").unlink()


def _no_violations_from_now(control: Path) -> None:
    """Unique-key violations stop before a move into phase 4 (MySQL would quarantine them
    there): the workers pause, so none is in flight, and resume without them."""
    (control / "pause").write_text("")
    try:
        _wait(
            "the workers to pause", lambda: all((control / f"paused.{i}").exists() for i in (1, 2))
        )
        (control / "no-violate").write_text("")
    finally:
        (control / "pause").unlink()


def _full_parity_paused(
    contract: Any, settings: Settings, control: Path, bypass: Bypass, phase: Phase,
    logs: list[Path],
) -> None:  # fmt: skip
    """Writers paused, the follower caught up: both stores agree item for item."""
    was = bypass.enabled.is_set()
    bypass.enabled.clear()
    try:
        with _paused(control):
            _wait("the bypass writer to be idle", bypass.idle.is_set)
            if phase <= Phase.DUAL_READ_MYSQL_PRIMARY:
                run_sync(contract, settings, once=True)
            else:
                result = replay(contract, settings)
                assert result["error"] is None and result["left"] == 0, result
            report = validate(contract, settings)
            differences = [d for t in report["tables"] for d in t["parity"]["differences"][:3]]
            assert report["success"], (
                int(phase),
                [(d["kind"], d["PK"], d.get("SK"), d.get("attributes")) for d in differences],
                _writes_told(read_log(logs), differences),
            )
    finally:
        if was:
            bypass.enabled.set()


def _writes_told(ops: list[dict[str, Any]], differences: list[dict[str, Any]]) -> list[str]:
    """The recorded writes of the users a parity check found different, one line each, for
    the failure's message (CI keeps no log files)."""
    keys = {int(d["PK"].split("#")[1]) for d in differences if d["PK"].startswith("USER#")}
    return [
        f"{o['proc']}.{o.get('thread')} {o['op']} {o['keys']} {o.get('col')}={o.get('value')} "
        f"{o['outcome']} phase {o.get('phase')} {o['start']:.3f}-{o['end']:.3f}"
        for o in sorted(ops, key=lambda o: o["start"])
        if o["op"] != "read" and keys & set(o["keys"])
    ][-30:]


def _report_pauses(ops: list[dict[str, Any]], moves: list[tuple[int, int, float, float]]) -> None:
    """The write pause at each change of phase: the latency of the writes in flight while it
    ran (printed for the closing note; not asserted, a clock figure)."""
    for a, b, start, end in moves:
        ms = [
            (o["end"] - o["start"]) * 1000
            for o in ops
            if o["op"] not in ("read", "bypass") and o["start"] < end and o["end"] > start
        ]
        if ms:
            q = statistics.quantiles(ms, n=100) if len(ms) > 1 else ms * 99
            print(
                f"move {a}->{b}: {end - start:.2f}s, {len(ms)} writes in flight, "
                f"p50 {q[49]:.0f} ms, p99 {q[98]:.0f} ms, max {max(ms):.0f} ms"
            )
