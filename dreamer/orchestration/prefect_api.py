"""The Prefect server a `dreamer run` reports to, and the promise that it leaves nothing running behind.

A run uses, in this order: the URL given with `--prefect-api-url`; a URL set for this process
(`$PREFECT_API_URL`, or in-process settings such as Prefect's test harness); the active Prefect profile's URL
only with `DREAMER_USE_PREFECT_PROFILE=1`; otherwise a temporary server of its own. A profile's URL alone is
not followed because `make up` makes its profile active: a run started then would report to that server and,
once `make down` stopped it, hang retrying its API after the work was done.

The temporary server is a subprocess, stopped when the run ends however it ends: completed, failed,
interrupted (Ctrl-C) or terminated (SIGTERM, turned into an exit that runs this clean-up). A kill -9 of the
run gives it no chance to: the server goes on listening. So every temporary server is recorded (run pid,
server pid) under `$PREFECT_HOME/dreamer-servers/` while it runs, and the next run that starts one first
stops the servers whose run is gone (`stop_orphaned_servers`): a rerun completes what a crash left.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

API_URL_ENV = "PREFECT_API_URL"
USE_PROFILE_ENV = "DREAMER_USE_PREFECT_PROFILE"
SERVER_RECORDS = "dreamer-servers"  # under PREFECT_HOME: one JSON file per temporary server running
SERVER_COMMAND = "prefect.server.api.server:create_app"  # in the command line of Prefect's temporary servers

log = logging.getLogger(__name__)


def chosen_api_url(
    requested: str | None, environ: Mapping[str, str], current: str | None, profile: str | None
) -> str | None:
    """The Prefect API URL the run uses, or None for a temporary server of its own. `requested`: the
    command's `--prefect-api-url`; `current`: the URL in Prefect's settings (from the environment,
    in-process settings or the active profile); `profile`: the active profile's URL."""
    if requested:
        return requested
    if not current:
        return None
    set_here = bool(environ.get(API_URL_ENV)) or current != profile
    return current if set_here or environ.get(USE_PROFILE_ENV) == "1" else None


@contextmanager
def prefect_api(requested: str | None = None) -> Iterator[str]:
    """Within: Prefect's settings point at the server the run uses (`chosen_api_url`), whose URL is
    yielded; a temporary server started here is stopped on the way out, after the run's logs and events
    were delivered to it (delivering them to a stopped server would hang the exit in retries)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME, load_current_profile, temporary_settings

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # a temporary server must not phone home
    profile_url = load_current_profile().settings.get(PREFECT_API_URL)
    url = chosen_api_url(requested, os.environ, PREFECT_API_URL.value(), profile_url)
    if url is not None:
        with temporary_settings({PREFECT_API_URL: url}):
            yield url
        return
    records = Path(PREFECT_HOME.value()) / SERVER_RECORDS
    for pid in stop_orphaned_servers(records):
        log.warning("stopped temporary Prefect server (pid %d) left listening by a killed run", pid)
    server = SubprocessASGIServer(port=None)
    server.start()
    assert server.server_process is not None  # started
    record = records / f"{server.server_process.pid}.json"
    records.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({"run_pid": os.getpid(), "server_pid": server.server_process.pid}))
    try:
        with temporary_settings({PREFECT_API_URL: server.api_url}):
            try:
                yield server.api_url
            finally:
                APILogWorker.drain_all()
                EventsWorker.drain_all()
    finally:
        server.stop()
        record.unlink(missing_ok=True)


def stop_orphaned_servers(records: Path) -> list[int]:
    """Terminate the temporary servers recorded under `records` whose run process is gone (killed with -9),
    and forget their records. A server is only signalled while its command line is still a Prefect server's
    (a recycled pid is left alone), and a run whose pid is alive is taken as still running. Returns the pids
    terminated."""
    stopped = []
    for record in sorted(records.glob("*.json")):
        try:
            entry = json.loads(record.read_text())
            run_pid, server_pid = int(entry["run_pid"]), int(entry["server_pid"])
        except (OSError, ValueError, KeyError, TypeError):  # unreadable: nothing to act on safely
            record.unlink(missing_ok=True)
            continue
        if _alive(run_pid):
            continue
        if _alive(server_pid) and SERVER_COMMAND in _command_line(server_pid):
            os.kill(server_pid, signal.SIGTERM)
            stopped.append(server_pid)
        record.unlink(missing_ok=True)
    return stopped


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process, alive
        return True
    return True


def _command_line(pid: int) -> str:
    """The process's command line (Linux `/proc`); empty where it cannot be read, so nothing is signalled."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@contextmanager
def sigterm_exits() -> Iterator[None]:
    """Within: SIGTERM ends the process with status 143 through `SystemExit`, so that context managers
    and `finally` blocks run (the temporary server is stopped) instead of Python dying on the spot. While a
    flow runs, Prefect's own handler raises `TerminationSignal` (the flow run is marked Crashed), turned into
    the same exit. Signal handlers belong to the main thread: elsewhere this does nothing."""
    from prefect.exceptions import TerminationSignal

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    except TerminationSignal as exc:
        raise SystemExit(128 + exc.signal) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
