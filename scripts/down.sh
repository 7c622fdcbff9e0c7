#!/usr/bin/env bash
# `make down`: stop exactly the processes `make up` started (their PIDs are in .run/*.pid), each with its
# whole process group (the server's and the worker's children included), and re-activate the Prefect
# profile that was active before `make up`. Safe to run twice; a stale PID file is just removed.
#
# Flow runs in progress that the worker started run in sessions of their own, out of reach of the worker's
# process group: they are cancelled through the Prefect API first (while the server is up, so that they end
# Cancelled, not Running for ever), and whatever is left of them is stopped with the worker.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${BIN:-$ROOT/.venv/bin}"
STATE="${DREAMER_STATE_DIR:-$ROOT/.run}"  # PIDs, logs, the previous Prefect profile
API_URL="http://127.0.0.1:${PREFECT_PORT:-4200}/api"
POOL="dreamer"  # must match work_pool.name in prefect.yaml

ours() {  # ours NAME EXPECTED: print the PID in .run/NAME.pid if it is still the process we started
    local pid_file="$STATE/$1.pid" pid
    [[ -f "$pid_file" ]] || return 1
    pid="$(cat "$pid_file")"
    # A PID is only ours if it still leads its own process group and runs what we started (PIDs get reused).
    kill -0 "$pid" 2>/dev/null \
        && [[ "$(ps -o pgid= -p "$pid" | tr -d ' ')" == "$pid" ]] \
        && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$2" \
        && echo "$pid"
}

descendants() {  # descendants PID: the PIDs of every process below PID
    local child
    for child in $(ps -o pid= --ppid "$1" 2>/dev/null); do
        echo "$child"
        descendants "$child"
    done
}

stop() {  # stop NAME EXPECTED: TERM, then KILL after 10 s, the process group recorded in .run/NAME.pid
    local name="$1" expected="$2" pid_file="$STATE/$1.pid" pid
    [[ -f "$pid_file" ]] || return 0
    if ! pid="$(ours "$name" "$expected")"; then
        echo "$name: not running (stale PID file removed)"
        rm -f "$pid_file"
        return 0
    fi
    echo "Stopping $name (process group $pid)"
    kill -TERM -- "-$pid" 2>/dev/null
    for _ in $(seq 1 20); do
        kill -0 -- "-$pid" 2>/dev/null || { rm -f "$pid_file"; return 0; }
        sleep 0.5
    done
    # A Prefect worker waits for its flow runs after the first signal (and sometimes hangs): a run in
    # progress is killed with it, and Prefect marks it Crashed.
    echo "$name did not stop within 10 s: killing it"
    kill -KILL -- "-$pid" 2>/dev/null
    rm -f "$pid_file"
}

cancel_flow_runs() {  # cancel the pool's Pending and Running flow runs; wait up to 30 s for them to end
    PREFECT_API_URL="$API_URL" "$BIN/python" - "$POOL" <<'PY'
import sys
import time

from prefect import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType, WorkPoolFilter, WorkPoolFilterName,
)
from prefect.client.schemas.objects import StateType
from prefect.states import Cancelling

with get_client(sync_client=True) as client:
    active = client.read_flow_runs(
        flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PENDING, StateType.RUNNING]))
        ),
        work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[sys.argv[1]])),
    )
    for run in active:
        print(f"Cancelling flow run '{run.name}' ({run.id}), started by the worker")
        client.set_flow_run_state(run.id, Cancelling(), force=True)
    waiting, deadline = {run.id for run in active}, time.monotonic() + 30
    while waiting and time.monotonic() < deadline:
        time.sleep(1)
        waiting = {run_id for run_id in waiting if not client.read_flow_run(run_id).state.is_final()}
    for run_id in waiting:
        print(f"flow run {run_id} did not end within 30 s: its process is stopped below")
PY
}

# The worker first, so it picks up no new run while the server goes away; its flow runs before it.
flow_processes=()
if worker="$(ours prefect-worker "worker start")"; then
    if ours prefect-server "server start" >/dev/null; then
        cancel_flow_runs || echo "could not cancel the flow runs through $API_URL: their processes are stopped below"
    fi
    mapfile -t flow_processes < <(descendants "$worker")
fi
stop prefect-worker "worker start"
for pid in "${flow_processes[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
        echo "Stopping flow-run process $pid, left by the worker"
        kill -TERM "$pid" 2>/dev/null
    fi
done
for _ in $(seq 1 20); do
    alive=0
    for pid in "${flow_processes[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [[ $alive == 0 ]] && break
    sleep 0.5
done
for pid in "${flow_processes[@]}"; do kill -KILL "$pid" 2>/dev/null && echo "Killed flow-run process $pid"; done
stop prefect-server "server start"
stop mlflow-ui "mlflow"

if [[ -f "$STATE/previous-prefect-profile" ]]; then
    previous="$(cat "$STATE/previous-prefect-profile")"
    if [[ -n "$previous" && -x "$BIN/python" ]]; then
        "$BIN/python" - "$previous" <<'PY' && echo "Prefect profile '$previous' is active again"
import sys

from prefect.settings import load_profiles, save_profiles

profiles = load_profiles()
if sys.argv[1] in profiles.names:
    profiles.set_active(sys.argv[1])
    save_profiles(profiles)
PY
    fi
    rm -f "$STATE/previous-prefect-profile"
fi
