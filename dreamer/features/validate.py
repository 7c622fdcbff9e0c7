"""The validation gate: Great Expectations suites over the klines of one series and, on perpetuals, over
the funding settlements in the klines' range.

Every check is a GX expectation run on a pandas DataFrame read from DuckDB (GX cannot validate DuckDB
through its SQL datasource). Columns GX cannot express directly (alignment to the interval grid, the
one-bar log return, the longer wick, the distance to the median close, bars missing before each bar;
hours between settlements and to the klines' ends) are derived first and validated like any other column.

Two levels, from `FailureSeverity`: a *failure* (bad OHLC, duplicates, misaligned bars, too many gaps,
absurd jumps, wicks or prices, too few rows; funding missing, not covering the klines, with long gaps or
absurd rates) raises `DataValidationError` naming each failed expectation with its counts and a few
offending rows; a *warning* (a few gaps, large but plausible moves, irregular settlement spacing, large
rates) is reported and the pipeline goes on. Each run writes `report.html` and `summary.json` (and GX's
own results as `gx_result.json` and `gx_funding_result.json`) when given an output folder.

`turnover` may be NULL: Bybit's CSV exports and the bundled sample carry none. Only where present must it
be >= 0; every other column must be non-null.

Funding (linear and inverse series, unless `check_funding` is off): settlements must exist over the
klines' range, the first no later than one usual spacing after the first bar and the last no earlier than
one usual spacing before the last bar (the usual spacing is the series' most common one: 8 h for most
symbols, 4 h or 1 h for some), with no stretch longer than `max_funding_gap_hours` between two of them.
"""

from __future__ import annotations

import html
import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from dreamer.data.markets import PERPETUAL_CATEGORIES, Interval, format_ms, parse_interval
from dreamer.errors import DreamerError
from dreamer.features.config import ValidationConfig
from dreamer.features.dataset import atomic_write_text

if TYPE_CHECKING:
    import duckdb

Severity = Literal["failure", "warning"]
REQUIRED_COLUMNS = ("open_time", "open", "high", "low", "close", "volume")
KLINE_EXAMPLE_COLUMNS = (
    *REQUIRED_COLUMNS,
    "turnover",
    "missing_bars_before",
    "log_return",
    "log_wick",
    "price_to_median",
)
FUNDING_COLUMNS = ("funding_time_ms", "funding_rate")  # as dreamer.data.store.read_funding returns them
FUNDING_EXAMPLE_COLUMNS = ("funding_time", "funding_rate", "hours_since_previous")
SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.html"
GX_RESULT_FILE = "gx_result.json"
GX_FUNDING_RESULT_FILE = "gx_funding_result.json"
HOUR_MS = 3_600_000
_ROW = "row"  # positional row number, the index GX reports offending rows by


@dataclass(frozen=True)
class Check:
    """One expectation of the suite, with the name the report and the error use."""

    name: str
    description: str
    severity: Severity
    expectation: Any  # a great_expectations Expectation


@dataclass
class CheckOutcome:
    name: str
    description: str
    severity: Severity
    expectation: str  # GX expectation type
    success: bool
    unexpected_count: int | None = None
    element_count: int | None = None
    observed_value: Any = None
    examples: list[dict[str, Any]] = field(default_factory=list)

    def line(self) -> str:
        if self.unexpected_count is not None:
            counts = f"{self.unexpected_count:,} of {self.element_count:,} rows"
        else:
            counts = f"observed {self.observed_value}"
        return f"{self.name}: {self.description} ({counts}) [{self.expectation}]"


@dataclass
class FundingSummary:
    """What the gate saw of the funding history over the klines' range, or why it did not look."""

    checked: bool
    reason: str | None = None  # why not checked
    settlements: int = 0
    first_time: str | None = None
    last_time: str | None = None
    spacing_hours: float | None = None  # the most common time between settlements

    def line(self) -> str:
        if not self.checked:
            return f"Funding not checked: {self.reason}"
        if not self.settlements:
            return "Funding: no settlements over the klines' range"
        spacing = f", usually every {self.spacing_hours:g} h" if self.spacing_hours else ""
        return f"Funding: {self.settlements:,} settlements {self.first_time} .. {self.last_time}{spacing}"


