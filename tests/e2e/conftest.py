"""Fixtures of the end-to-end tier that run the `dreamer` flow in-process."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="module")
def flow_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A Prefect test server, and an MLflow store, runs dir and Prefect result storage in a temp dir: the
    flow runs here as under `dreamer run`, writing nothing outside `root`."""
    import prefect.settings
    from prefect.testing.utilities import prefect_test_harness

    root = tmp_path_factory.mktemp("flow")
    env = {
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow' / 'mlflow.db'}",
        "DREAMER_RUNS_DIR": str(root / "runs"),
        "DREAMER_MLFLOW_UI": "http://127.0.0.1:5000",
    }
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        with (
            prefect.settings.temporary_settings(
                {
                    prefect.settings.PREFECT_LOCAL_STORAGE_PATH: root / "prefect-storage",
                    prefect.settings.PREFECT_SERVER_ANALYTICS_ENABLED: False,
                }
            ),
            prefect_test_harness(server_startup_timeout=90),
        ):
            yield {"root": root, "db": str(root / "dreamer.duckdb"), **env}
