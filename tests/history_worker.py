"""One application process of the phase-history test: ``threads`` threads write a few shared
users through one ``DualDatabase`` and log every operation themselves (tests/history.py).

    python -m tests.history_worker CONTRACT.json LOG --proc N --threads 3 --seed S \
        --keys 1,2,3 --spare 950001,950002 --control DIR

Settings come from the environment (``CUTOVER_*``). The control directory holds ``stop``,
``pause`` and ``no-violate`` files the test creates; the process answers ``paused.N`` (with the
pause file's token) once none of its threads has a request in flight.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import threading
import time
from pathlib import Path
from typing import Any

from cutover.contract.load import load_contract
from cutover.routing.changes import Change
from cutover.routing.layer import DerivedRefused, DualDatabase, NotFound
from cutover.settings import Settings

CONSTRAINT_ERRORS = ("IntegrityError", "Duplicate entry", "foreign key")


class Worker:
    def __init__(self, layer: DualDatabase, args: argparse.Namespace) -> None:
        self.layer = layer
        self.args = args
        self.control = Path(args.control)
        self.keys = [int(k) for k in args.keys.split(",")]
        self.spare = [int(k) for k in args.spare.split(",")]
        self.lock = threading.Lock()
        self.log = Path(args.log).open("a", encoding="utf-8")  # noqa: SIM115 - for its life
        self.busy = 0

    def record(self, entry: dict[str, Any]) -> None:
        with self.lock:
            self.log.write(json.dumps({"proc": self.args.proc, **entry}, default=str) + "\n")
            self.log.flush()

    def run(self, index: int) -> None:
        rng = random.Random(self.args.seed * 100 + index)
        n = 0
        while not (self.control / "stop").exists():
            with self.lock:  # with the pause check: ``paused`` is never written mid-request
                paused = (self.control / "pause").exists()
                if not paused:
                    self.busy += 1
            if paused:
                time.sleep(0.02)  # poll: until the pause file goes
                continue
            try:
                n += 1
                self.step(rng, index, f"p{self.args.proc}.t{index}.{n}")
            finally:
                with self.lock:
                    self.busy -= 1
            # think time between requests: interleaves the threads
            time.sleep(rng.uniform(0.0, 0.03))  # think time: interleaves the threads

    def step(self, rng: random.Random, thread: int, value: str) -> None:
        kind = rng.choices(["update", "multi", "put", "delete", "violate"], [6, 2, 2, 2, 1])[0]
        layer = self.layer
        if kind == "update":
            key, col = rng.choice(self.keys + self.spare), rng.choice(["bio", "username"])
            op = {"op": "update", "keys": [key], "col": col, "value": value}
            done = self.call(thread, op, lambda: layer.update("USER", {"id": key}, {col: value}))
            if done:
                self.read_back(thread, op)
        elif kind == "multi":
            a, b = rng.sample(self.keys, 2)
            changes = [Change("users", "update", {"id": k}, {"bio": value}) for k in (a, b)]
            self.call(
                thread,
                {"op": "multi", "keys": [a, b], "col": "bio", "value": value},
                lambda: layer.write(changes),
            )
        elif kind == "put":
            key = rng.choice(self.spare)
            self.call(
                thread,
                {"op": "put", "keys": [key], "value": value},
                lambda: layer.put("USER", user_row(key, value)),
            )
        elif kind == "delete":
            key = rng.choice(self.spare)
            self.call(
                thread, {"op": "delete", "keys": [key]}, lambda: layer.delete("USER", {"id": key})
            )
        else:  # another user's email: MySQL's unique key refuses it
            a, b = rng.sample(self.keys, 2)
            if (self.control / "no-violate").exists():
                # the test is about to move into phase 4, where MySQL would quarantine it
                # (tests/integration/test_phase4_writes.py covers that)
                return
            taken = (layer.get("USER", {"id": b}) or {}).get("email")
            self.call(
                thread,
                {"op": "violate", "keys": [a], "col": "email", "value": taken},
                lambda: layer.update("USER", {"id": a}, {"email": taken}),
            )

    def call(self, thread: int, op: dict[str, Any], fn: Any) -> bool:
        start = time.time()
        outcome, error, phase = "ok", None, None
        try:
            phase = fn().phase
        except (NotFound, DerivedRefused) as exc:
            outcome = "notfound" if isinstance(exc, NotFound) else "refused"
            error = str(exc)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            definite = any(m in error for m in CONSTRAINT_ERRORS)
            outcome = "failed" if definite else "unknown"
        op.update(start=start, end=time.time())
        self.record({**op, "thread": thread, "outcome": outcome, "error": error, "phase": phase})
        return outcome == "ok"

    def read_back(self, thread: int, write: dict[str, Any]) -> None:
        start = time.time()
        try:
            row = self.layer.get("USER", {"id": write["keys"][0]})
        except Exception:
            return  # a read that fails says nothing of what it would have read
        value = None if row is None else row.get(write["col"])
        self.record(
            {
                "op": "read",
                "keys": write["keys"],
                "col": write["col"],
                "value": value,
                "thread": thread,
                "start": start,
                "end": time.time(),
                "after": {"value": write["value"], "start": write["start"]},
                "outcome": "ok",
            }
        )


def email_of(key: int) -> str:
    """The email of a spare user (the stable users keep the sample's)."""
    return f"history{key}@example.com"


def user_row(key: int, value: str) -> dict[str, Any]:
    """A whole users row (a put sets every column): ``value`` as username and bio."""
    return {
        "id": key,
        "email": email_of(key),
        "username": value,
        "password_hash": hashlib.sha256(str(key).encode()).hexdigest(),
        "first_name": "Hist",
        "last_name": "Ory",
        "is_seller": 0,
        "status": "active",
        "preferences": None,
        "bio": value,
        "created_at": "2024-01-02 03:04:05",
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("contract")
    parser.add_argument("log")
    for name in ("--proc", "--threads", "--seed"):
        parser.add_argument(name, type=int, required=True)
    for name in ("--keys", "--spare", "--control"):
        parser.add_argument(name, required=True)
    args = parser.parse_args()
    layer = DualDatabase(load_contract(Path(args.contract)), Settings.from_env(), shadow_rate=0.0)
    layer.phases.ttl = 1.0
    worker = Worker(layer, args)
    threads = [threading.Thread(target=worker.run, args=(i,)) for i in range(args.threads)]
    for t in threads:
        t.start()
    pause, paused = Path(args.control) / "pause", Path(args.control) / f"paused.{args.proc}"
    while any(t.is_alive() for t in threads):
        with worker.lock:
            token = _text(pause)
            idle = token is not None and worker.busy == 0
        if idle and _text(paused) != token:
            paused.write_text(token or "")  # answers this pause (its token), not an earlier one
        time.sleep(0.02)  # poll: the control files
    layer.close()


def _text(path: Path) -> str | None:
    """The file's text, None when it is not there (the test removes the pause file when it
    pleases)."""
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


if __name__ == "__main__":
    main()
