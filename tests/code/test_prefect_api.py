"""Code tier: which Prefect server a `dreamer run` reports to, and the servers a killed run left behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from dreamer.orchestration.prefect_api import SERVER_COMMAND, chosen_api_url, stop_orphaned_servers

MAKE_UP = "http://127.0.0.1:4200/api"
OTHER = "http://10.0.0.5:4200/api"


def test_a_profile_alone_does_not_choose_the_server() -> None:
    """`make up` makes its profile active; a run must not depend on a server that `make down` stops."""
    assert chosen_api_url(None, {}, MAKE_UP, MAKE_UP) is None  # the run's own temporary server
    assert chosen_api_url(None, {}, None, None) is None
    assert chosen_api_url(None, {"DREAMER_USE_PREFECT_PROFILE": "1"}, MAKE_UP, MAKE_UP) == MAKE_UP


def test_a_server_asked_for_is_used() -> None:
    assert chosen_api_url(OTHER, {}, MAKE_UP, MAKE_UP) == OTHER  # --prefect-api-url
    assert chosen_api_url(None, {"PREFECT_API_URL": MAKE_UP}, MAKE_UP, MAKE_UP) == MAKE_UP  # the environment
    assert chosen_api_url(None, {}, OTHER, MAKE_UP) == OTHER  # in-process settings (e.g. Prefect's test harness)


def test_servers_left_by_a_killed_run_are_stopped_by_the_next_one(tmp_path: Path) -> None:
    def sleeper(*marker: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", *marker])

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a run killed with -9: its pid is free
    orphan, stranger, kept = sleeper(SERVER_COMMAND), sleeper("not-a-server"), sleeper(SERVER_COMMAND)
    try:
        records = tmp_path / "servers"
        records.mkdir()
        for server, run_pid in ((orphan, gone.pid), (stranger, gone.pid), (kept, os.getpid())):
            (records / f"{server.pid}.json").write_text(json.dumps({"run_pid": run_pid, "server_pid": server.pid}))
        (records / "broken.json").write_text("{")

        assert stop_orphaned_servers(records) == [orphan.pid]
        assert orphan.wait(timeout=10) != 0  # terminated
        assert stranger.poll() is None and kept.poll() is None  # a recycled pid, and a live run's server
        assert sorted(p.name for p in records.iterdir()) == [f"{kept.pid}.json"]
    finally:
        for process in (orphan, stranger, kept):
            process.kill()
            process.wait()
