"""The klines a run read, as an MLflow dataset input: identity (content hash), source and profile, no data."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlflow.data.dataset import Dataset
from mlflow.data.dataset_source import DatasetSource
from mlflow.types import ColSpec, Schema

KLINE_SCHEMA = Schema(
    [ColSpec("datetime", "open_time"), *(ColSpec("double", c) for c in ("open", "high", "low", "close", "volume"))]
)


class DuckDBTableSource(DatasetSource):
    """One series of the `klines` table in a DuckDB file."""

    def __init__(self, db_path: str, category: str, symbol: str, interval: str) -> None:
        self.db_path, self.category, self.symbol, self.interval = db_path, category, symbol, interval

    @staticmethod
    def _get_source_type() -> str:
        return "duckdb"

    def load(self, **kwargs: Any) -> str:
        return self.db_path

    @staticmethod
    def _can_resolve(raw_source: Any) -> bool:
        return False

    @classmethod
    def _resolve(cls, raw_source: Any) -> DuckDBTableSource:
        raise NotImplementedError("DuckDBTableSource is only built explicitly")

    def to_dict(self) -> dict[str, Any]:
        return {
            "db_path": self.db_path,
            "table": "klines",
            "category": self.category,
            "symbol": self.symbol,
            "interval": self.interval,
        }

    @classmethod
    def from_dict(cls, source_dict: dict[Any, Any]) -> DuckDBTableSource:
        return cls(source_dict["db_path"], source_dict["category"], source_dict["symbol"], source_dict["interval"])


class KlinesDataset(Dataset):
    """Name: the market; digest: the first 16 hex digits of the klines' SHA-256; profile: rows and ranges."""

    def __init__(self, source: DuckDBTableSource, name: str, content_hash: str, profile: Mapping[str, Any]) -> None:
        self._profile = dict(profile)
        super().__init__(source=source, name=name, digest=content_hash[:16])

    @classmethod
    def from_stage(cls, data: Mapping[str, Any], db_path: str | Path) -> KlinesDataset:
        """From `dreamer.pipeline.stage_features`' result."""
        source = DuckDBTableSource(str(Path(db_path).resolve()), data["category"], data["symbol"], data["interval"])
        profile = {
            "content_hash": data.get("content_hash"),
            "klines": data.get("klines"),
            "rows": data.get("rows"),
            "first_open_time": data.get("first_open_time"),
            "last_open_time": data.get("last_open_time"),
            "splits": data.get("splits"),
            "source": data.get("source"),
        }
        name = f"klines {data['category']}/{data['symbol']}/{data['interval']}"
        return cls(source, name, str(data.get("content_hash") or "unknown"), profile)

    def _compute_digest(self) -> str:
        raise AssertionError("the digest is always given (the content hash)")

    @property
    def profile(self) -> dict[str, Any]:
        return self._profile

    @property
    def schema(self) -> Schema:
        return KLINE_SCHEMA

    def to_dict(self) -> dict[str, str]:
        config = super().to_dict()
        config["profile"] = json.dumps(self._profile, default=str)
        config["schema"] = json.dumps({"mlflow_colspec": KLINE_SCHEMA.to_dict()})
        return config
