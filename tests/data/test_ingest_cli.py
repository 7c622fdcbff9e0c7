"""Data tier: `dreamer ingest` end to end against the fake Bybit and real files (`dreamer demo`, which now
runs the whole flow, is tested in tests/e2e/test_run_cli.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dreamer.cli import main
from dreamer.data import store
from dreamer.paths import SAMPLE_CSV, SAMPLE_FUNDING_CSV
from tests.conftest import FAKE_FUNDING_KEY, FAKE_SERIES_KEY
from tests.data.kline_helpers import assert_funding_equals, assert_table_equals
from tests.fakes.bybit_server import FakeBybit


def test_ingest_from_bybit_then_resume(
    db_path: Path, fake_bybit: FakeBybit, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["ingest", "--symbol", "BTCUSDT", "--interval", "5", "--category", "linear", "--db", str(db_path)]
    common += ["--base-url", fake_bybit.url, "--max-rps", "0"]
    assert main([*common, "--start", "2026-01-01", "--end", "2026-01-05T23:55"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 2 and out[0].startswith("succeeded: linear BTCUSDT 5 from bybit")
    assert "1440 inserted" in out[0] and "2 requests" in out[0]
    # The funding settlements over those candles, to the close of the last one: 5 days x 3 + 2026-01-06 00:00.
    assert out[1].startswith("succeeded: linear BTCUSDT funding from bybit 2026-01-01T00:00Z .. 2026-01-06T00:00Z")
    assert "16 inserted" in out[1] and "1 requests" in out[1]
    assert main([*common, "--json"]) == 0  # no --start: resume; no --end: up to the last closed candle
    report = json.loads(capsys.readouterr().out)
    assert report["rows_inserted"] == 4_320 - 1_440 and report["requested_start"] is None
    assert report["funding"]["kind"] == "funding" and report["funding"]["rows_inserted"] == 46 - 16
    assert_table_equals(db_path, fake_bybit.closed_rows(FAKE_SERIES_KEY))
    assert_funding_equals(db_path, fake_bybit.settled_rows(FAKE_FUNDING_KEY)[:46])


def test_no_funding_and_funding_files(
    db_path: Path, fake_bybit: FakeBybit, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["ingest", "--symbol", "BTCUSDT", "--db", str(db_path), "--base-url", fake_bybit.url, "--max-rps", "0"]
    assert main([*args, "--start", "2026-01-15", "--no-funding"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 1 and fake_bybit.funding_requests == []
    funding = tmp_path / "funding.csv"
    funding.write_text("funding_time_ms,funding_rate\n1767225600000,0.0001\n1767254400000,-0.00002\n")
    csv = ["ingest", "--source", "csv", "--symbol", "BTCUSDT", "--db", str(db_path)]
    assert main([*csv, "--funding-path", str(funding)]) == 0  # funding alone
    assert capsys.readouterr().out.startswith("succeeded: linear BTCUSDT funding from csv 2026-01-01T00:00Z ..")
    assert main([*csv, "--path", str(SAMPLE_CSV), "--funding-path", str(SAMPLE_FUNDING_CSV)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert "57804 inserted, 288 updated" in out[0]  # 2026-01-15 came from Bybit, with turnover
    assert "funding from csv" in out[1] and "604 inserted, 2 updated, 0 unchanged" in out[1]  # real rates win
    assert main([*csv, "--category", "spot", "--path", str(SAMPLE_CSV), "--funding-path", str(funding)]) == 1
    assert "category 'spot' has no funding" in capsys.readouterr().err


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
    assert "--path FILE (klines), --funding-path FILE or both" in capsys.readouterr().err


def test_credentials_in_the_base_url_are_never_printed_or_stored(
    db_path: Path, fake_bybit: FakeBybit, capsys: pytest.CaptureFixture[str]
) -> None:
    secret_url = fake_bybit.url.replace("://", "://trader:s3cret@")
    shown = fake_bybit.url.replace("://", "://***@")
    args = ["ingest", "--symbol", "BTCUSDT", "--db", str(db_path), "--base-url", secret_url, "--max-rps", "0"]
    assert main([*args, "--start", "2026-01-15T20:00", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["source_detail"] == report["funding"]["source_detail"] == shown
    fake_bybit.inject("http_403")
    assert main([*args, "--start", "2026-01-01"]) == 1
    captured = capsys.readouterr()
    assert f"HTTP 403 from {shown}/v5/market/kline" in captured.err
    con = store.connect(db_path, read_only=True)
    runs = store.recent_runs(con, 10)
    con.close()
    assert set(runs["source_detail"]) == {shown} and "s3cret" not in runs.to_csv()
    assert "s3cret" not in captured.out + captured.err


def test_ingest_csv_and_sample(db_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["ingest", "--source", "csv", "--path", str(SAMPLE_CSV), "--symbol", "BTCUSDT", "--db", str(db_path)]
    assert main(args) == 0
    assert "58092 inserted" in capsys.readouterr().out
    assert main(["ingest", "--source", "sample", "--db", str(db_path)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert "58092 unchanged" in out[0] and "funding from sample" in out[1] and "606 inserted" in out[1]
