"""Data tier: the validation gate passes real Bybit klines and funding and names every injected defect."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dreamer.cli import main
from dreamer.data import store
from dreamer.data.ingest import ingest_csv, ingest_sample
from dreamer.features.config import ValidationConfig
from dreamer.features.validate import DataValidationError, validate_klines, validate_series
from dreamer.paths import SAMPLE_CSV
from tests.conftest import SHARED_DATA
from tests.feature_fixtures import read_funding_csv, read_kline_csv, sample_klines

SMALL = ValidationConfig(min_rows=1000)


@pytest.fixture(scope="module")
def klines() -> pd.DataFrame:
    return sample_klines(3000)


def test_bundled_sample_passes_and_writes_its_report(tmp_path: Path) -> None:
    funding = read_funding_csv()
    report = validate_klines(
        sample_klines(), "5", category="linear", symbol="BTCUSDT", funding=funding, out_dir=tmp_path
    )
    assert report.status == "passed" and report.rows == 58_092 and report.missing_bars == 0
    assert report.funding.settlements == 606 and report.funding.spacing_hours == 8
    assert "Funding: 606 settlements 2026-01-01T00:00Z .. 2026-07-21T16:00Z, usually every 8 h" in report.summary_text()
    assert {o.name for o in report.outcomes} >= {"funding_present", "funding_gaps", "funding_covers_end"}
    assert all(outcome.success for outcome in report.outcomes)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "passed" and summary["failures"] == [] and summary["rows"] == 58_092
    html = (tmp_path / "report.html").read_text()
    assert "linear/BTCUSDT/5" in html and "high_ge_low" in html
    assert json.loads((tmp_path / "gx_result.json").read_text())["success"] is True
    assert json.loads((tmp_path / "gx_funding_result.json").read_text())["success"] is True
    assert summary["funding"]["checked"] is True and "606 settlements" in html


@pytest.mark.parametrize("name", sorted(p.name for p in SHARED_DATA.glob("bybit_*_5m_*.csv.gz")) or ["absent"])
def test_shared_real_data_passes(name: str) -> None:
    """Every real export, with its real funding history (8 h settlements from 8 h after the first bar)."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{SHARED_DATA} is absent (only the bundled sample ships with the project)")
    [funding_path] = SHARED_DATA.glob(f"bybit_{name.split('_')[1]}_funding_8h_*.csv")
    funding = read_funding_csv(funding_path)
    report = validate_klines(read_kline_csv(path), "5", category="linear", symbol=name.split("_")[1], funding=funding)
    assert report.passed, report.summary_text()
    assert not [o.name for o in report.warnings if o.name.startswith("funding")]  # kline warnings: real crashes
    assert report.funding.settlements == len(funding) and report.funding.spacing_hours == 8