@dataclass
class ValidationReport:
    category: str | None
    symbol: str | None
    interval: str
    rows: int
    first_open_time: str | None
    last_open_time: str | None
    expected_bars: int
    missing_bars: int
    gap_fraction: float
    outcomes: list[CheckOutcome]
    thresholds: dict[str, Any]
    funding: FundingSummary

    @property
    def failures(self) -> list[CheckOutcome]:
        return [o for o in self.outcomes if not o.success and o.severity == "failure"]

    @property
    def warnings(self) -> list[CheckOutcome]:
        return [o for o in self.outcomes if not o.success and o.severity == "warning"]

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def status(self) -> str:
        if self.failures:
            return "failed"
        return "passed with warnings" if self.warnings else "passed"

    @property
    def series(self) -> str:
        return f"{self.category or '?'}/{self.symbol or '?'}/{self.interval}"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(
            status=self.status,
            passed=self.passed,
            failures=[o.name for o in self.failures],
            warnings=[o.name for o in self.warnings],
        )
        return _jsonable(data)

    def summary_text(self) -> str:
        lines = [
            f"validation {self.status.upper()}: {self.series}, {self.rows:,} rows "
            f"{self.first_open_time} .. {self.last_open_time}, {self.missing_bars:,} missing bars "
            f"({self.gap_fraction:.3%} of {self.expected_bars:,})",
            f"  {self.funding.line()}",
            f"  {sum(o.success for o in self.outcomes)} of {len(self.outcomes)} expectations met",
        ]
        lines += [f"  FAILED  {o.line()}" for o in self.failures]
        lines += [f"  WARNING {o.line()}" for o in self.warnings]
        return "\n".join(lines)


class DataValidationError(DreamerError):
    """Klines (or their funding) failed the validation gate; `report` holds every outcome."""

    def __init__(self, report: ValidationReport, report_dir: Path | None = None) -> None:
        self.report = report
        self.report_dir = report_dir
        parts = [f"{report.series}: {len(report.failures)} validation failure(s)"]
        for outcome in report.failures:
            parts.append(f"  - {outcome.line()}")
            parts += [f"      e.g. {_format_example(example)}" for example in outcome.examples]
        if report_dir is not None:
            parts.append(f"  report: {report_dir / REPORT_FILE}")
        super().__init__("\n".join(parts))


def validate_series(
    con: duckdb.DuckDBPyConnection,
    category: str,
    symbol: str,
    interval: str,
    cfg: ValidationConfig | None = None,
    start: Any = None,
    end: Any = None,
    out_dir: str | Path | None = None,
    raise_on_failure: bool = True,
) -> ValidationReport:
    """Validate the stored series `(category, symbol, interval)` with candle starts in `[start, end]` and, on
    linear/inverse with `cfg.check_funding`, the stored funding settlements over those candles."""
    from dreamer.data.store import read_funding, read_klines

    cfg = cfg or ValidationConfig()
    klines = read_klines(con, category, symbol, interval, start=start, end=end)
    funding = None
    if cfg.check_funding and category in PERPETUAL_CATEGORIES and not klines.empty:
        funding = read_funding(con, category, symbol, klines["open_time"].iloc[0], klines["open_time"].iloc[-1])
    return validate_klines(
        klines,
        interval,
        cfg,
        category=category,
        symbol=symbol,
        funding=funding,
        out_dir=out_dir,
        raise_on_failure=raise_on_failure,
    )


