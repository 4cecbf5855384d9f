"""What Airflow knows of a contract's DAGs, read and changed through Airflow's own models in
the API server's process: the last runs, the approvals waiting for an answer, pause state,
and new runs (the panel's actions trigger DAGs, they never call the stages directly)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from cutover.errors import CutoverError

RUNS_PER_DAG = 5


class TriggerRefused(CutoverError):
    """Airflow would not create the run (unknown DAG, bad parameters, run exists)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def run_link(dag_id: str, run_id: str) -> str:
    return f"/dags/{dag_id}/runs/{run_id}"


def approval_link(dag_id: str, run_id: str, task_id: str) -> str:
    """Airflow's own screen for answering a human-in-the-loop task."""
    return f"{run_link(dag_id, run_id)}/tasks/{task_id}/required_actions"


def last_runs(dag_ids: list[str], limit: int = RUNS_PER_DAG) -> dict[str, list[dict[str, Any]]]:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    out: dict[str, list[dict[str, Any]]] = {d: [] for d in dag_ids}
    with create_session() as session:
        for dag_id in dag_ids:
            runs = session.scalars(
                select(DagRun)
                .where(DagRun.dag_id == dag_id)
                .order_by(DagRun.run_after.desc())
                .limit(limit)
            )
            out[dag_id] = [
                {"run_id": r.run_id, "state": str(r.state), "run_after": _iso(r.run_after),
                 "start_date": _iso(r.start_date), "end_date": _iso(r.end_date),
                 "conf": r.conf or {}, "triggered_by": str(r.triggered_by or ""),
                 "triggering_user": r.triggering_user_name, "link": run_link(dag_id, r.run_id)}
                for r in runs
            ]  # fmt: skip
    return out


def pending_approvals(dag_id: str) -> list[dict[str, Any]]:
    """Approvals of ``dag_id`` that nobody has answered yet, oldest first."""
    from airflow.models.dagrun import DagRun
    from airflow.models.hitl import HITLDetail
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(HITLDetail, TaskInstance, DagRun)
            .join(TaskInstance, HITLDetail.ti_id == TaskInstance.id)
            .join(
                DagRun,
                (DagRun.dag_id == TaskInstance.dag_id) & (DagRun.run_id == TaskInstance.run_id),
            )
            .where(TaskInstance.dag_id == dag_id, HITLDetail.responded_at.is_(None))
            .order_by(HITLDetail.created_at)
        ).all()
        return [
            {"dag_id": ti.dag_id, "run_id": ti.run_id, "task_id": ti.task_id,
             "state": str(ti.state), "subject": h.subject, "body": h.body,
             "options": list(h.options or []), "created_at": _iso(h.created_at),
             "target_phase": (run.conf or {}).get("target_phase"),
             "link": approval_link(ti.dag_id, ti.run_id, ti.task_id)}
            for h, ti, run in rows
        ]  # fmt: skip


def paused(dag_ids: list[str]) -> dict[str, bool | None]:
    """Whether each DAG is paused (None when Airflow has not parsed it)."""
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        found = dict(
            session.execute(
                select(DagModel.dag_id, DagModel.is_paused).where(DagModel.dag_id.in_(dag_ids))
            ).all()
        )
    return {d: found.get(d) for d in dag_ids}


def trigger(dag_id: str, conf: dict[str, Any], user_name: str) -> dict[str, Any]:
    """A manual run of ``dag_id`` with ``conf``, recorded as triggered from the UI by
    ``user_name``; Airflow validates ``conf`` against the DAG's params."""
    from airflow.api.common.trigger_dag import trigger_dag
    from airflow.exceptions import DagNotFound, DagRunAlreadyExists
    from airflow.utils.types import DagRunTriggeredByType

    try:
        run = trigger_dag(
            dag_id,
            triggered_by=DagRunTriggeredByType.UI,
            triggering_user_name=user_name,
            conf=conf,
        )
    except DagNotFound:
        raise TriggerRefused(f"Airflow has no DAG {dag_id!r} (not parsed yet?)", 404) from None
    except DagRunAlreadyExists as exc:
        raise TriggerRefused(f"a run of {dag_id} already exists: {exc}", 409) from None
    except ValueError as exc:  # Airflow's ParamValidationError is one
        raise TriggerRefused(f"{dag_id} refused the parameters: {exc}", 400) from None
    if run is None:
        raise TriggerRefused(f"Airflow created no run of {dag_id}", 409)
    return {"dag_id": dag_id, "run_id": run.run_id, "state": str(run.state),
            "link": run_link(dag_id, run.run_id)}  # fmt: skip
