#!/usr/bin/env bash
# `make up`: a local Prefect server, a process worker and the MLflow UI, all on 127.0.0.1, plus the
# `dreamer/daily` deployment. Every process is started in its own session; its PID goes to .run/<name>.pid
# so `make down` (scripts/down.sh) stops exactly these and nothing else.
#
# Afterwards a new shell (venv active) reaches the server through the Prefect profile `dreamer-local`
# (made active here, with PREFECT_API_URL set); `make down` re-activates the profile that was active before.
#
# Environment: PREFECT_PORT (4200), MLFLOW_PORT (5000), DREAMER_STATE_DIR (.run), PREFECT_HOME (Prefect's
# default), MLFLOW_TRACKING_URI (default: the local store sqlite:///<repo>/mlflow/mlflow.db); the worker,
# hence every flow run, also inherits DREAMER_DB, DREAMER_BYBIT_URL and DREAMER_RUNS_DIR.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BIN="${BIN:-$ROOT/.venv/bin}"
STATE="${DREAMER_STATE_DIR:-$ROOT/.run}"  # PIDs, logs, the previous Prefect profile
PREFECT_PORT="${PREFECT_PORT:-4200}"
MLFLOW_PORT="${MLFLOW_PORT:-5000}"
POOL="dreamer"              # must match work_pool.name in prefect.yaml
PROFILE="dreamer-local"
API_URL="http://127.0.0.1:${PREFECT_PORT}/api"
UI_URL="http://127.0.0.1:${MLFLOW_PORT}"
TRACKING_URI="${MLFLOW_TRACKING_URI:-sqlite:///${ROOT}/mlflow/mlflow.db}"
PROCESSES=(prefect-server prefect-worker mlflow-ui)

die() { echo "make up: $*" >&2; exit 1; }

running() {  # running NAME: is the process recorded in .run/NAME.pid alive?
    local pid_file="$STATE/$1.pid"
    [[ -f "$pid_file" ]] && kill -0 "$(cat "$pid_file")" 2>/dev/null
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start() {  # start NAME COMMAND...: detached, in its own session (PGID == PID), logging to .run/NAME.log
    local name="$1"; shift
    setsid "$@" >"$STATE/$name.log" 2>&1 </dev/null &
    echo "$!" >"$STATE/$name.pid"
}

wait_for() {  # wait_for NAME URL: until URL answers, or the process dies, or 90 s pass
    local name="$1" url="$2"
    for _ in $(seq 1 90); do
        if "$BIN/python" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$url" \
            2>/dev/null; then
            return 0
        fi
        running "$name" || { tail -n 30 "$STATE/$name.log" >&2; die "$name exited; log: $STATE/$name.log"; }
        sleep 1
    done
    tail -n 30 "$STATE/$name.log" >&2
    die "$name did not answer on $url within 90 s; log: $STATE/$name.log"
}

[[ -x "$BIN/prefect" && -x "$BIN/mlflow" ]] || die "no virtualenv at $BIN: run 'make install' first"
mkdir -p "$STATE"

for name in "${PROCESSES[@]}"; do
    if running "$name"; then
        die "$name is already running (PID $(cat "$STATE/$name.pid")); run 'make down' first"
    fi
    rm -f "$STATE/$name.pid"
done
for port in "$PREFECT_PORT" "$MLFLOW_PORT"; do
    if port_in_use "$port"; then
        die "port $port on 127.0.0.1 is taken; free it or set PREFECT_PORT / MLFLOW_PORT"
    fi
done
# From here on, a failure (including `die`) stops whatever this script already started.
rollback() {
    local status=$?
    if [[ $status -ne 0 ]]; then
        echo "make up: failed; stopping what was started" >&2
        bash "$ROOT/scripts/down.sh" >&2 || true
    fi
    exit "$status"
}
trap rollback EXIT

echo "Starting the Prefect server on $API_URL"
start prefect-server "$BIN/prefect" server start --host 127.0.0.1 --port "$PREFECT_PORT"

if [[ "$TRACKING_URI" == sqlite:* ]]; then
    artifacts="$(dirname "${TRACKING_URI#sqlite:///}")/artifacts"
    mkdir -p "$artifacts"
    echo "Starting the MLflow UI on $UI_URL (store: $TRACKING_URI)"
    start mlflow-ui "$BIN/mlflow" server --backend-store-uri "$TRACKING_URI" \
        --default-artifact-root "file://$artifacts" --no-serve-artifacts \
        --host 127.0.0.1 --port "$MLFLOW_PORT" --workers 1
else
    echo "MLFLOW_TRACKING_URI=$TRACKING_URI is not a local store: not starting an MLflow UI"
    UI_URL="${TRACKING_URI}"
fi

wait_for prefect-server "$API_URL/health"
export PREFECT_API_URL="$API_URL"

# The Prefect profile a new shell uses: remember the active one, then switch to ours.
previous_profile="$("$BIN/python" -c 'from prefect.settings import load_profiles; print(load_profiles().active_name or "")')"
if [[ "$previous_profile" != "$PROFILE" ]]; then
    echo "$previous_profile" >"$STATE/previous-prefect-profile"
fi
"$BIN/prefect" profile create "$PROFILE" >/dev/null 2>&1 || true
"$BIN/prefect" --profile "$PROFILE" config set "PREFECT_API_URL=$API_URL" >/dev/null
"$BIN/prefect" profile use "$PROFILE" >/dev/null

if ! "$BIN/prefect" work-pool inspect "$POOL" >/dev/null 2>&1; then
    "$BIN/prefect" work-pool create "$POOL" --type process >/dev/null
fi
echo "Deploying dreamer/daily from prefect.yaml"
"$BIN/prefect" --no-prompt deploy --name daily >"$STATE/deploy.log" 2>&1 \
    || { cat "$STATE/deploy.log" >&2; die "prefect deploy failed"; }

echo "Starting a process worker on pool '$POOL'"
MLFLOW_TRACKING_URI="$TRACKING_URI" DREAMER_MLFLOW_UI="$UI_URL" \
    start prefect-worker "$BIN/prefect" worker start --pool "$POOL" --type process --name "dreamer-local-worker"

if [[ -f "$STATE/mlflow-ui.pid" ]]; then
    wait_for mlflow-ui "$UI_URL/health"
fi
running prefect-worker || { tail -n 30 "$STATE/prefect-worker.log" >&2; die "the worker exited"; }

cat <<EOF

Up. Prefect UI: http://127.0.0.1:${PREFECT_PORT}   MLflow UI: ${UI_URL}
Prefect profile '${PROFILE}' is active (PREFECT_API_URL=${API_URL}); logs and PIDs are in .run/.

  prefect deployment run dreamer/daily                          # the scheduled job, now
  prefect deployment run dreamer/daily --param source=sample --param config=demo

Stop everything with 'make down'.
EOF
