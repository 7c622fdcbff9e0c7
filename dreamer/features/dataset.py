"""`MarketDataset`: the bars of one market as aligned numpy arrays, split and normalised.

Row t holds what is known at the close of bar t (`obs[t]`, `close[t]`) and, separately, the quantity the
agent trades on, `next_log_return[t] = log(close[t+1] / close[t])`, NaN where bar t+1 is missing. `splits`
are half-open row ranges `[start, stop)`, chronological and separated by a purge gap. `obs` is normalised
with statistics fitted on the train rows only; the same `Normaliser` is saved with the dataset so
evaluation and inference reuse it unchanged.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dreamer.errors import DreamerError

SPLIT_NAMES = ("train", "val", "test")
DATASET_ARRAYS = "dataset.npz"
DATASET_META = "dataset.json"
NORMALISER_FILE = "normaliser.json"
_STD_FLOOR = 1e-6  # a constant feature on train is centred, not blown up


class DatasetError(DreamerError):
    """A dataset is inconsistent, too small for its split, or missing on disk."""


@dataclass(frozen=True)
class Normaliser:
    """Per-feature `(x - mean) / std`, fitted on the training rows only."""

    feature_names: tuple[str, ...]
    mean: np.ndarray  # [F] float64
    std: np.ndarray  # [F] float64, floored at _STD_FLOOR

    @classmethod
    def fit(cls, features: np.ndarray, feature_names: Sequence[str]) -> Normaliser:
        """Statistics of `features [N_train, F]` (the train rows, already symlog-scaled)."""
        if features.ndim != 2 or features.shape[1] != len(feature_names):
            raise DatasetError(f"normaliser: expected [N, {len(feature_names)}] features, got {features.shape}")
        if features.shape[0] < 2:
            raise DatasetError("normaliser: need at least 2 training rows to fit mean/std")
        if not np.isfinite(features).all():
            raise DatasetError("normaliser: training features contain NaN/inf (warm-up rows must be dropped)")
        values = features.astype(np.float64)
        std = np.maximum(values.std(axis=0), _STD_FLOOR)
        return cls(tuple(feature_names), values.mean(axis=0), std)

    def apply(self, features: np.ndarray) -> np.ndarray:
        """`features [..., F]` -> normalised float32 `[..., F]`."""
        if features.shape[-1] != len(self.feature_names):
            raise DatasetError(f"normaliser: expected {len(self.feature_names)} features, got {features.shape[-1]}")
        return ((features - self.mean) / self.std).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {"feature_names": list(self.feature_names), "mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Normaliser:
        names = tuple(data["feature_names"])
        mean = np.asarray(data["mean"], dtype=np.float64)
        std = np.asarray(data["std"], dtype=np.float64)
        if mean.shape != (len(names),) or std.shape != (len(names),) or (std <= 0).any():
            raise DatasetError("normaliser: mean/std do not match feature_names or std <= 0")
        return cls(names, mean, std)

    def save(self, path: str | Path) -> None:
        atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> Normaliser:
        path = Path(path)
        if not path.exists():
            raise DatasetError(f"normaliser file {path} does not exist")
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))


@dataclass(frozen=True)
class BarFunding:
    """The funding of a perpetual, per dataset row (all zero for a contract without funding).

    Timing as in `dreamer.trading`: a position decided at the close of row t and held to the close of row
    t+1 pays `position × next_rate[t]`."""

    known_rate: np.ndarray  # [N] float64, the latest rate settled by the close of t: known then
    next_rate: np.ndarray  # [N] float64, rates settled after the close of t up to the next row's close; NaN last
    next_settlements: np.ndarray  # [N] int32, how many settlements that is (the schedule; 0 on the last row)

    @classmethod
    def none(cls, size: int) -> BarFunding:
        """No funding at all (spot, a synthetic market, or a perpetual whose funding check was turned off)."""
        next_rate = np.zeros(size)
        next_rate[-1:] = np.nan
        return cls(np.zeros(size), next_rate, np.zeros(size, dtype=np.int32))

    def take(self, rows: np.ndarray) -> BarFunding:
        """The funding of dataset rows `rows [M]`, in that order."""
        return BarFunding(self.known_rate[rows], self.next_rate[rows], self.next_settlements[rows])

    @classmethod
    def from_settled(cls, known_rate: np.ndarray, settled_sum: np.ndarray, settled_count: np.ndarray) -> BarFunding:
        """From the latest known rate and the running totals of rates and settlements up to each row's close
        (sql/features.sql): the funding of the next row is the difference of consecutive totals."""
        return cls(
            np.asarray(known_rate, dtype=np.float64),
            np.append(np.diff(np.asarray(settled_sum, dtype=np.float64)), np.nan),
            np.append(np.diff(np.asarray(settled_count, dtype=np.int64)), 0).astype(np.int32),
        )


@dataclass(frozen=True)
class MarketDataset:
    open_time_ms: np.ndarray  # [N] int64, candle start (UTC epoch ms), strictly increasing
    close: np.ndarray  # [N] float64
    obs: np.ndarray  # [N, F] float32, symlog features normalised with train statistics
    next_log_return: np.ndarray  # [N] float32, log(close[t+1]/close[t]); NaN where bar t+1 is missing
    segment_id: np.ndarray  # [N] int32, gap-free runs of consecutive bars (non-decreasing)
    funding: BarFunding  # per row; all zero for a contract without funding
    feature_names: tuple[str, ...]
    splits: dict[str, tuple[int, int]]  # name -> [start, stop) row range
    normaliser: Normaliser
    meta: dict[str, Any] = field(default_factory=dict)  # symbol, interval, purge_bars, ...

    def __post_init__(self) -> None:
        n = len(self.open_time_ms)
        shapes = {
            "close": (self.close.shape, (n,)),
            "obs": (self.obs.shape, (n, len(self.feature_names))),
            "next_log_return": (self.next_log_return.shape, (n,)),
            "segment_id": (self.segment_id.shape, (n,)),
            "funding.known_rate": (self.funding.known_rate.shape, (n,)),
            "funding.next_rate": (self.funding.next_rate.shape, (n,)),
            "funding.next_settlements": (self.funding.next_settlements.shape, (n,)),
        }
        for name, (shape, expected) in shapes.items():
            if shape != expected:
                raise DatasetError(f"dataset: {name} has shape {shape}, expected {expected}")
        if n > 1 and not (np.diff(self.open_time_ms) > 0).all():
            raise DatasetError("dataset: open_time_ms must be strictly increasing")
        if n > 1 and (np.diff(self.segment_id) < 0).any():
            raise DatasetError("dataset: segment_id must be non-decreasing")
        if set(self.splits) != set(SPLIT_NAMES):
            raise DatasetError(f"dataset: splits must be exactly {SPLIT_NAMES}, got {sorted(self.splits)}")
        previous_stop = 0
        for name in SPLIT_NAMES:
            start, stop = self.splits[name]
            if not previous_stop <= start <= stop <= n:
                raise DatasetError(f"dataset: split {name}={self.splits[name]} is not chronological within [0, {n}]")
            previous_stop = stop
        if self.normaliser.feature_names != self.feature_names:
            raise DatasetError("dataset: normaliser was fitted on different features")

    @property
    def num_features(self) -> int:
        return len(self.feature_names)

    def __len__(self) -> int:
        return len(self.open_time_ms)

    def split_slice(self, split: str) -> slice:
        if split not in self.splits:
            raise DatasetError(f"unknown split {split!r}; expected one of {SPLIT_NAMES}")
        start, stop = self.splits[split]
        return slice(start, stop)

    @classmethod
    def from_arrays(
        cls,
        open_time_ms: np.ndarray,
        close: np.ndarray,
        features: np.ndarray,
        next_log_return: np.ndarray,
        segment_id: np.ndarray,
        feature_names: Sequence[str],
        splits: Mapping[str, tuple[int, int]],
        normaliser: Normaliser | None = None,
        meta: Mapping[str, Any] | None = None,
        funding: BarFunding | None = None,
    ) -> MarketDataset:
        """Assemble a dataset from raw (symlog, not yet normalised) `features [N, F]`.

        The normaliser is fitted on the train rows unless one is given (inference on new data reuses the
        training normaliser). Without `funding` the market pays none."""
        features = np.asarray(features)
        splits = {name: (int(start), int(stop)) for name, (start, stop) in splits.items()}
        if normaliser is None:
            train = splits.get("train")
            if train is None:
                raise DatasetError("dataset: a train split is required to fit the normaliser")
            normaliser = Normaliser.fit(features[train[0] : train[1]], feature_names)
        return cls(
            open_time_ms=np.asarray(open_time_ms, dtype=np.int64),
            close=np.asarray(close, dtype=np.float64),
            obs=normaliser.apply(features),
            next_log_return=np.asarray(next_log_return, dtype=np.float32),
            segment_id=np.asarray(segment_id, dtype=np.int32),
            funding=BarFunding.none(len(open_time_ms)) if funding is None else funding,
            feature_names=tuple(feature_names),
            splits=splits,
            normaliser=normaliser,
            meta=dict(meta or {}),
        )

    def save(self, directory: str | Path) -> Path:
        """Write `dataset.npz`, `dataset.json` and `normaliser.json` under `directory` (each atomically)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=".dataset-", suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as handle:
                np.savez(
                    handle,
                    open_time_ms=self.open_time_ms,
                    close=self.close,
                    obs=self.obs,
                    next_log_return=self.next_log_return,
                    segment_id=self.segment_id,
                    funding_known_rate=self.funding.known_rate,
                    funding_next_rate=self.funding.next_rate,
                    funding_next_settlements=self.funding.next_settlements,
                )
            os.replace(tmp_name, directory / DATASET_ARRAYS)
        finally:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
        meta = {
            "feature_names": list(self.feature_names),
            "splits": {name: list(bounds) for name, bounds in self.splits.items()},
            "meta": self.meta,
        }
        atomic_write_text(directory / DATASET_META, json.dumps(meta, indent=2, default=str))
        self.normaliser.save(directory / NORMALISER_FILE)
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> MarketDataset:
        directory = Path(directory)
        missing = [name for name in (DATASET_ARRAYS, DATASET_META, NORMALISER_FILE) if not (directory / name).exists()]
        if missing:
            raise DatasetError(f"{directory} is not a saved dataset: missing {', '.join(missing)}")
        meta = json.loads((directory / DATASET_META).read_text(encoding="utf-8"))
        with np.load(directory / DATASET_ARRAYS) as arrays:
            funding = (  # datasets saved before funding existed pay none
                BarFunding(
                    arrays["funding_known_rate"], arrays["funding_next_rate"], arrays["funding_next_settlements"]
                )
                if "funding_next_rate" in arrays
                else BarFunding.none(len(arrays["open_time_ms"]))
            )
            return cls(
                open_time_ms=arrays["open_time_ms"],
                close=arrays["close"],
                obs=arrays["obs"],
                next_log_return=arrays["next_log_return"],
                segment_id=arrays["segment_id"],
                funding=funding,
                feature_names=tuple(meta["feature_names"]),
                splits={name: (int(b[0]), int(b[1])) for name, b in meta["splits"].items()},
                normaliser=Normaliser.load(directory / NORMALISER_FILE),
                meta=dict(meta.get("meta", {})),
            )


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file and a rename: a crash leaves the old file or none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp_name, path)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
