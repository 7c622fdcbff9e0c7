"""Fixtures shared by every test tier: a temporary database path and a loopback fake Bybit serving real
klines and funding settlements (the bundled sample). Tier-specific fixtures live next to their tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dreamer.paths import SAMPLE_CSV, SAMPLE_FUNDING_CSV
from tests.fakes.bybit_server import FakeBybit, FundingSeries, KlineSeries

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FAKE_SERIES_KEY = ("linear", "BTCUSDT", "5")
FAKE_SERIES_CANDLES = 4_321  # five windows of 1000 and a partial one
FAKE_FUNDING_KEY = ("linear", "BTCUSDT")


@pytest.fixture(scope="session")
def sample_series() -> KlineSeries:
    """The first `FAKE_SERIES_CANDLES` candles of the bundled BTCUSDT 5m sample, as Bybit would serve them."""
    return KlineSeries.from_csv(SAMPLE_CSV, count=FAKE_SERIES_CANDLES)


@pytest.fixture(scope="session")
def sample_funding() -> FundingSeries:
    """The bundled sample's BTCUSDT funding settlements (2026-01-01 .. 2026-07-21, every 8 h)."""
    return FundingSeries.from_csv(SAMPLE_FUNDING_CSV)


@pytest.fixture
def fake_bybit(sample_series: KlineSeries, sample_funding: FundingSeries) -> Iterator[FakeBybit]:
    """A started fake Bybit serving `sample_series` as linear BTCUSDT 5 (its newest candle still open) and
    the sample's funding history (settled up to the fake's clock)."""
    with FakeBybit({FAKE_SERIES_KEY: sample_series}, {FAKE_FUNDING_KEY: sample_funding}) as fake:
        yield fake


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "db" / "dreamer.duckdb"


@pytest.fixture
def shared_data() -> Path:
    """`../shared/data` (real Bybit exports); tests needing it skip where a clone lacks it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent (only the bundled sample ships with the project)")
    return SHARED_DATA
