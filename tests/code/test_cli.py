"""Code tier: the CLI's shape and its error handling."""

from __future__ import annotations

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
