#!/usr/bin/env bash
# `make airflow`: Airflow standalone (SQLite metadata, LocalExecutor) with this project's DAGs
# and plugins, connections for the local services, and a known login.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/local.env
source scripts/airflow.env   # login, DAGs unpaused, port, connections (shared with make cluster)
export PATH="$PWD/.venv/bin:$PATH"
cutover_airflow_login
.venv/bin/cutover up
cutover_resume_dags
echo "Airflow UI: http://127.0.0.1:${AIRFLOW__API__PORT}  login: admin / ${CUTOVER_AIRFLOW_PASSWORD}"
echo "(Ctrl-C stops it; logs and metadata live in $AIRFLOW_HOME)"
exec .venv/bin/airflow standalone
