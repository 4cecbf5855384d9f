#!/usr/bin/env bash
# `make cluster`: Airflow with the CeleryExecutor on this machine, the shape of docker-compose.yml:
# PostgreSQL (metadata) and Redis (broker), installed (apt) and started when absent, reused with a
# database and a Redis db number of their own when they already run; then api-server, scheduler,
# dag-processor, triggerer and two Celery workers (worker1@<host>, worker2@<host>), in the
# background, pid files and logs in $CUTOVER_CLUSTER_HOME/run. Idempotent: what runs is left alone.
# Settings: scripts/cluster.env. `make cluster-down` (scripts/cluster-down.sh) stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/cluster.env
export PATH="$PWD/.venv/bin:$PATH"
RUN="$CUTOVER_CLUSTER_HOME/run"
SUDO=()
[[ $EUID -eq 0 ]] || SUDO=(sudo -n)

log() { printf '[cluster] %s\n' "$*"; }
die() { printf '[cluster] error: %s\n' "$*" >&2; exit 1; }
is_local() { [[ $1 == 127.0.0.1 || $1 == localhost || $1 == ::1 ]]; }
wait_for() {  # what, seconds, command...
  local what=$1 seconds=$2
  shift 2
  for ((i = 0; i < seconds * 2; i++)); do
    "$@" && return 0
    sleep 0.5
  done
  die "$what did not come up within ${seconds}s"
}
apt_install() {
  log "installing Debian packages: $*"
  export DEBIAN_FRONTEND=noninteractive
  "${SUDO[@]}" apt-get update -qq
  "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

[[ $CUTOVER_CLUSTER_DB =~ ^[a-z_][a-z0-9_]{0,62}$ ]] \
  || die "CUTOVER_CLUSTER_DB must be a plain lower-case name, not '$CUTOVER_CLUSTER_DB'"
[[ $CUTOVER_CLUSTER_REDIS_DB =~ ^[0-9]+$ ]] \
  || die "CUTOVER_CLUSTER_REDIS_DB must be a number, not '$CUTOVER_CLUSTER_REDIS_DB'"

# --- PostgreSQL: running, with the role and the database ---------------------------------------
pg_host=$CUTOVER_CLUSTER_PG_HOST pg_port=$CUTOVER_CLUSTER_PG_PORT
if ! cutover_port_open "$pg_host" "$pg_port"; then
  is_local "$pg_host" || die "PostgreSQL at $pg_host:$pg_port does not answer"
  command -v pg_ctlcluster >/dev/null || apt_install postgresql
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  [[ -n $version ]] || die "no PostgreSQL cluster in /etc/postgresql"
  log "starting PostgreSQL $version"
  "${SUDO[@]}" pg_ctlcluster --skip-systemctl-redirect "$version" main start
  wait_for "PostgreSQL on $pg_host:$pg_port" 60 cutover_port_open "$pg_host" "$pg_port"
fi
user=$CUTOVER_CLUSTER_PG_USER
if [[ -z $(cutover_pg_admin -c "SELECT 1 FROM pg_roles WHERE rolname = '$user'") ]]; then
  log "creating the PostgreSQL role $user"
  cutover_pg_admin -c "CREATE ROLE \"$user\" LOGIN PASSWORD '$CUTOVER_CLUSTER_PG_PASSWORD'"
fi
if [[ -z $(cutover_pg_admin -c "SELECT 1 FROM pg_database WHERE datname = '$CUTOVER_CLUSTER_DB'") ]]; then
  log "creating the PostgreSQL database $CUTOVER_CLUSTER_DB"
  cutover_pg_admin -c "CREATE DATABASE \"$CUTOVER_CLUSTER_DB\" OWNER \"$user\""
fi

# --- Redis: running (the cluster uses its db number $CUTOVER_CLUSTER_REDIS_DB only) --------------
redis_host=$CUTOVER_CLUSTER_REDIS_HOST redis_port=$CUTOVER_CLUSTER_REDIS_PORT
if ! cutover_port_open "$redis_host" "$redis_port"; then
  is_local "$redis_host" || die "Redis at $redis_host:$redis_port does not answer"
  command -v redis-server >/dev/null || apt_install redis-server
  log "starting Redis on port $redis_port"
  "${SUDO[@]}" mkdir -p /var/lib/redis /var/log/redis
  "${SUDO[@]}" redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$redis_port" --save "" \
    --appendonly no --dir /var/lib/redis --logfile /var/log/redis/redis-server.log
  wait_for "Redis on $redis_host:$redis_port" 30 cutover_port_open "$redis_host" "$redis_port"
fi

# --- Airflow --------------------------------------------------------------------------------
mkdir -p "$RUN"
cutover_airflow_login
.venv/bin/cutover up   # MariaDB and DynamoDB Local for the DAGs' tasks, as `make airflow`

running() {  # component: its pid file names a live process of ours, the leader of its session
  local pid
  pid=$(cat "$RUN/$1.pid" 2>/dev/null) || return 1
  [[ -n $pid ]] && [[ $(ps -o sid= -p "$pid" 2>/dev/null | tr -d ' ') == "$pid" ]]
}
all_running=1
for name in "${CUTOVER_CLUSTER_COMPONENTS[@]}"; do running "$name" || all_running=0; done

if ((!all_running)); then
  log "airflow db migrate ($CUTOVER_CLUSTER_DB)"
  airflow db migrate >"$RUN/db-migrate.log" 2>&1 || {
    tail -n 30 "$RUN/db-migrate.log" >&2
    die "airflow db migrate failed (log: $RUN/db-migrate.log)"
  }
  cutover_resume_dags
fi

# Task instances record the worker that ran them as their hostname: worker1@<host> (the Celery
# node name). Both workers share this machine's name, so each gets Airflow's [core]
# hostname_callable pointed at this little module, which adds its own name.
mkdir -p "$CUTOVER_CLUSTER_HOME/python"
cat >"$CUTOVER_CLUSTER_HOME/python/cutover_cluster_hostname.py" <<'EOF'
"""Written by scripts/cluster.sh: [core] hostname_callable of the `make cluster` workers."""

import os
import socket


def hostname() -> str:
    return f"{os.environ['CUTOVER_CLUSTER_WORKER']}@{socket.gethostname()}"
EOF

start() {  # component
  local name=$1 extra=()
  if running "$name"; then
    log "$name already running (pid $(cat "$RUN/$name.pid"))"
    return
  fi
  # One machine, one log folder: the API server reads task logs from disk, so neither the
  # workers nor the triggerer serve them (their ports would clash between the two workers).
  case $name in
    worker*)
      extra=(env "CUTOVER_CLUSTER_WORKER=$name"
        "AIRFLOW__CORE__HOSTNAME_CALLABLE=cutover_cluster_hostname.hostname"
        "PYTHONPATH=$CUTOVER_CLUSTER_HOME/python${PYTHONPATH:+:$PYTHONPATH}") ;;
  esac
  local args
  read -r -a args <<<"$(cutover_cluster_command "$name")"
  case $name in worker* | triggerer) args+=(--skip-serve-logs) ;; esac
  [[ -f $RUN/$name.log ]] && mv "$RUN/$name.log" "$RUN/$name.log.1"   # the previous run's
  # setsid: each component leads its own session, which cluster-down.sh stops as a whole
  setsid "${extra[@]}" airflow "${args[@]}" >"$RUN/$name.log" 2>&1 </dev/null &
  echo $! >"$RUN/$name.pid"
  log "started $name (pid $!, log $RUN/$name.log)"
}
if ! running api-server && cutover_port_open 127.0.0.1 "$CUTOVER_CLUSTER_PORT"; then
  die "port $CUTOVER_CLUSTER_PORT is taken (make airflow?): stop that or set CUTOVER_CLUSTER_PORT"
