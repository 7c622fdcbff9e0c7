"""Code tier: which Prefect server a `dreamer run` reports to."""

from __future__ import annotations

from dreamer.orchestration.prefect_api import chosen_api_url

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
