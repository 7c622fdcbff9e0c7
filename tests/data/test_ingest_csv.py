"""Data tier: importing kline files (CSV, CSV.gz, Parquet) and the bundled sample."""

from __future__ import annotations

import gzip
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from dreamer.data import store
from dreamer.data.errors import SourceFileError
from dreamer.data.ingest import ingest_csv, ingest_sample
from dreamer.paths import SAMPLE_CSV
from tests.data.kline_helpers import assert_table_equals, stored_arrays

HEADER = "start_ms,open,high,low,close,volume,turnover"
OUT_OF_BOUNDS = "start_ms must lie between 2009-01-01 and one day from now"


def csv_rows(path: Path) -> list[list[str]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as handle:  # type: ignore[operator]
        return [line.split(",") for line in handle.read().splitlines()[1:]]


def write_csv(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join([HEADER, *lines]) + "\n")
    return path


def good_lines(count: int = 6) -> list[str]:
    return [line for line in SAMPLE_CSV.read_bytes() and gzip.decompress(SAMPLE_CSV.read_bytes()).decode()
            .splitlines()[1 : count + 1]]  # fmt: skip


def test_the_bundled_sample(db_path: Path) -> None:
    report = ingest_sample(db_path)
    assert report.source == "sample" and report.rows_inserted == 58_092 and report.gaps_found == 0
    assert_table_equals(db_path, csv_rows(SAMPLE_CSV))  # turnover empty in the file -> NULL
    again = ingest_sample(db_path)
    assert (again.rows_inserted, again.rows_updated, again.rows_unchanged) == (0, 0, 58_092)


def test_bad_rows_are_named_by_line_and_nothing_is_written(db_path: Path, tmp_path: Path) -> None:
    ingest_sample(db_path)
    before = stored_arrays(db_path)
    lines = good_lines(9)
    lines[1] = lines[1].replace(lines[1].split(",")[4], "abc", 1)  # line 3: close 'abc'
    fields = lines[3].split(",")
    fields[2] = str(float(fields[3]) - 1)  # line 5: high below low
    lines[3] = ",".join(fields)
    lines[5] = lines[4]  # line 7: duplicate start time
    lines[6] = ",".join([*lines[6].split(",")[:4], "", *lines[6].split(",")[5:]])  # line 8: empty close
    lines[7] = ""  # line 9: blank line
    with pytest.raises(SourceFileError) as info:
        ingest_csv(db_path, write_csv(tmp_path / "bad.csv", lines), "linear", "BTCUSDT", "5")
    message = str(info.value)
    for expected in ("line 3: close is not a number", "line 8: close is empty", "line 9: ", "nothing was written"):
        assert expected in message, message
    assert stored_arrays(db_path)[0].tolist() == before[0].tolist()  # the good rows were not written either
    # Structural problems are reported once the text parses.
    lines = good_lines(9)
    lines[3] = ",".join([lines[3].split(",")[0], *lines[2].split(",")[1:2], "1", *lines[3].split(",")[3:]])
    lines[5] = lines[4]
    with pytest.raises(SourceFileError) as info:
        ingest_csv(db_path, write_csv(tmp_path / "bad2.csv", lines), "linear", "ETHUSDT", "5")
    assert "line 5: high is below open, close or low" in str(info.value)
    assert "line 7: start time 2026-01-01T00:20Z is not after the previous row's" in str(info.value)
    assert len(stored_arrays(db_path, symbol="ETHUSDT")[0]) == 0
    failed = store.recent_runs(store.connect(db_path, read_only=True), 1).iloc[0]
    assert failed["status"] == "failed" and "SourceFileError" in failed["error"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("time,open,high,low,close,volume\n1,2,3,4,5,6\n", "missing \\['start_ms'\\], unexpected \\['time'\\]"),
        (f"{HEADER}\n", "no rows"),
        ("", "empty"),
        (f"{HEADER}\n1767225600000,1,2,0.5,1,1,,extra\n", "not a readable CSV"),
        (f"{HEADER}\n1767225600000.0,1,2,0.5,1,1,\n", "line 2: start_ms must be epoch milliseconds"),
        (f"{HEADER}\n1767225660000,1,2,0.5,1,1,\n", "line 2: start time 2026-01-01T00:01Z is not the start of a 5"),
        (f"{HEADER}\n1767225600000,1,2,0.5,1,-1,\n", "line 2: volume must be a finite number >= 0"),
        (f"{HEADER}\n1767225600000,1,2,0.5,inf,1,\n", "line 2: open/high/low/close must be finite"),
        (f"{HEADER}\n1767225600000,1,2,0.5,1,1,nan\n", "line 2: turnover is not a number"),
        (f"{HEADER}\n100000000000000,1,2,0.5,1,1,\n", f"line 2: {OUT_OF_BOUNDS}"),  # year 5138
        (f"{HEADER}\n1199145600000,1,2,0.5,1,1,\n", f"line 2: {OUT_OF_BOUNDS}"),  # 2008-01-01
        (f"{HEADER}\n1767225600000000,1,2,0.5,1,1,\n", f"line 2: {OUT_OF_BOUNDS}"),  # microseconds
    ],
)
def test_malformed_files(db_path: Path, tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "file.csv"
    path.write_text(content)
    with pytest.raises(SourceFileError, match=message):
        ingest_csv(db_path, path, "linear", "BTCUSDT", "5")


def test_missing_file_or_a_directory(db_path: Path, tmp_path: Path) -> None:
    with pytest.raises(SourceFileError, match="no such file"):
        ingest_csv(db_path, tmp_path / "nope.csv", "linear", "BTCUSDT", "5")
    with pytest.raises(SourceFileError, match=f"{tmp_path}: is a directory, not a file"):
        ingest_csv(db_path, tmp_path, "linear", "BTCUSDT", "5")


def test_a_candle_more_than_a_day_ahead_is_refused(db_path: Path, tmp_path: Path) -> None:
    bar_ms = 300_000
    now_ms = time.time_ns() // 1_000_000 // bar_ms * bar_ms
    ahead = [f"{now_ms + offset},1,2,0.5,1,1," for offset in (23 * 3_600_000, 25 * 3_600_000)]
    with pytest.raises(SourceFileError, match=f"1 bad row.*\n  line 3: {OUT_OF_BOUNDS}"):
        ingest_csv(db_path, write_csv(tmp_path / "ahead.csv", ahead), "linear", "BTCUSDT", "5")
    assert ingest_csv(db_path, write_csv(tmp_path / "soon.csv", ahead[:1]), "linear", "BTCUSDT", "5").rows_inserted


def test_turnover_is_kept_when_present_and_parquet_matches_csv(db_path: Path, tmp_path: Path) -> None:
    lines = [line + "12345.5" if i % 2 else line for i, line in enumerate(good_lines(50))]
    csv_path = write_csv(tmp_path / "k.csv", lines)
    ingest_csv(db_path, csv_path, "linear", "BTCUSDT", "5")
    assert_table_equals(db_path, csv_rows(csv_path))
    table = pacsv.read_csv(csv_path, convert_options=pacsv.ConvertOptions(column_types={"turnover": pa.float64()}))
    pq.write_table(table, tmp_path / "k.parquet")
    report = ingest_csv(db_path, tmp_path / "k.parquet", "linear", "ETHUSDT", "5")
    assert report.rows_inserted == 50
    assert_table_equals(db_path, csv_rows(csv_path), symbol="ETHUSDT")


def test_a_real_export_with_an_interval_mismatch_is_rejected(db_path: Path) -> None:
    with pytest.raises(SourceFileError, match="is not the start of a 15 candle"):
        ingest_csv(db_path, SAMPLE_CSV, "linear", "BTCUSDT", "15")


def test_shared_btc_export(db_path: Path, shared_data: Path) -> None:
    path = shared_data / "bybit_BTCUSDT_5m_2025-01_2026-07.csv.gz"
    report = ingest_csv(db_path, path, "linear", "BTCUSDT", "5")
    assert report.rows_inserted == 163_212 and report.gaps_found == 0
    assert_table_equals(db_path, csv_rows(path))