fi
for name in "${CUTOVER_CLUSTER_COMPONENTS[@]}"; do start "$name"; done

alive() {  # every component still runs; else show the log of the one that died
  local name
  for name in "${CUTOVER_CLUSTER_COMPONENTS[@]}"; do
    running "$name" && continue
    tail -n 40 "$RUN/$name.log" >&2
    die "$name exited (log: $RUN/$name.log; make cluster-down stops the others)"
  done
}
api_up() {
  alive
  curl -fsS -o /dev/null "http://127.0.0.1:$CUTOVER_CLUSTER_PORT/api/v2/monitor/health" 2>/dev/null
}
worker_ready() { alive; grep -q "$1@.* ready" "$RUN/$1.log"; }
wait_for "the API server on port $CUTOVER_CLUSTER_PORT" 240 api_up
for name in "${CUTOVER_CLUSTER_COMPONENTS[@]}"; do
  [[ $name == worker* ]] && wait_for "Celery $name" 240 worker_ready "$name"
done

echo "Airflow UI: http://127.0.0.1:${CUTOVER_CLUSTER_PORT}  login: admin / ${CUTOVER_AIRFLOW_PASSWORD}"
echo "CeleryExecutor: metadata in PostgreSQL $CUTOVER_CLUSTER_DB, broker Redis db $CUTOVER_CLUSTER_REDIS_DB,"
echo "workers worker1@$(hostname) and worker2@$(hostname); pid files and logs in $RUN"
echo "(make cluster-down stops it)"
