"""The validation gate: a Great Expectations suite over the klines of one series.

Every check is a GX expectation run on a pandas DataFrame read from DuckDB (GX cannot validate DuckDB
through its SQL datasource). Columns GX cannot express directly (alignment to the interval grid, the
one-bar log return, bars missing before each bar) are derived first and validated like any other column.

Two levels, from `FailureSeverity`: a *failure* (bad OHLC, duplicates, misaligned bars, too many gaps,
absurd jumps, too few rows) raises `DataValidationError` naming each failed expectation with its counts
and a few offending rows; a *warning* (a few gaps, large but plausible moves) is reported and the
pipeline goes on. Each run writes `report.html` and `summary.json` (and GX's own result as
`gx_result.json`) when given an output folder.

`turnover` may be NULL: Bybit's CSV exports and the bundled sample carry none. Only where present must it
be >= 0; every other column must be non-null.
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

from dreamer.data.markets import Interval, format_ms, parse_interval
from dreamer.errors import DreamerError
from dreamer.features.config import ValidationConfig
from dreamer.features.dataset import atomic_write_text

if TYPE_CHECKING:
    import duckdb

Severity = Literal["failure", "warning"]
REQUIRED_COLUMNS = ("open_time", "open", "high", "low", "close", "volume")
SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.html"
GX_RESULT_FILE = "gx_result.json"
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
            f"  {sum(o.success for o in self.outcomes)} of {len(self.outcomes)} expectations met",
        ]
        lines += [f"  FAILED  {o.line()}" for o in self.failures]
        lines += [f"  WARNING {o.line()}" for o in self.warnings]
        return "\n".join(lines)


class DataValidationError(DreamerError):
    """Klines failed the validation gate; `report` holds every outcome."""

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
    """Validate the stored series `(category, symbol, interval)` with candle starts in `[start, end]`."""
    from dreamer.data.store import read_klines

    klines = read_klines(con, category, symbol, interval, start=start, end=end)
    return validate_klines(
        klines, interval, cfg, category=category, symbol=symbol, out_dir=out_dir, raise_on_failure=raise_on_failure
    )


def validate_klines(
    klines: pd.DataFrame,
    interval: str,
    cfg: ValidationConfig | None = None,
    *,
    category: str | None = None,
    symbol: str | None = None,
    out_dir: str | Path | None = None,
    raise_on_failure: bool = True,
) -> ValidationReport:
    """Run the suite on one series' klines in stored order (`open_time` tz-aware or naive UTC).

    Writes the report files to `out_dir` (if given) before raising `DataValidationError` on failures."""
    cfg = cfg or ValidationConfig()
    bar = parse_interval(interval)
    missing = [c for c in REQUIRED_COLUMNS if c not in klines.columns]
    if missing:
        raise DreamerError(f"klines lack column(s) {missing}; expected {list(REQUIRED_COLUMNS)} (+ turnover)")
    frame = _derive_columns(klines, bar)
    expected_bars, missing_bars = _gap_totals(frame, bar)
    checks = build_suite(cfg, list(frame.columns), expected_bars)
    results, gx_result = _run_gx(frame, checks, cfg.report_examples)

    outcomes = [_outcome(check, results[check.name], frame, cfg.report_examples) for check in checks]
    valid_times = frame["open_time_ms"].dropna()
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
    )
    report_dir = None
    if out_dir is not None:
        report_dir = write_report(report, out_dir, gx_result)
    if raise_on_failure and not report.passed:
        raise DataValidationError(report, report_dir)
    return report


def build_suite(cfg: ValidationConfig, columns: Sequence[str], expected_bars: int) -> list[Check]:
    """The expectations, in report order. `expected_bars` turns gap shares into counts of missing bars."""
    import great_expectations.expectations as gxe

    def check(name: str, description: str, expectation: Any, severity: Severity = "failure") -> Check:
        expectation.severity = "critical" if severity == "failure" else "warning"
        expectation.meta = {"check": name}
        return Check(name, description, severity, expectation)

    max_missing = math.floor(cfg.max_gap_fraction * expected_bars)
    warn_missing = math.floor(cfg.warn_gap_fraction * expected_bars)
    checks = [
        check(f"not_null_{column}", f"{column} is never null", gxe.ExpectColumnValuesToNotBeNull(column=column))
        for column in REQUIRED_COLUMNS
    ]
    checks += [
        check(
            f"{a}_ge_{b}",
            f"{a} >= {b}",
            gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A=a, column_B=b, or_equal=True, ignore_row_if="either_value_is_missing"
            ),
        )
        for a, b in (("high", "open"), ("high", "close"), ("high", "low"), ("open", "low"), ("close", "low"))
    ]
    checks += [
        check("low_positive", "low > 0", gxe.ExpectColumnValuesToBeBetween(column="low", min_value=0, strict_min=True)),
        check("volume_non_negative", "volume >= 0", gxe.ExpectColumnValuesToBeBetween(column="volume", min_value=0)),
    ]
    if "turnover" in columns:
        checks.append(
            check(
                "turnover_non_negative",
                "turnover >= 0 where present (NULL allowed: CSV sources carry none)",
                gxe.ExpectColumnValuesToBeBetween(column="turnover", min_value=0),
            )
        )
    checks += [
        check(
            "open_time_unique",
            "one bar per open_time (no duplicates)",
            gxe.ExpectColumnValuesToBeUnique(column="open_time_ms"),
        ),
        check(
            "open_time_increasing",
            "open_time strictly increasing in stored order",
            gxe.ExpectColumnValuesToBeIncreasing(column="open_time_ms", strictly=True),
        ),
        check(
            "open_time_aligned",
            "open_time on the interval grid",
            gxe.ExpectColumnValuesToBeInSet(column="aligned", value_set=[True]),
        ),
        check(
            "gap_share",
            f"missing bars <= {max_missing:,} ({cfg.max_gap_fraction:.2%} of {expected_bars:,} expected bars)",
            gxe.ExpectColumnSumToBeBetween(column="missing_bars_before", max_value=max_missing),
        ),
        check(
            "gaps_warning",
            f"missing bars <= {warn_missing:,} ({cfg.warn_gap_fraction:.2%} of {expected_bars:,} expected bars)",
            gxe.ExpectColumnSumToBeBetween(column="missing_bars_before", max_value=warn_missing),
            severity="warning",
        ),
        check(
            "no_absurd_jump",
            f"|log return between consecutive bars| <= {cfg.max_abs_log_return}",
            gxe.ExpectColumnValuesToBeBetween(
                column="log_return", min_value=-cfg.max_abs_log_return, max_value=cfg.max_abs_log_return
            ),
        ),
        check(
            "large_moves_warning",
            f"|log return between consecutive bars| <= {cfg.warn_abs_log_return}",
            gxe.ExpectColumnValuesToBeBetween(
                column="log_return", min_value=-cfg.warn_abs_log_return, max_value=cfg.warn_abs_log_return
            ),
            severity="warning",
        ),
        check(
            "enough_rows", f"at least {cfg.min_rows:,} rows", gxe.ExpectTableRowCountToBeBetween(min_value=cfg.min_rows)
        ),
    ]
    return checks


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
    return frame


def _gap_totals(frame: pd.DataFrame, bar: Interval) -> tuple[int, int]:
    times = frame["open_time_ms"].dropna()
    if times.empty:
        return 0, 0
    first, last = bar.floor(np.asarray([times.min(), times.max()], dtype=np.int64))
    expected = int(bar.count(first, last))
    return expected, int(frame["missing_bars_before"].sum())


def _run_gx(frame: pd.DataFrame, checks: list[Check], examples: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """GX's result of each check by name (GX does not keep the suite's order), and its raw JSON."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (
        context.data_sources.add_pandas("klines")
        .add_dataframe_asset("klines")
        .add_batch_definition_whole_dataframe("series")
        .get_batch(batch_parameters={"dataframe": frame})
    )
    suite = gx.ExpectationSuite(name="klines", expectations=[c.expectation for c in checks])
    result = batch.validate(
        suite,
        result_format={
            "result_format": "SUMMARY",
            "unexpected_index_column_names": [_ROW],
            "partial_unexpected_count": max(examples, 1),
        },
    )
    by_name: dict[str, Any] = {}
    for item in result.results:
        config = item.expectation_config
        by_name[str((config.meta or {}).get("check")) if config else "?"] = item
    if set(by_name) != {c.name for c in checks}:
        raise DreamerError(f"great_expectations returned results for {sorted(map(str, by_name))}, not the suite's")
    return by_name, result.to_json_dict()


