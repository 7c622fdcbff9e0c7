"""Code tier: `dreamer sweep`'s arguments become the `dreamer-sweep` flow's parameters."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dreamer.cli import build_parser, main
from dreamer.commands.sweep import market_fields, named_configs
from dreamer.errors import ConfigError


def parse(*argv: str) -> Any:
    return build_parser().parse_args(["sweep", *argv])


def test_markets_become_data_fields_with_the_span(tmp_path: Path) -> None:
    klines, funding = tmp_path / "bybit_SOLUSDT_5m_2025-09_2026-07.csv.gz", tmp_path / "funding.csv"
    klines.touch()
    funding.touch()
    args = parse("--markets", "sample", "--start", "2026-03-01", "--category", "linear")
    assert market_fields("sample", parse("--markets", "sample")) == "sample"
    assert market_fields("sample", args) == {"source": "sample", "start": "2026-03-01"}
    assert market_fields(f"{klines}:{funding}", args) == {
        "symbol": "SOLUSDT",
        "path": str(klines),
        "funding_path": str(funding),
        "category": "linear",
        "start": "2026-03-01",
    }
    with pytest.raises(ConfigError, match=r"--markets .*no symbol"):
        market_fields(str(funding), args)


def test_named_configs_come_from_a_yaml_mapping(tmp_path: Path) -> None:
    good = tmp_path / "configs.yaml"
    good.write_text("base: {}\nlong_horizon:\n  dreamer: {imagination_horizon: 30}\n")
    assert named_configs(str(good)) == {"base": {}, "long_horizon": {"dreamer": {"imagination_horizon": 30}}}
    assert named_configs(None) is None
    (tmp_path / "list.yaml").write_text("- base\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        named_configs(str(tmp_path / "list.yaml"))
    with pytest.raises(ConfigError, match=r"missing\.yaml"):
        named_configs(str(tmp_path / "missing.yaml"))


def test_the_command_runs_the_flow_with_its_parameters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import dreamer.orchestration.prefect_api
    import flows.walk_forward

    calls: list[dict[str, Any]] = []

    def fake_sweep(**parameters: Any) -> dict[str, Any]:
        calls.append(parameters)
        (tmp_path / "out").mkdir()
        (tmp_path / "out" / "summary.md").write_text("| market | config |\n")
        return {"out_dir": str(tmp_path / "out"), "mlflow": {"run_id": "r1", "tracking_uri": "sqlite:///x"}}

    @contextlib.contextmanager
    def no_server(url: str | None = None) -> Iterator[str]:
        yield "http://127.0.0.1:1/api"

    monkeypatch.setattr(flows.walk_forward, "run_sweep", fake_sweep)
    monkeypatch.setattr(dreamer.orchestration.prefect_api, "prefect_api", no_server)
    argv = ["sweep", "--markets", "sample", "--seeds", "3", "--folds", "4", "--warm-start", "--workers", "1"]
    assert main([*argv, "--db", str(tmp_path / "db.duckdb"), "--config", "tiny"]) == 0
    (parameters,) = calls
    assert parameters["seeds"] == [0, 1, 2] and parameters["workers"] == 1 and parameters["address"] is None
    assert parameters["overrides"] == {"walk_forward": {"folds": 4, "warm_start_from_previous_fold": True}}
    assert parameters["markets"] == ["sample"] and parameters["configs"] is None
    assert parameters["db_path"] == str(tmp_path / "db.duckdb")
    assert "| market | config |" in capsys.readouterr().out
    assert main(["sweep", "--markets", "sample", "--seeds", "0"]) != 0  # refused before anything runs
    assert len(calls) == 1
