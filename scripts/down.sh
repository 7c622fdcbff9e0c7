#!/usr/bin/env bash
# `make down`: stop exactly the processes `make up` started (their PIDs are in .run/*.pid), each with its
# whole process group (the server's and the worker's children included), and re-activate the Prefect
# profile that was active before `make up`. Safe to run twice; a stale PID file is just removed.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${BIN:-$ROOT/.venv/bin}"
STATE="${DREAMER_STATE_DIR:-$ROOT/.run}"  # PIDs, logs, the previous Prefect profile

stop() {  # stop NAME EXPECTED: TERM, then KILL after 10 s, the process group recorded in .run/NAME.pid
    local name="$1" expected="$2" pid_file="$STATE/$1.pid" pid
    [[ -f "$pid_file" ]] || return 0
    pid="$(cat "$pid_file")"
    # A PID is only ours if it still leads its own process group and runs what we started (PIDs get reused).
    if ! kill -0 "$pid" 2>/dev/null \
        || [[ "$(ps -o pgid= -p "$pid" | tr -d ' ')" != "$pid" ]] \
        || ! tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$expected"; then
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

# The worker first, so it picks up no new run while the server goes away.
stop prefect-worker "worker start"
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
