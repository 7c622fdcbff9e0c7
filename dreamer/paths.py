"""Where things live by default, and the environment variables that move them."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SQL_DIR = PROJECT_ROOT / "sql"
BUNDLED_CONFIGS_DIR = Path(__file__).resolve().parent / "configs"
SAMPLE_DIR = Path(__file__).resolve().parent / "resources" / "sample"
SAMPLE_CSV = SAMPLE_DIR / "bybit_BTCUSDT_5m_2026-01_2026-07.csv.gz"
"""Real Bybit linear-perpetual BTCUSDT 5-minute klines, 2026-01-01 00:00 to 2026-07-21 16:55 UTC."""
SAMPLE_FUNDING_CSV = SAMPLE_DIR / "bybit_BTCUSDT_funding_8h_2026-01_2026-07.csv"
"""Real Bybit BTCUSDT funding settlements over the sample's candles: every 8 h, 2026-01-01 00:00 to 2026-07-21 16:00."""

DB_ENV = "DREAMER_DB"
DEFAULT_DB = Path("data") / "dreamer.duckdb"


def default_db_path() -> Path:
    """`$DREAMER_DB` if set, else `./data/dreamer.duckdb` (relative to the working directory)."""
    return Path(os.environ.get(DB_ENV) or DEFAULT_DB)


def read_sql(name: str) -> str:
    """The text of `sql/<name>` (all SQL of the project lives there)."""
    return (SQL_DIR / name).read_text(encoding="utf-8")


RUNS_DIR_ENV = "DREAMER_RUNS_DIR"
DEFAULT_RUNS_DIR = Path("runs")


def default_runs_dir() -> Path:
    """`$DREAMER_RUNS_DIR` if set, else `./runs`: where pipeline runs write their outputs (and the features
    cache), as an absolute path, so tasks running in other directories or processes agree on it."""
    return Path(os.environ.get(RUNS_DIR_ENV) or DEFAULT_RUNS_DIR).resolve()
