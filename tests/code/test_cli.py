"""Code tier: the CLI's shape and its error handling."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from dreamer.cli import build_parser, main


def test_help_lists_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    listed = capsys.readouterr().out
    for command in ("ingest", "validate", "features", "train-world-model", "run", "predict", "demo"):
        assert command in listed


def test_console_script_is_installed() -> None:
    result = subprocess.run([sys.executable, "-m", "dreamer.cli", "--version"], capture_output=True, text=True)
    assert result.returncode == 0
    assert "dreamer-trading" in result.stdout


def test_parser_builds_without_heavy_imports() -> None:
    code = (
        "import sys; from dreamer.cli import build_parser; build_parser(); "
        "print(sorted(m for m in ('torch', 'great_expectations', 'mlflow', 'prefect') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
    assert build_parser().prog == "dreamer"


def test_run_summary_calls_a_one_position_policy_degenerate() -> None:
    from dreamer.commands.run import summary_lines

    metrics = {"total_return": 0.01, "sharpe": 1.0, "sortino": 1.0, "max_drawdown": 0.02, "turnover": 0.0}
    agent = {**metrics, "num_trades": 1, "sharpe_ci": [-1.0, 3.0], "sharpe_ci_level": 0.95}
    report = {
        "data": {"symbol": "BTCUSDT", "interval": "5", "rows": 100},
        "evaluation": {"start": "a", "end": "b", "bars": 50, "cost_rate": 0.00065},
        "agent": agent,
        "baselines": {"flat": {**metrics, "num_trades": 0}},
        "comparison": {},
    }
    assert not any("DEGENERATE" in line for line in summary_lines(report))
    agent |= {"degenerate": True, "dominant_position": -0.5, "dominant_position_share": 0.996}
    assert "DEGENERATE POLICY: the agent holds -0.5 on 99.6% of the test bars" in "\n".join(summary_lines(report))


@pytest.mark.parametrize("value", ["-5", "inf", "nan", "fast"])
def test_max_rps_must_be_a_finite_rate(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["ingest", "--symbol", "BTCUSDT", "--max-rps", value])
    assert exit_info.value.code == 2
    assert f"argument --max-rps: must be a finite number >= 0 (0: no pacing), got {value!r}" in capsys.readouterr().err


def test_max_rps_zero_turns_pacing_off() -> None:
    assert build_parser().parse_args(["ingest", "--max-rps", "0"]).max_rps == 0.0


def test_dreamer_run_never_hands_credentials_to_prefect(monkeypatch: pytest.MonkeyPatch) -> None:
    """Prefect stores flow parameters in its database: a base URL with credentials goes through the
    environment (read by the flow when its parameter is empty), one without them stays a parameter."""
    import dreamer.commands.run as run_command

    passed: dict[str, object] = {}

    def capture(**parameters: object) -> dict[str, object]:
        passed.update(parameters)
        raise SystemExit(0)  # stop before the flow would run

    monkeypatch.setattr(run_command, "run_flow", capture)
    monkeypatch.delenv("DREAMER_BYBIT_URL", raising=False)
    with pytest.raises(SystemExit):
        main(["run", "--base-url", "https://trader:s3cret@api.example.com"])
    assert passed["base_url"] is None
    assert os.environ["DREAMER_BYBIT_URL"] == "https://trader:s3cret@api.example.com"
    monkeypatch.delenv("DREAMER_BYBIT_URL")
    with pytest.raises(SystemExit):
        main(["run", "--base-url", "https://api.example.com"])
    assert passed["base_url"] == "https://api.example.com" and "DREAMER_BYBIT_URL" not in os.environ
