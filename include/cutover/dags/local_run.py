"""Run a contract's DAG through Airflow in this process (`dag.test()`): what `make demo` and
the end-to-end tests use, against the embedded SQLite metadata database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from cutover.errors import CutoverError
from cutover.settings import LOCAL_DIR, PROJECT_ROOT


def airflow_env() -> None:
    os.environ.setdefault("AIRFLOW_HOME", str(LOCAL_DIR / "airflow"))
    os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(PROJECT_ROOT / "dags"))
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")


def ensure_metadata_db() -> None:
    """`airflow db migrate` once per AIRFLOW_HOME (it is idempotent, but takes seconds)."""
    airflow_env()
    stamp = Path(os.environ["AIRFLOW_HOME"]) / ".cutover-migrated"
    if stamp.exists():
        return
    airflow = Path(sys.executable).with_name("airflow")
    result = subprocess.run([str(airflow), "db", "migrate"], capture_output=True, text=True)
    if result.returncode != 0:
        raise CutoverError(f"airflow db migrate failed: {result.stderr[-2000:]}")
    stamp.write_text("ok\n")


def run_dag(dag_id: str, conf: dict[str, Any] | None = None) -> Any:
    """Parse the DAG folder and run ``dag_id`` to the end; returns the DagRun."""
    ensure_metadata_db()
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    if bag.import_errors:
        raise CutoverError(f"DAG import errors: {bag.import_errors}")
    if dag_id not in bag.dags:
        raise CutoverError(f"no DAG {dag_id!r}; known: {sorted(bag.dags)}")
    run = bag.dags[dag_id].test(run_conf=conf or {})
    if str(run.state) != "success":
        raise CutoverError(f"DAG run {dag_id} ended {run.state}; see the task logs above")
    return run
