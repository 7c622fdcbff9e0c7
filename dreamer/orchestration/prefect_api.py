"""The Prefect server a `dreamer run` reports to, and the promise that it leaves nothing running behind.

A run uses, in this order: the URL given with `--prefect-api-url`; a URL set for this process
(`$PREFECT_API_URL`, or in-process settings such as Prefect's test harness); the active Prefect profile's URL
only with `DREAMER_USE_PREFECT_PROFILE=1`; otherwise a temporary server of its own. A profile's URL alone is
not followed because `make up` makes its profile active: a run started then would report to that server and,
once `make down` stopped it, hang retrying its API after the work was done.

The temporary server is a subprocess, stopped when the run ends however it ends: completed, failed,
interrupted (Ctrl-C) or terminated (SIGTERM, turned into an exit that runs this clean-up). Only a kill -9 of
the run leaves it behind.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

API_URL_ENV = "PREFECT_API_URL"
USE_PROFILE_ENV = "DREAMER_USE_PREFECT_PROFILE"


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
    from prefect.settings import PREFECT_API_URL, load_current_profile, temporary_settings

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # a temporary server must not phone home
    profile_url = load_current_profile().settings.get(PREFECT_API_URL)
    url = chosen_api_url(requested, os.environ, PREFECT_API_URL.value(), profile_url)
    if url is not None:
        with temporary_settings({PREFECT_API_URL: url}):
            yield url
        return
    server = SubprocessASGIServer(port=None)
    server.start()
    try:
        with temporary_settings({PREFECT_API_URL: server.api_url}):
            try:
                yield server.api_url
            finally:
                APILogWorker.drain_all()
                EventsWorker.drain_all()
    finally:
        server.stop()


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