def validate_klines(
    klines: pd.DataFrame,
    interval: str,
    cfg: ValidationConfig | None = None,
    *,
    category: str | None = None,
    symbol: str | None = None,
    funding: pd.DataFrame | None = None,
    out_dir: str | Path | None = None,
    raise_on_failure: bool = True,
) -> ValidationReport:
    """Run the suite on one series' klines in stored order (`open_time` tz-aware or naive UTC) and, given
    `funding` (settlements in the klines' range, as `dreamer.data.store.read_funding` returns them; empty
    when none are stored), the funding suite on it. Without `funding` the report says why it was not checked.

    Writes the report files to `out_dir` (if given) before raising `DataValidationError` on failures."""
    cfg = cfg or ValidationConfig()
    bar = parse_interval(interval)
    missing = [c for c in REQUIRED_COLUMNS if c not in klines.columns]
    if missing:
        raise DreamerError(f"klines lack column(s) {missing}; expected {list(REQUIRED_COLUMNS)} (+ turnover)")
    frame = _derive_columns(klines, bar)
    expected_bars, missing_bars = _gap_totals(frame, bar)
    batches = [_Batch("klines", frame, build_suite(cfg, list(frame.columns), expected_bars), KLINE_EXAMPLE_COLUMNS)]
    valid_times = frame["open_time_ms"].dropna()
    if funding is None:
        funding_summary = FundingSummary(False, _funding_skip_reason(category, cfg))
    else:
        klines_span = (int(valid_times.min()), int(valid_times.max())) if len(valid_times) else (0, 0)
        funding_frame = _derive_funding_columns(funding, *klines_span)
        spacing = _usual_spacing_hours(funding_frame)
        funding_summary = FundingSummary(
            True,
            settlements=len(funding_frame),
            first_time=format_ms(int(funding_frame["funding_time_ms"].iloc[0])) if len(funding_frame) else None,
            last_time=format_ms(int(funding_frame["funding_time_ms"].iloc[-1])) if len(funding_frame) else None,
            spacing_hours=spacing,
        )
        klines_hours = (klines_span[1] - klines_span[0]) / HOUR_MS
        funding_checks = build_funding_suite(cfg, len(funding_frame), spacing, klines_hours)
        batches.append(_Batch("funding", funding_frame, funding_checks, FUNDING_EXAMPLE_COLUMNS))
    results, gx_results = _run_gx(batches, cfg.report_examples)

    outcomes = [
        _outcome(check, results[check.name], batch.frame, cfg.report_examples, batch.example_columns)
        for batch in batches
        for check in batch.checks
    ]
    report = ValidationReport(
        category=category,
        symbol=symbol,
        interval=bar.code,
        rows=len(frame),
        first_open_time=format_ms(int(valid_times.min())) if len(valid_times) else None,
        last_open_time=format_ms(int(valid_times.max())) if len(valid_times) else None,
        expected_bars=expected_bars,
        missing_bars=missing_bars,
        gap_fraction=missing_bars / expected_bars if expected_bars else 0.0,
        outcomes=outcomes,
        thresholds=asdict(cfg),
        funding=funding_summary,
    )
    report_dir = None
    if out_dir is not None:
        report_dir = write_report(report, out_dir, gx_results)
    if raise_on_failure and not report.passed:
        raise DataValidationError(report, report_dir)
    return report


def _check(name: str, description: str, expectation: Any, severity: Severity = "failure") -> Check:
    expectation.severity = "critical" if severity == "failure" else "warning"
    expectation.meta = {"check": name}
    return Check(name, description, severity, expectation)


@dataclass(frozen=True)
class _Batch:
    """One DataFrame and the checks GX runs on it; `example_columns` are shown for offending rows."""

    name: str
    frame: pd.DataFrame
    checks: list[Check]
    example_columns: tuple[str, ...]


