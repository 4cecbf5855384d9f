"""An auth manager for the panel's tests: Airflow's simple auth manager, except that the
user ``outsider`` has no access at all to DAGs whose id starts with
``CUTOVER_TEST_DENIED_DAGS`` (a prefix). The simple auth manager grants by role only; real
deployments scope DAGs per user with a richer manager (FAB, Keycloak), and this stands in
for one so the panel's per-contract checks are exercised by Airflow itself."""

from __future__ import annotations

import os
from typing import Any

from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager


class ScopedSimpleAuthManager(SimpleAuthManager):
    def is_authorized_dag(self, *, method: Any, user: Any, access_entity: Any = None,
                          details: Any = None) -> bool:  # fmt: skip
        denied = os.environ.get("CUTOVER_TEST_DENIED_DAGS")
        dag_id = getattr(details, "id", None) or ""
        if denied and user.get_name() == "outsider" and dag_id.startswith(denied):
            return False
        return super().is_authorized_dag(
            method=method, user=user, access_entity=access_entity, details=details
        )
