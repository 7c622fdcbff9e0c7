"""Code tier: what `dreamer predict` refuses to serve, against a throwaway sqlite registry (no model is loaded:
every refusal comes before it, or is about a model that cannot be loaded)."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from dreamer.cli import main
from dreamer.orchestration import registry, tracking

ECHO_MODEL = Path(__file__).with_name("echo_model.py")  # a pyfunc from code: its input back


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[MlflowClient, str]:
    uri = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    client = tracking.client(uri)
    return client, tracking.ensure_experiment(client, "tests")


def _champion(client: MlflowClient, experiment_id: str, name: str, category: str) -> str:
    """A version of `name` trained (say its tags) on `category`/BTCUSDT/5, holding alias champion."""
    run = client.create_run(experiment_id)
    tags = {"category": category, "symbol": "BTCUSDT", "interval": "5"}
    version = registry.register_version(client, name, f"runs:/{run.info.run_id}/agent", run.info.run_id, tags=tags)
    client.set_registered_model_alias(name, registry.CHAMPION, str(version.version))
    return str(version.version)


def _predict(tmp_path: Path, category: str) -> list[str]:
    argv = ["predict", "--symbol", "BTCUSDT", "--interval", "5", "--category", category, "--db"]
    return [*argv, str(tmp_path / "dreamer.duckdb")]


def test_predict_never_serves_a_legacy_champion_of_another_category(
    store: tuple[MlflowClient, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    client, experiment_id = store
    _champion(client, experiment_id, registry.legacy_model_name("BTCUSDT", "5"), "spot")
    assert main(_predict(tmp_path, "linear")) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "error: no alias 'champion' of model dreamer-linear-btcusdt-5" in captured.err
    assert "note: legacy model dreamer-btcusdt-5 v1 was trained on spot, not linear: not adopted" in captured.err


def test_predict_refuses_a_model_trained_on_another_market(
    store: tuple[MlflowClient, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    client, experiment_id = store
    _champion(client, experiment_id, registry.registered_model_name("linear", "BTCUSDT", "5"), "spot")
    assert main(_predict(tmp_path, "linear")) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert error == (
        "error: dreamer-linear-btcusdt-5 v1 was trained on another market (category spot (not linear)): "
        "refusing to trade linear/BTCUSDT/5 with it\n"
    )


def test_predict_says_in_one_line_what_to_do_when_the_champion_cannot_be_loaded(
    store: tuple[MlflowClient, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    import mlflow

    client, experiment_id = store
    mlflow.set_tracking_uri(client.tracking_uri)
    mlflow.set_experiment(experiment_id=experiment_id)
    with mlflow.start_run() as run:
        info = mlflow.pyfunc.log_model(name="agent", python_model=str(ECHO_MODEL))
    name = registry.registered_model_name("linear", "BTCUSDT", "5")
    version = registry.register_version(client, name, info.model_uri, run.info.run_id, model_id=info.model_id)
    client.set_registered_model_alias(name, registry.CHAMPION, str(version.version))
    artifacts = Path(client.get_logged_model(info.model_id).artifact_location.removeprefix("file://"))
    assert (artifacts / "MLmodel").exists()
    shutil.rmtree(artifacts)  # what a user cleaning up disk space does

    assert main(_predict(tmp_path, "linear")) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "Traceback" not in error
    assert error.startswith("error: dreamer-linear-btcusdt-5 v1 (alias champion) cannot be loaded (")
    assert error.endswith(
        "its artifacts are missing or damaged: run the `dreamer` flow again to register a new champion "
        "(it replaces one that cannot be loaded), or pick a working version with --version N\n"
    )


def test_without_a_champion_predict_offers_the_challenger_or_lists_the_models(
    store: tuple[MlflowClient, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    client, experiment_id = store
    assert main(_predict(tmp_path, "linear")) == 1
    assert "registered models: none; train one with the `dreamer` flow" in capsys.readouterr().err

    name = registry.registered_model_name("linear", "BTCUSDT", "5")
    version = _champion(client, experiment_id, name, "linear")
    client.delete_registered_model_alias(name, registry.CHAMPION)
    client.set_registered_model_alias(name, registry.CHALLENGER, version)  # it failed the guard rails
    assert main(_predict(tmp_path, "linear")) == 1
    error = capsys.readouterr().err
    assert "no model of this market has passed the promotion guard rails yet" in error
    assert f"`--alias challenger` trades the latest candidate (v{version})" in error

    misspelled = ["predict", "--symbol", "BTCUSDC", "--interval", "5", "--db", str(tmp_path / "dreamer.duckdb")]
    assert main(misspelled) == 1
    assert "registered models: dreamer-linear-btcusdt-5;" in capsys.readouterr().err


def test_predict_names_the_aliases_and_versions_a_model_has_when_the_one_asked_for_is_missing(
    store: tuple[MlflowClient, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    client, experiment_id = store
    name = registry.registered_model_name("linear", "BTCUSDT", "5")
    champion = _champion(client, experiment_id, name, "linear")
    assert main([*_predict(tmp_path, "linear"), "--alias", "challenger"]) == 1
    error = capsys.readouterr().err
    assert f"error: no alias 'challenger' of model {name}" in error
    assert (
        f"{name} has aliases champion (v{champion}) and versions {champion}: pick one with --alias or --version"
        in error
    )
    assert main([*_predict(tmp_path, "linear"), "--version", "7"]) == 1
    assert f"no version 7 of model {name}" in capsys.readouterr().err


def test_predict_checks_the_symbol_as_ingest_does(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["predict", "--symbol", "BTC/USDT", "--interval", "5", "--db", str(tmp_path / "dreamer.duckdb")]
    assert main(argv) == 1
    error = capsys.readouterr().err
    assert error.startswith("error: invalid symbol 'BTC/USDT': expected 2-30 characters A-Z, 0-9 or '-'")
    assert main(["ingest", "--symbol", "BTC/USDT", "--db", str(tmp_path / "dreamer.duckdb")]) == 1
    assert capsys.readouterr().err == error  # the very same check and message