def build_suite(cfg: ValidationConfig, columns: Sequence[str], expected_bars: int) -> list[Check]:
    """The expectations, in report order. `expected_bars` turns gap shares into counts of missing bars."""
    import great_expectations.expectations as gxe

    max_missing = math.floor(cfg.max_gap_fraction * expected_bars)
    warn_missing = math.floor(cfg.warn_gap_fraction * expected_bars)
    checks = [
        _check(f"not_null_{column}", f"{column} is never null", gxe.ExpectColumnValuesToNotBeNull(column=column))
        for column in REQUIRED_COLUMNS
    ]
    checks += [
        _check(
            f"{a}_ge_{b}",
            f"{a} >= {b}",
            gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A=a, column_B=b, or_equal=True, ignore_row_if="either_value_is_missing"
            ),
        )
        for a, b in (("high", "open"), ("high", "close"), ("high", "low"), ("open", "low"), ("close", "low"))
    ]
    checks += [
        _check(
            "low_positive", "low > 0", gxe.ExpectColumnValuesToBeBetween(column="low", min_value=0, strict_min=True)
        ),
        _check("volume_non_negative", "volume >= 0", gxe.ExpectColumnValuesToBeBetween(column="volume", min_value=0)),
    ]
    if "turnover" in columns:
        checks.append(
            _check(
                "turnover_non_negative",
                "turnover >= 0 where present (NULL allowed: CSV sources carry none)",
                gxe.ExpectColumnValuesToBeBetween(column="turnover", min_value=0),
            )
        )
    checks += [
        _check(
            "open_time_unique",
            "one bar per open_time (no duplicates)",
            gxe.ExpectColumnValuesToBeUnique(column="open_time_ms"),
        ),
        _check(
            "open_time_increasing",
            "open_time strictly increasing in stored order",
            gxe.ExpectColumnValuesToBeIncreasing(column="open_time_ms", strictly=True),
        ),
        _check(
            "open_time_aligned",
            "open_time on the interval grid",
            gxe.ExpectColumnValuesToBeInSet(column="aligned", value_set=[True]),
        ),
        _check(
            "gap_share",
            f"missing bars <= {max_missing:,} ({cfg.max_gap_fraction:.2%} of {expected_bars:,} expected bars)",
            gxe.ExpectColumnSumToBeBetween(column="missing_bars_before", max_value=max_missing),
        ),
        _check(
            "gaps_warning",
            f"missing bars <= {warn_missing:,} ({cfg.warn_gap_fraction:.2%} of {expected_bars:,} expected bars)",
            gxe.ExpectColumnSumToBeBetween(column="missing_bars_before", max_value=warn_missing),
            severity="warning",
        ),
        _check(
            "no_absurd_jump",
            f"|log return between consecutive bars| <= {cfg.max_abs_log_return}",
            gxe.ExpectColumnValuesToBeBetween(
                column="log_return", min_value=-cfg.max_abs_log_return, max_value=cfg.max_abs_log_return
            ),
        ),
        _check(
            "large_moves_warning",
            f"|log return between consecutive bars| <= {cfg.warn_abs_log_return}",
            gxe.ExpectColumnValuesToBeBetween(
                column="log_return", min_value=-cfg.warn_abs_log_return, max_value=cfg.warn_abs_log_return
            ),
            severity="warning",
        ),
        _check(
            "no_absurd_wick",
            f"log(high / max(open, close)) and log(min(open, close) / low) <= {cfg.max_log_wick}",
            gxe.ExpectColumnValuesToBeBetween(column="log_wick", max_value=cfg.max_log_wick),
        ),
        _check(
            "no_absurd_price",
            f"high and low within {cfg.max_price_to_median:g}x of the series' median close",
            gxe.ExpectColumnValuesToBeBetween(column="price_to_median", max_value=cfg.max_price_to_median),
        ),
        _check(
            "enough_rows", f"at least {cfg.min_rows:,} rows", gxe.ExpectTableRowCountToBeBetween(min_value=cfg.min_rows)
        ),
    ]
    return checks


def _funding_skip_reason(category: str | None, cfg: ValidationConfig) -> str:
    if category is not None and category not in PERPETUAL_CATEGORIES:
        return f"category {category} has no funding"
    if not cfg.check_funding:
        return "validation.check_funding is false"
    return "no funding history was given to the gate"


