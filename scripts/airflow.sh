#!/usr/bin/env bash
# `make airflow`: Airflow standalone (SQLite metadata, LocalExecutor) with this project's DAGs
# and plugins, connections for the local services, and a known login.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/local.env
export PATH="$PWD/.venv/bin:$PATH"
mkdir -p "$AIRFLOW_HOME"
PASSWORD=${CUTOVER_AIRFLOW_PASSWORD:-cutover}
printf '{"admin": "%s"}\n' "$PASSWORD" > "$AIRFLOW_HOME/passwords.json"
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="admin:admin"
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE="$AIRFLOW_HOME/passwords.json"
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="${AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION-False}"
export AIRFLOW__CORE__PARALLELISM="${AIRFLOW__CORE__PARALLELISM-8}"
export AIRFLOW__API__PORT="${AIRFLOW__API__PORT-8080}"
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="http://127.0.0.1:${AIRFLOW__API__PORT}/execution/"
# The same services as the CLI, also visible as Airflow connections in the UI.
export AIRFLOW_CONN_CUTOVER_MYSQL="$CUTOVER_MYSQL_URL"
export AIRFLOW_CONN_CUTOVER_DYNAMODB="{\"conn_type\": \"aws\", \"extra\": {${CUTOVER_DYNAMODB_ENDPOINT:+\"endpoint_url\": \"${CUTOVER_DYNAMODB_ENDPOINT}\", }\"region_name\": \"${AWS_DEFAULT_REGION}\"}}"
.venv/bin/cutover up
# DAGs registered paused (by an older `make demo`'s dag.test(), or by hand) would never run on
# their schedule nor after their Asset: resume those tagged `cutover` before the scheduler starts
# (new ones are created unpaused). AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=True keeps them.
if [[ "${AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION,,}" == "false" ]]; then
  .venv/bin/python -m cutover.dags.local_run unpause \
    || echo "warning: could not resume the paused cutover DAGs (see above); unpause them in the UI" >&2
fi
echo "Airflow UI: http://127.0.0.1:${AIRFLOW__API__PORT}  login: admin / ${PASSWORD}"
echo "(Ctrl-C stops it; logs and metadata live in $AIRFLOW_HOME)"
exec .venv/bin/airflow standalone
