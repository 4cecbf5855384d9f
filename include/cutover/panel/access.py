"""Who may see and do what in the panel, decided by Airflow's own auth manager: the user
comes from Airflow's JWT (bearer token or the UI's session cookie) through
``airflow.api_fastapi.core_api.security.get_user`` (no token: 401; a bad one: 403), and each
contract is guarded by its DAGs: reading needs read access to all of them, an action needs
edit access to them and the right to trigger the DAG it runs."""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException, status

from cutover.panel.overview import ContractEntry


def _manager() -> Any:
    from airflow.api_fastapi.app import get_auth_manager

    return get_auth_manager()


def _dag_requests(dag_ids: list[str], method: str, entity: Any = None) -> list[dict[str, Any]]:
    from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails

    return [
        {"method": method, "access_entity": entity, "details": DagDetails(id=d)} for d in dag_ids
    ]


def can_read(user: Any, entry: ContractEntry) -> bool:
    return bool(_manager().batch_is_authorized_dag(_dag_requests(entry.dag_ids, "GET"), user=user))


def can_act(user: Any, entry: ContractEntry, dag_id: str) -> bool:
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity

    requests = _dag_requests(entry.dag_ids, "PUT") + _dag_requests(
        [dag_id], "POST", DagAccessEntity.RUN
    )
    return bool(_manager().batch_is_authorized_dag(requests, user=user))


def require_read(user: Any, entry: ContractEntry) -> None:
    if not can_read(user, entry):
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            f"no read access to the DAGs of contract {entry.name!r}")  # fmt: skip


def require_action(user: Any, entry: ContractEntry, dag_id: str) -> None:
    if not can_act(user, entry, dag_id):
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            f"triggering {dag_id} needs edit access to the DAGs of contract "
                            f"{entry.name!r}")  # fmt: skip


def user_name(user: Any) -> str:
    return str(user.get_name())