def build_funding_suite(
    cfg: ValidationConfig, settlements: int, spacing_hours: float | None, klines_hours: float
) -> list[Check]:
    """The funding expectations over `settlements` rows whose usual spacing is `spacing_hours` (None: fewer
    than two rows), for klines spanning `klines_hours` between their first and last bar."""
    import great_expectations.expectations as gxe

    max_gap = cfg.max_funding_gap_hours
    # Over a span longer than the longest allowed gap at least one settlement must be there; a shorter one
    # may fall between two.
    required = 1 if klines_hours > max_gap else 0
    present = (
        "funding settlements stored over the klines' range (none: ingest them with `dreamer ingest` or "
        "--funding-path; validation.check_funding: false for a contract without funding)"
        if required
        else f"no funding settlement required over klines spanning at most {max_gap:g} h"
    )
    checks = [_check("funding_present", present, gxe.ExpectTableRowCountToBeBetween(min_value=required))]
    if not settlements:  # nothing to look at: column statistics of an empty table mean nothing
        return checks
    edge = spacing_hours or max_gap
    checks += [
        _check(
            "not_null_funding_rate",
            "funding_rate is never null",
            gxe.ExpectColumnValuesToNotBeNull(column="funding_rate"),
        ),
        _check(
            "funding_time_unique",
            "one settlement per time (no duplicates)",
            gxe.ExpectColumnValuesToBeUnique(column="funding_time_ms"),
        ),
        _check(
            "funding_time_increasing",
            "funding_time strictly increasing in stored order",
            gxe.ExpectColumnValuesToBeIncreasing(column="funding_time_ms", strictly=True),
        ),
        _check(
            "funding_time_on_the_hour",
            "settlements on whole hours, as Bybit settles (anything else is a unit or parsing error)",
            gxe.ExpectColumnValuesToBeInSet(column="on_the_hour", value_set=[True]),
        ),
        _check(
            "funding_rate_bounded",
            f"|funding rate| <= {cfg.max_abs_funding_rate:.2%} per settlement",
            gxe.ExpectColumnValuesToBeBetween(
                column="funding_rate", min_value=-cfg.max_abs_funding_rate, max_value=cfg.max_abs_funding_rate
            ),
        ),
        _check(
            "large_funding_warning",
            f"|funding rate| <= {cfg.warn_abs_funding_rate:.2%} per settlement",
            gxe.ExpectColumnValuesToBeBetween(
                column="funding_rate", min_value=-cfg.warn_abs_funding_rate, max_value=cfg.warn_abs_funding_rate
            ),
            severity="warning",
        ),
        _check(
            "funding_covers_start",
            f"first settlement at most {edge:g} h (the usual spacing) after the klines' first bar",
            gxe.ExpectColumnMinToBeBetween(column="hours_after_klines_start", max_value=edge),
        ),
        _check(
            "funding_covers_end",
            f"last settlement at most {edge:g} h (the usual spacing) before the klines' last bar",
            gxe.ExpectColumnMinToBeBetween(column="hours_before_klines_end", max_value=edge),
        ),
        _check(
            "funding_gaps",
            f"at most {max_gap:g} h between consecutive settlements",
            gxe.ExpectColumnValuesToBeBetween(column="hours_since_previous", max_value=max_gap),
        ),
    ]
    if spacing_hours is not None:
        checks.append(
            _check(
                "funding_spacing_warning",
                f"settlements every {spacing_hours:g} h, the series' usual spacing (a schedule change or a "
                "missed settlement otherwise)",
                gxe.ExpectColumnValuesToBeInSet(column="hours_since_previous", value_set=[spacing_hours]),
                severity="warning",
            )
        )
    return checks


def _derive_funding_columns(funding: pd.DataFrame, first_bar_ms: int, last_bar_ms: int) -> pd.DataFrame:
    missing = [c for c in FUNDING_COLUMNS if c not in funding.columns]
    if missing:
        raise DreamerError(f"funding lacks column(s) {missing}; expected {list(FUNDING_COLUMNS)}")
    frame = funding.reset_index(drop=True)[list(FUNDING_COLUMNS)].copy()
    frame.insert(0, _ROW, np.arange(len(frame)))
    times = frame["funding_time_ms"].astype(np.int64)
    frame["funding_time"] = pd.to_datetime(times, unit="ms", utc=True)
    frame["on_the_hour"] = (times % HOUR_MS == 0).to_numpy()
    # Hours, rounded to a readable precision (settlements are whole hours apart; 8.0 stays exactly 8.0).
    frame["hours_since_previous"] = (times.diff() / HOUR_MS).round(4)  # NaN on the first row: GX skips it
    frame["hours_after_klines_start"] = ((times - first_bar_ms) / HOUR_MS).round(4)
    frame["hours_before_klines_end"] = ((last_bar_ms - times) / HOUR_MS).round(4)
    return frame


def _usual_spacing_hours(frame: pd.DataFrame) -> float | None:
    """The most common time between consecutive settlements (the shortest of equally common ones)."""
    spacings = frame["hours_since_previous"].dropna()
    spacings = spacings[spacings > 0]
    return float(spacings.mode().min()) if len(spacings) else None