def _duplicate(k: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([k.iloc[:1500], k.iloc[[1499]], k.iloc[1500:]], ignore_index=True)


def _high_below_low(k: pd.DataFrame) -> pd.DataFrame:
    k.loc[1500, "high"] = k.loc[1500, "low"] - 10.0
    return k


def _set(column: str, value: float) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def inject(k: pd.DataFrame) -> pd.DataFrame:
        k.loc[1500, column] = value
        return k

    return inject


def _misaligned(k: pd.DataFrame) -> pd.DataFrame:
    k.loc[1500, "open_time"] += pd.Timedelta(seconds=90)
    return k


def _many_gaps(k: pd.DataFrame) -> pd.DataFrame:
    return k.drop(index=range(1000, 1000 + 60)).reset_index(drop=True)  # 60 of 3000 bars: 2% > 1%


def _absurd_jump(k: pd.DataFrame) -> pd.DataFrame:
    k.loc[1500, ["open", "high", "low", "close"]] *= 10.0  # a shifted decimal: log return +2.3, then -2.3
    return k


def _long_lower_wick(k: pd.DataFrame) -> pd.DataFrame:
    k.loc[1500, "low"] = k.loc[1500, ["open", "close"]].min() / 10.0  # a lost digit: log wick 2.3
    return k


def _shifted_decimal_at_the_start(k: pd.DataFrame) -> pd.DataFrame:
    k.loc[:9, ["open", "high", "low", "close"]] *= 1000.0  # no jump before the first bar to give it away
    return k


DEFECTS: dict[str, tuple[Callable[[pd.DataFrame], pd.DataFrame], set[str]]] = {
    "duplicate bar": (_duplicate, {"open_time_unique", "open_time_increasing"}),
    "high < low": (_high_below_low, {"high_ge_low", "high_ge_open", "high_ge_close"}),
    "negative volume": (_set("volume", -1.0), {"volume_non_negative"}),
    "NaN close": (_set("close", np.nan), {"not_null_close"}),
    "NaN volume": (_set("volume", np.nan), {"not_null_volume"}),
    "non-positive low": (_set("low", 0.0), {"low_positive"}),
    "negative turnover": (_set("turnover", -5.0), {"turnover_non_negative"}),
    "misaligned timestamp": (_misaligned, {"open_time_aligned"}),
    "too many gaps": (_many_gaps, {"gap_share"}),
    "absurd jump": (_absurd_jump, {"no_absurd_jump"}),
    "absurd high": (_set("high", 1e308), {"no_absurd_wick", "no_absurd_price"}),
    "absurd lower wick": (_long_lower_wick, {"no_absurd_wick"}),
    "shifted decimal at the start": (_shifted_decimal_at_the_start, {"no_absurd_price", "no_absurd_jump"}),
    "too few rows": (lambda k: k.iloc[:900], {"enough_rows"}),
}


@pytest.mark.parametrize("defect", list(DEFECTS))
def test_each_injected_defect_fails_the_gate_by_name(klines: pd.DataFrame, defect: str, tmp_path: Path) -> None:
    inject, expected = DEFECTS[defect]
    with pytest.raises(DataValidationError) as caught:
        validate_klines(inject(klines.copy()), "5", SMALL, symbol="BTCUSDT", out_dir=tmp_path)
    report = caught.value.report
    assert {outcome.name for outcome in report.failures} == expected
    message = str(caught.value)
    for name in expected:
        assert f"- {name}:" in message
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "failed" and set(summary["failures"]) == expected


def test_failure_lists_counts_and_offending_rows(klines: pd.DataFrame) -> None:
    bad = klines.copy()
    for row in (100, 200, 300):
        bad.loc[row, "volume"] = -float(row)
    with pytest.raises(DataValidationError) as caught:
        validate_klines(bad, "5", SMALL)
    (outcome,) = caught.value.report.failures
    assert outcome.unexpected_count == 3 and outcome.element_count == 3000
    assert [example["row"] for example in outcome.examples] == [100, 200, 300]
    assert outcome.examples[1]["volume"] == -200.0
    assert outcome.examples[1]["open_time"] == bad.loc[200, "open_time"].isoformat()
    assert "3 of 3,000 rows" in str(caught.value) and "volume=-200.0" in str(caught.value)


def test_an_absurd_price_names_its_row(klines: pd.DataFrame) -> None:
    bad = _set("high", 1e308)(klines.copy())
    with pytest.raises(DataValidationError) as caught:
        validate_klines(bad, "5", SMALL)
    wick, price = caught.value.report.failures
    assert (wick.name, wick.unexpected_count, price.name, price.unexpected_count) == (
        "no_absurd_wick",
        1,
        "no_absurd_price",
        1,
    )
    assert [example["row"] for example in wick.examples] == [1500] and wick.examples[0]["high"] == 1e308
    assert "row=1500" in str(caught.value) and "high=1e+308" in str(caught.value)
    # The thresholds come from the config: the sample's largest wick (log 0.004) and price (1.04x its median)
    # fail tighter ones.
    with pytest.raises(DataValidationError) as caught:
        validate_klines(klines, "5", ValidationConfig(min_rows=1000, max_log_wick=0.001, max_price_to_median=1.01))
    assert {outcome.name for outcome in caught.value.report.failures} == {"no_absurd_wick", "no_absurd_price"}


def test_a_few_gaps_are_a_warning_not_a_failure(klines: pd.DataFrame, tmp_path: Path) -> None:
    gappy = klines.drop(index=[500, 1700, 1701]).reset_index(drop=True)
    report = validate_klines(gappy, "5", SMALL, out_dir=tmp_path)
    assert report.status == "passed with warnings"
    assert [o.name for o in report.warnings] == ["gaps_warning"]
    assert report.missing_bars == 3 and report.expected_bars == 3000
    (gaps,) = report.warnings
    assert sorted(example["missing_bars_before"] for example in gaps.examples) == [1, 2]
    assert json.loads((tmp_path / "summary.json").read_text())["warnings"] == ["gaps_warning"]


def test_thresholds_come_from_config(klines: pd.DataFrame) -> None:
    gappy = klines.drop(index=range(1000, 1010)).reset_index(drop=True)  # 10 of 3000 missing: 0.33%
    assert validate_klines(gappy, "5", SMALL).passed
    with pytest.raises(DataValidationError, match="gap_share"):
        validate_klines(gappy, "5", ValidationConfig(min_rows=1000, max_gap_fraction=0.002))
    report = validate_klines(klines, "5", ValidationConfig(min_rows=1000, warn_abs_log_return=0.001))
    assert [o.name for o in report.warnings] == ["large_moves_warning"]


def test_validate_series_and_cli_on_the_stored_sample(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "db.duckdb"
    ingest_sample(db)
    con = store.connect(db, read_only=True)
    try:
        report = validate_series(con, "linear", "BTCUSDT", "5", SMALL, start="2026-03-01", end="2026-03-10 23:55")
    finally:
        con.close()
    assert report.passed and report.rows == 10 * 288
    report_dir = tmp_path / "report"
    args = ["validate", "--symbol", "BTCUSDT", "--interval", "5", "--db", str(db), "--report-dir", str(report_dir)]
    assert main(args) == 0
    assert "validation PASSED" in capsys.readouterr().out
    assert main([*args, "--start", "2026-07-21"]) == 1  # 204 rows < demo's min_rows
    out = capsys.readouterr().out
    assert "validation FAILED" in out and "enough_rows" in out
    assert json.loads((report_dir / "summary.json").read_text())["failures"] == ["enough_rows"]


# --- funding ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def funding() -> pd.DataFrame:
    """The sample's settlements over `klines` (its first 3000 bars: 2026-01-01 00:00 .. 01-11 09:55)."""
    settlements = read_funding_csv()
    return settlements[settlements["funding_time_ms"] <= 1768125300000].reset_index(drop=True)


def _settlement(row: int, column: str, value: float) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def inject(f: pd.DataFrame) -> pd.DataFrame:
        f.loc[row, column] = value
        return f

    return inject


FUNDING_DEFECTS: dict[str, tuple[Callable[[pd.DataFrame], pd.DataFrame], set[str]]] = {
    "no funding at all": (lambda f: f.iloc[:0], {"funding_present"}),
    "two days without a settlement": (lambda f: f.drop(index=range(10, 16)).reset_index(drop=True), {"funding_gaps"}),
    "history ends a day before the klines": (lambda f: f.iloc[:-3], {"funding_covers_end"}),
    "history starts a day after the klines": (lambda f: f.iloc[3:].reset_index(drop=True), {"funding_covers_start"}),
    "a percentage stored as a fraction": (_settlement(12, "funding_rate", 0.75), {"funding_rate_bounded"}),
    "NaN rate": (_settlement(12, "funding_rate", np.nan), {"not_null_funding_rate"}),
    "duplicate settlement": (
        lambda f: pd.concat([f.iloc[:12], f.iloc[[11]], f.iloc[12:]], ignore_index=True),
        {"funding_time_unique", "funding_time_increasing"},
    ),
    "a settlement a second off the hour": (
        _settlement(12, "funding_time_ms", 1767225600000 + 12 * 8 * 3_600_000 + 1_000),
        {"funding_time_on_the_hour"},
    ),
}


@pytest.mark.parametrize("defect", list(FUNDING_DEFECTS))
def test_each_funding_defect_fails_the_gate_by_name(
    klines: pd.DataFrame, funding: pd.DataFrame, defect: str, tmp_path: Path
) -> None:
    inject, expected = FUNDING_DEFECTS[defect]
    with pytest.raises(DataValidationError) as caught:
        validate_klines(klines, "5", SMALL, category="linear", funding=inject(funding.copy()), out_dir=tmp_path)
    assert {outcome.name for outcome in caught.value.report.failures} == expected
    for name in expected:
        assert f"- {name}:" in str(caught.value)
    assert set(json.loads((tmp_path / "summary.json").read_text())["failures"]) == expected


def test_a_missing_funding_history_names_the_fix(klines: pd.DataFrame) -> None:
    with pytest.raises(DataValidationError) as caught:
        validate_klines(klines, "5", SMALL, category="linear", funding=read_funding_csv().iloc[:0])
    message = str(caught.value)
    assert "funding_present" in message and "dreamer ingest" in message and "(observed 0)" in message
    assert caught.value.report.funding.line() == "Funding: no settlements over the klines' range"


def test_gap_examples_name_the_settlement_after_the_gap(klines: pd.DataFrame, funding: pd.DataFrame) -> None:
    gappy = funding.drop(index=range(10, 16)).reset_index(drop=True)
    with pytest.raises(DataValidationError) as caught:
        validate_klines(klines, "5", SMALL, category="linear", funding=gappy)
    (outcome,) = caught.value.report.failures
    assert outcome.unexpected_count == 1
    [example] = outcome.examples
    assert example["hours_since_previous"] == 56.0 and example["funding_time"] == "2026-01-06T08:00:00+00:00"


def test_irregular_spacing_and_large_rates_are_warnings(klines: pd.DataFrame, funding: pd.DataFrame) -> None:
    one_missed = funding.drop(index=[12]).reset_index(drop=True)  # 16 h once: a warning, not a failure
    report = validate_klines(klines, "5", SMALL, category="linear", funding=one_missed)
    assert report.status == "passed with warnings" and [o.name for o in report.warnings] == ["funding_spacing_warning"]
    (spacing,) = report.warnings
    assert [example["hours_since_previous"] for example in spacing.examples] == [16.0]
    large = funding.copy()
    large.loc[5, "funding_rate"] = -0.02  # -2 %: rare but real on stressed alts
    report = validate_klines(klines, "5", SMALL, category="linear", funding=large)
    assert [o.name for o in report.warnings] == ["large_funding_warning"]


def test_the_usual_spacing_comes_from_the_data(klines: pd.DataFrame) -> None:
    """Some symbols settle every 4 h (or 1 h): such a history passes as it is; a switch from 8 h to 4 h warns."""
    start, end = (int(klines["open_time"].iloc[i].value // 1_000_000) for i in (0, -1))
    every_4h = pd.DataFrame({"funding_time_ms": np.arange(start, end + 1, 4 * 3_600_000), "funding_rate": 1e-4})
    report = validate_klines(klines, "5", SMALL, category="linear", funding=every_4h)
    assert report.status == "passed" and report.funding.spacing_hours == 4
    switched = every_4h[(every_4h["funding_time_ms"] - start) % (8 * 3_600_000) == 0]
    switched = pd.concat([switched.iloc[:10], every_4h.iloc[20:]], ignore_index=True)
    report = validate_klines(klines, "5", SMALL, category="linear", funding=switched)
    assert [o.name for o in report.warnings] == ["funding_spacing_warning"] and report.passed


def test_funding_thresholds_come_from_config(klines: pd.DataFrame, funding: pd.DataFrame) -> None:
    gappy = funding.drop(index=range(10, 13)).reset_index(drop=True)  # 32 h without a settlement
    with pytest.raises(DataValidationError, match="funding_gaps"):
        validate_klines(klines, "5", SMALL, category="linear", funding=gappy)
    relaxed = ValidationConfig(min_rows=1000, max_funding_gap_hours=48)
    assert validate_klines(klines, "5", relaxed, category="linear", funding=gappy).passed
    strict = ValidationConfig(min_rows=1000, max_abs_funding_rate=0.00008, warn_abs_funding_rate=0.00005)
    with pytest.raises(DataValidationError, match="funding_rate_bounded"):
        validate_klines(klines, "5", strict, category="linear", funding=funding)


def test_validate_series_requires_funding_on_perpetuals_only(tmp_path: Path) -> None:
    db = tmp_path / "db.duckdb"
    ingest_csv(db, SAMPLE_CSV, "linear", "BTCUSDT", "5")  # klines without their funding
    ingest_csv(db, SAMPLE_CSV, "spot", "BTCUSDT", "5")
    con = store.connect(db, read_only=True)
    try:
        with pytest.raises(DataValidationError, match="funding_present"):
            validate_series(con, "linear", "BTCUSDT", "5", SMALL)
        spot = validate_series(con, "spot", "BTCUSDT", "5", SMALL)
        off = validate_series(con, "linear", "BTCUSDT", "5", ValidationConfig(min_rows=1000, check_funding=False))
    finally:
        con.close()
    assert spot.passed and spot.funding.line() == "Funding not checked: category spot has no funding"
    assert off.passed and off.funding.reason == "validation.check_funding is false"
    assert not any(o.name.startswith("funding") for o in spot.outcomes + off.outcomes)
