"""Fixtures of the code tier: the features of a module's own synthetic `klines` with their funding."""

from __future__ import annotations

import pandas as pd
import pytest

from dreamer.features.build import compute_features
from tests.feature_fixtures import synthetic_funding


@pytest.fixture(scope="module")
def funding(klines: pd.DataFrame) -> pd.DataFrame:
    """Settlements every 8 hours around the requesting module's `klines` fixture."""
    return synthetic_funding(klines)


@pytest.fixture(scope="module")
def features(klines: pd.DataFrame, funding: pd.DataFrame) -> pd.DataFrame:
    """`compute_features` of the module's `klines` and `funding` on 5-minute bars."""
    return compute_features(klines, "5", funding)
