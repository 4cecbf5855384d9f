"""Run a contract's DAG through Airflow in this process (`dag.test()`): what `make demo` and
the end-to-end tests use, against the embedded SQLite metadata database.

`dag.test()` also registers every DAG of the folder in that database. Registered paused (the
default of ``[core] dags_are_paused_at_creation``), they would stay paused when `make airflow`
later serves the same database: no nightly reconcile, no validate after a backfill, REST
triggered runs left queued. So the DAGs are created unpaused here, and :func:`unpause` (also
called by `scripts/airflow.sh` before the scheduler starts) resumes any left paused.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from cutover.errors import CutoverError
from cutover.settings import LOCAL_DIR, PROJECT_ROOT

TAG = "cutover"  # every contract DAG carries it (cutover.dags.factory)


class DagRunFailed(CutoverError):
    """A DAG run that did not succeed; ``failed_tasks`` names its failed task instances
    (``task_id`` or ``task_id[map_index]``)."""

    def __init__(self, dag_id: str, state: str, failed_tasks: list[str]) -> None:
        self.dag_id = dag_id
        self.state = state
        self.failed_tasks = failed_tasks
        tasks = ", ".join(failed_tasks) or "none recorded"
        super().__init__(f"DAG run {dag_id} ended {state}; failed task(s): {tasks}")


def airflow_env() -> None:
    os.environ.setdefault("AIRFLOW_HOME", str(LOCAL_DIR / "airflow"))
    os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(PROJECT_ROOT / "dags"))
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    os.environ.setdefault("AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION", "False")


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


def unpause(tag: str = TAG) -> list[str]:
    """Resume every DAG of the metadata database tagged ``tag``; returns the ids resumed."""
    from airflow.models.dag import DagModel, DagTag
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        paused = session.scalars(
            select(DagModel).where(
                DagModel.is_paused.is_(True), DagModel.tags.any(DagTag.name == tag)
            )
        ).all()
        for dag in paused:
            dag.is_paused = False
        return sorted(dag.dag_id for dag in paused)


def failed_tasks(run: Any) -> list[str]:
    """The failed task instances of a DagRun, as ``task_id`` or ``task_id[map_index]``."""
    from airflow.utils.state import TaskInstanceState

    out = []
    for ti in run.get_task_instances(
        state=[TaskInstanceState.FAILED, TaskInstanceState.UPSTREAM_FAILED]
    ):
        if ti.state != TaskInstanceState.FAILED:
            continue
        out.append(ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]")
    return sorted(out)


def run_dag(dag_id: str, conf: dict[str, Any] | None = None) -> Any:
    """Parse the DAG folder and run ``dag_id`` to the end; returns the DagRun. Raises
    :class:`DagRunFailed` when the run does not succeed."""
    ensure_metadata_db()
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    if bag.import_errors:
        raise CutoverError(f"DAG import errors: {bag.import_errors}")
    if dag_id not in bag.dags:
        raise CutoverError(f"no DAG {dag_id!r}; known: {sorted(bag.dags)}")
    run = bag.dags[dag_id].test(run_conf=conf or {})
    unpause()  # dag.test() registered the folder's DAGs; leave none of ours paused
    if str(run.state) != "success":
        raise DagRunFailed(dag_id, str(run.state), failed_tasks(run))
    return run


def main() -> None:
    """``python -m cutover.dags.local_run unpause``: what `make airflow` runs before it
    starts the scheduler (the metadata database migrated first when it is new)."""
    if sys.argv[1:] != ["unpause"]:
        sys.exit("usage: python -m cutover.dags.local_run unpause")
    ensure_metadata_db()
    resumed = unpause()
    print(f"unpaused: {', '.join(resumed)}" if resumed else f"no paused DAG tagged {TAG!r}")


if __name__ == "__main__":
    main()