def _derive_columns(klines: pd.DataFrame, bar: Interval) -> pd.DataFrame:
    frame = klines.reset_index(drop=True).copy()
    frame.insert(0, _ROW, np.arange(len(frame)))
    times = pd.to_datetime(frame["open_time"], utc=True)
    frame["open_time"] = times
    known = times.notna().to_numpy()
    ms = np.zeros(len(frame), dtype=np.int64)
    ms[known] = (times[known] - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)
    sub_ms = np.zeros(len(frame), dtype=bool)
    sub_ms[known] = (times[known].dt.microsecond % 1000 != 0) | (times[known].dt.nanosecond != 0)
    frame["open_time_ms"] = pd.Series(ms, dtype="Int64").mask(~known)
    frame["aligned"] = np.where(known, (bar.floor(ms) == ms) & ~sub_ms, True)  # a null is its own failure
    previous = np.roll(ms, 1)
    counted = known & np.roll(known, 1)
    counted[0] = False
    missing = np.zeros(len(frame), dtype=np.int64)
    missing[counted] = np.maximum(bar.count(previous[counted], ms[counted]) - 2, 0)
    frame["missing_bars_before"] = missing
    close = frame["close"].astype("float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        frame["log_return"] = np.log(close / close.shift(1))
    opens, highs, lows, closes = (frame[c].astype("float64").to_numpy() for c in ("open", "high", "low", "close"))
    # NaN (skipped by GX) where a price is missing or not positive: the null and `low > 0` checks report those.
    positive = (opens > 0) & (highs > 0) & (lows > 0) & (closes > 0)
    median = np.median(closes[positive]) if positive.any() else np.nan
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        wick = np.maximum(np.log(highs / np.maximum(opens, closes)), np.log(np.minimum(opens, closes) / lows))
        frame["log_wick"] = np.where(positive, wick, np.nan)
        frame["price_to_median"] = np.where(positive, np.maximum(highs / median, median / lows), np.nan)
    return frame


def _gap_totals(frame: pd.DataFrame, bar: Interval) -> tuple[int, int]:
    times = frame["open_time_ms"].dropna()
    if times.empty:
        return 0, 0
    first, last = bar.floor(np.asarray([times.min(), times.max()], dtype=np.int64))
    expected = int(bar.count(first, last))
    return expected, int(frame["missing_bars_before"].sum())


def _run_gx(batches: list[_Batch], examples: int) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """GX's result of each check by name (GX does not keep the suite's order), and its raw JSON per batch."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_pandas("dreamer")
    by_name: dict[str, Any] = {}
    raw: dict[str, dict[str, Any]] = {}
    for batch in batches:
        data = (
            source.add_dataframe_asset(batch.name)
            .add_batch_definition_whole_dataframe("series")
            .get_batch(batch_parameters={"dataframe": batch.frame})
        )
        suite = gx.ExpectationSuite(name=batch.name, expectations=[c.expectation for c in batch.checks])
        result = data.validate(
            suite,
            result_format={
                "result_format": "SUMMARY",
                "unexpected_index_column_names": [_ROW],
                "partial_unexpected_count": max(examples, 1),
            },
        )
        found = {}
        for item in result.results:
            config = item.expectation_config
            found[str((config.meta or {}).get("check")) if config else "?"] = item
        if set(found) != {c.name for c in batch.checks}:
            raise DreamerError(f"great_expectations returned results for {sorted(found)}, not the {batch.name} suite's")
        by_name |= found
        raw[batch.name] = result.to_json_dict()
    return by_name, raw


def _outcome(
    check: Check, result: Any, frame: pd.DataFrame, examples: int, example_columns: Sequence[str]
) -> CheckOutcome:
    if result.exception_info and result.exception_info.get("raised_exception"):
        raise DreamerError(f"validation check {check.name} crashed: {result.exception_info.get('exception_message')}")
    expected_type = result.expectation_config.type
    details = result.result or {}
    outcome = CheckOutcome(
        name=check.name,
        description=check.description,
        severity=check.severity,
        expectation=expected_type,
        success=bool(result.success),
        unexpected_count=details.get("unexpected_count"),
        element_count=details.get("element_count"),
        observed_value=details.get("observed_value"),
    )
    if outcome.success or examples == 0:
        return outcome
    if "partial_unexpected_index_list" in details:
        rows = [int(item[_ROW]) for item in details["partial_unexpected_index_list"][:examples]]
    elif getattr(check.expectation, "column", None) == "missing_bars_before":
        rows = frame["missing_bars_before"].nlargest(examples).loc[lambda s: s > 0].index.tolist()
    else:
        rows = []
    outcome.examples = [_example(frame, row, example_columns) for row in rows]
    return outcome


def _example(frame: pd.DataFrame, row: int, example_columns: Sequence[str]) -> dict[str, Any]:
    columns = [c for c in example_columns if c in frame.columns]
    record = {_ROW: int(row), **frame.loc[row, columns].to_dict()}
    return _jsonable(record)


def _format_example(example: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value}" for key, value in example.items())


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else str(value)
    return value


def write_report(
    report: ValidationReport, out_dir: str | Path, gx_results: dict[str, dict[str, Any]] | None = None
) -> Path:
    """Write summary.json, report.html and (optionally) GX's raw results (`{"klines": ..., "funding": ...}`)
    to `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / SUMMARY_FILE, json.dumps(report.to_dict(), indent=2))
    atomic_write_text(out / REPORT_FILE, render_html(report))
    if gx_results is not None:
        for name, path in (("klines", out / GX_RESULT_FILE), ("funding", out / GX_FUNDING_RESULT_FILE)):
            if name in gx_results:
                atomic_write_text(path, json.dumps(_jsonable(gx_results[name]), indent=2, default=str))
            else:  # not checked this time: no stale result from an earlier run in the same folder
                path.unlink(missing_ok=True)
    return out


def render_html(report: ValidationReport) -> str:
    colour = {"passed": "#1a7f37", "passed with warnings": "#9a6700", "failed": "#cf222e"}[report.status]
    rows = []
    for o in report.outcomes:
        state = "met" if o.success else ("FAILED" if o.severity == "failure" else "WARNING")
        counts = (
            f"{o.unexpected_count:,} / {o.element_count:,}"
            if o.unexpected_count is not None and o.element_count is not None
            else html.escape(str(_jsonable(o.observed_value)))
        )
        example_rows = "".join(f"<li><code>{html.escape(_format_example(e))}</code></li>" for e in o.examples)
        rows.append(
            f"<tr class='{state.lower()}'><td>{state}</td><td>{o.severity}</td><td><b>{o.name}</b><br>"
            f"{html.escape(o.description)}<br><small>{o.expectation}</small></td><td>{counts}</td>"
            f"<td><ul>{example_rows}</ul></td></tr>"
        )
    thresholds = "".join(f"<li>{k} = {v}</li>" for k, v in report.thresholds.items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Validation {html.escape(report.series)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #1f2328; }}
table {{ border-collapse: collapse; width: 100%; }}
td, th {{ border: 1px solid #d0d7de; padding: .4rem; vertical-align: top; }}
tr.failed td {{ background: #ffebe9; }} tr.warning td {{ background: #fff8c5; }} ul {{ margin: 0; padding-left: 1rem; }}
.status {{ color: {colour}; font-weight: bold; text-transform: uppercase; }}
</style></head><body>
<h1>Kline validation: {html.escape(report.series)}</h1>
<p class="status">{html.escape(report.status)}</p>
<p>{report.rows:,} rows from {report.first_open_time} to {report.last_open_time};
{report.missing_bars:,} missing bars ({report.gap_fraction:.3%} of {report.expected_bars:,} expected).
{html.escape(report.funding.line())}.
{len(report.failures)} failure(s), {len(report.warnings)} warning(s);
Great Expectations suite of {len(report.outcomes)} expectations.</p>
<table><tr><th>state</th><th>level</th><th>expectation</th><th>unexpected / rows (or observed)</th>
<th>examples</th></tr>
{"".join(rows)}
</table>
<h2>Thresholds</h2><ul>{thresholds}</ul>
</body></html>
"""
