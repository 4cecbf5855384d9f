#!/usr/bin/env bash
# `make cluster-down`: stops what scripts/cluster.sh started (by its pid files: each component
# with every process of its session), never PostgreSQL nor Redis, which other programs may use.
# --purge also drops the cluster's PostgreSQL database and empties its Redis db number
# (the end-to-end test's own cluster goes that way); the metadata stays otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/cluster.env
RUN="$CUTOVER_CLUSTER_HOME/run"
TIMEOUT=${CUTOVER_CLUSTER_STOP_TIMEOUT:-30}   # seconds of warm shutdown before SIGKILL
purge=0
case "${1:-}" in
  "") ;;
  --purge) purge=1 ;;
  *) echo "usage: $0 [--purge]" >&2; exit 2 ;;
esac

log() { printf '[cluster-down] %s\n' "$*"; }
session() { ps -e -o pid=,sid= | awk -v sid="$1" '$2 == sid { print $1 }'; }

stopped=()
stop() {  # components: SIGTERM to each one's session, SIGKILL to what still runs after TIMEOUT
  local name pid pids entry left i stopping=()
  for name in "$@"; do
    [[ -f $RUN/$name.pid ]] || continue
    pid=$(cat "$RUN/$name.pid")
    # the processes of the session cluster.sh started (its id is the pid of the leader)
    if [[ -n $pid ]] && [[ -n $(session "$pid") ]]; then
      log "stopping $name (session $pid)"
      # shellcheck disable=SC2046
      kill -TERM $(session "$pid") 2>/dev/null || true
      stopping+=("$name:$pid")
      stopped+=("$name")
    fi
    rm -f "$RUN/$name.pid"
  done
  for ((i = 0; i < TIMEOUT * 2; i++)); do
    left=0
    for entry in "${stopping[@]}"; do [[ -n $(session "${entry#*:}") ]] && left=1; done
    ((left)) || return 0
    sleep 0.5
  done
  for entry in "${stopping[@]}"; do
    pids=$(session "${entry#*:}")
    if [[ -n $pids ]]; then
      log "killing ${entry%%:*} (still running after ${TIMEOUT}s)"
      # shellcheck disable=SC2086
      kill -KILL $pids 2>/dev/null || true
    fi
  done
}

# The API server last: the tasks the workers finish (warm shutdown) report to it.
others=()
for name in "${CUTOVER_CLUSTER_COMPONENTS[@]}"; do [[ $name == api-server ]] || others+=("$name"); done
stop "${others[@]}"
stop api-server

if ((purge)); then
  log "dropping the PostgreSQL database $CUTOVER_CLUSTER_DB"
  cutover_pg_admin -c "DROP DATABASE IF EXISTS \"$CUTOVER_CLUSTER_DB\" WITH (FORCE)"
  log "emptying Redis db $CUTOVER_CLUSTER_REDIS_DB"
  .venv/bin/python -c 'import redis, sys; redis.Redis(host=sys.argv[1], port=int(sys.argv[2]),
db=int(sys.argv[3])).flushdb()' "$CUTOVER_CLUSTER_REDIS_HOST" "$CUTOVER_CLUSTER_REDIS_PORT" \
    "$CUTOVER_CLUSTER_REDIS_DB"
fi
if ((${#stopped[@]})); then log "stopped: ${stopped[*]}"; else log "nothing was running"; fi
