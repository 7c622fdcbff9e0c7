"""Data tier: `dreamer ingest` end to end against the fake Bybit and real files (`dreamer demo`, which now
runs the whole flow, is tested in tests/e2e/test_run_cli.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dreamer.cli import main
from dreamer.paths import SAMPLE_CSV
from tests.conftest import FAKE_SERIES_KEY
from tests.data.kline_helpers import assert_table_equals
from tests.fakes.bybit_server import FakeBybit


def test_ingest_from_bybit_then_resume(
    db_path: Path, fake_bybit: FakeBybit, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["ingest", "--symbol", "BTCUSDT", "--interval", "5", "--category", "linear", "--db", str(db_path)]
    common += ["--base-url", fake_bybit.url, "--max-rps", "0"]
    assert main([*common, "--start", "2026-01-01", "--end", "2026-01-05T23:55"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("succeeded: linear BTCUSDT 5 from bybit")
    assert "1440 inserted" in out[0] and "2 requests" in out[0]
    assert main([*common, "--json"]) == 0  # no --start: resume; no --end: up to the last closed candle
    report = json.loads(capsys.readouterr().out)
    assert report["rows_inserted"] == 4_320 - 1_440 and report["requested_start"] is None
    assert_table_equals(db_path, fake_bybit.closed_rows(FAKE_SERIES_KEY))


def test_bybit_url_from_the_environment(
    db_path: Path, fake_bybit: FakeBybit, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DREAMER_BYBIT_URL", fake_bybit.url)
    monkeypatch.setenv("DREAMER_DB", str(db_path))
    assert main(["ingest", "--symbol", "BTCUSDT", "--start", "2026-01-15T20:00", "--max-rps", "0"]) == 0
    assert "48 inserted" in capsys.readouterr().out
    assert db_path.exists()


def test_failures_exit_non_zero_with_a_clear_message(
    db_path: Path, fake_bybit: FakeBybit, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_bybit.inject("http_403")
    args = [
        "ingest",
        "--symbol",
        "BTCUSDT",
        "--start",
        "2026-01-01",
        "--db",
        str(db_path),
        "--base-url",
        fake_bybit.url,
    ]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: HTTP 403") and "Traceback" not in err
    assert len(fake_bybit.log) == 1
    assert main(["ingest", "--symbol", "BTCUSDT", "--interval", "2", "--db", str(db_path)]) == 1
    assert "valid Bybit intervals: 1, 3, 5" in capsys.readouterr().err
    assert main(["ingest", "--source", "csv", "--symbol", "BTCUSDT", "--db", str(db_path)]) == 1
    assert "--path" in capsys.readouterr().err


def test_ingest_csv_and_sample(db_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["ingest", "--source", "csv", "--path", str(SAMPLE_CSV), "--symbol", "BTCUSDT", "--db", str(db_path)]
    assert main(args) == 0
    assert "58092 inserted" in capsys.readouterr().out
    assert main(["ingest", "--source", "sample", "--db", str(db_path)]) == 0
    assert "58092 unchanged" in capsys.readouterr().out