def _outcome(check: Check, result: Any, frame: pd.DataFrame, examples: int) -> CheckOutcome:
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
    outcome.examples = [_example(frame, row) for row in rows]
    return outcome


def _example(frame: pd.DataFrame, row: int) -> dict[str, Any]:
    columns = [c for c in (*REQUIRED_COLUMNS, "turnover", "missing_bars_before", "log_return") if c in frame.columns]
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


def write_report(report: ValidationReport, out_dir: str | Path, gx_result: dict[str, Any] | None = None) -> Path:
    """Write summary.json, report.html and (optionally) GX's raw result to `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / SUMMARY_FILE, json.dumps(report.to_dict(), indent=2))
    atomic_write_text(out / REPORT_FILE, render_html(report))
    if gx_result is not None:
        atomic_write_text(out / GX_RESULT_FILE, json.dumps(_jsonable(gx_result), indent=2, default=str))
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
{len(report.failures)} failure(s), {len(report.warnings)} warning(s);
Great Expectations suite of {len(report.outcomes)} expectations.</p>
<table><tr><th>state</th><th>level</th><th>expectation</th><th>unexpected / rows (or observed)</th>
<th>examples</th></tr>
{"".join(rows)}
</table>
<h2>Thresholds</h2><ul>{thresholds}</ul>
</body></html>
"""
