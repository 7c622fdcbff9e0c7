"""Code tier: the walk-forward's folds, fold datasets, saved and stitched backtests, tasks and resume."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dreamer.config import RunConfig, load_config
from dreamer.errors import ConfigError, DreamerError
from dreamer.evaluation.backtest import run_backtest
from dreamer.evaluation.config import EvaluationConfig
from dreamer.evaluation.metrics import compute_metrics, periods_per_year
from dreamer.features.build import FEATURE_COLUMNS, compute_features
from dreamer.features.config import SplitConfig
from dreamer.features.dataset import MarketDataset, Normaliser
from dreamer.features.split import MIN_PURGE_BARS
from dreamer.research import walk_forward as wf
from dreamer.research.backtests import (
    Backtests,
    BacktestsError,
    average,
    concatenate,
    load_backtests,
    save_backtests,
)
from dreamer.research.config import WalkForwardConfig
from tests.feature_fixtures import BAR_MS, synthetic_klines

BARS_PER_DAY = 288
PURGE = MIN_PURGE_BARS
# Two short folds over ~24 days of 5-minute bars: each needs 7 days of warm-up and two purges of 7 days.
SHORT = WalkForwardConfig(folds=2, train_days=1.0, val_days=0.5, test_days=0.5)


@pytest.fixture(scope="module")
def klines() -> pd.DataFrame:
    return synthetic_klines(7_000)


def grid(bars: int, missing: tuple[range, ...] = ()) -> np.ndarray:
    """Open times of `bars` 5-minute bars, without the positions in `missing` (gaps)."""
    times = np.arange(bars, dtype=np.int64) * BAR_MS
    return np.delete(times, np.concatenate([np.asarray(gap) for gap in missing])) if missing else times


# --- config ---------------------------------------------------------------------------------------


def test_run_config_has_a_walk_forward_section_with_defaults() -> None:
    assert RunConfig().walk_forward == WalkForwardConfig(
        folds=4, mode="rolling", train_days=90.0, val_days=14.0, test_days=14.0, warm_start_from_previous_fold=False
    )
    cfg = load_config("tiny", {"walk_forward": {"mode": "expanding", "test_days": 7}})
    assert cfg.walk_forward.mode == "expanding" and cfg.walk_forward.test_days == 7.0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"folds": 0}, r"walk_forward\.folds must be in \[1, 1,000\], got 0"),
        ({"test_days": 0}, r"walk_forward\.test_days must be in \(0, 36,500\] days, got 0"),
        ({"train_days": -1.0}, r"walk_forward\.train_days must be in"),
        ({"val_days": 1e6}, r"walk_forward\.val_days must be in"),
        ({"mode": "sliding"}, r"walk_forward\.mode: 'sliding' is not one of \['rolling', 'expanding'\]"),
        ({"warm_start_from_previous_fold": "yes"}, r"walk_forward\.warm_start_from_previous_fold: expected true/false"),
        ({"step_days": 3}, r"walk_forward: unknown key\(s\) \['step_days'\]"),
    ],
)
def test_bad_walk_forward_values_are_refused_naming_the_key(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config("tiny", {"walk_forward": overrides})


# --- folds ----------------------------------------------------------------------------------------


def assert_walk_forward(windows: list[wf.FoldWindow], rows: int, purge: int) -> None:
    """Each fold chronological and purged; test windows consecutive (one shared boundary row, the close that
    ends a window is the next one's first traded bar), non-overlapping in traded bars, the last at the end."""
    for window in windows:
        assert window.train[0] < window.train[1] <= window.val[0] - purge
        assert window.val[0] < window.val[1] <= window.test[0] - purge
        assert window.test[1] - window.test[0] >= 3
    traded = [set(range(w.test[0], w.test[1] - 1)) for w in windows]
    for previous, following, previous_traded, following_traded in zip(
        windows, windows[1:], traded, traded[1:], strict=False
    ):
        assert previous.test[1] - 1 == following.test[0]
        assert not previous_traded & following_traded
    assert windows[-1].test[1] == rows


@pytest.mark.parametrize("mode", ["rolling", "expanding"])
def test_folds_are_purged_consecutive_and_end_at_the_last_bar(mode: str) -> None:
    cfg = WalkForwardConfig(folds=3, mode=mode, train_days=10.0, val_days=2.0, test_days=3.0)  # type: ignore[arg-type]
    times = grid(40 * BARS_PER_DAY)
    windows = wf.plan_folds(times, cfg, PURGE)
    assert [w.fold for w in windows] == [0, 1, 2]
    assert_walk_forward(windows, len(times), PURGE)
    for window in windows:  # sizes in days, the purges on top of them
        assert window.test[1] - 1 - window.test[0] == 3 * BARS_PER_DAY
        assert window.val == (window.test[0] - PURGE - 2 * BARS_PER_DAY, window.test[0] - PURGE)
        assert window.train[1] == window.val[0] - PURGE
        if mode == "rolling":
            assert window.train[1] - window.train[0] == 10 * BARS_PER_DAY
        else:
            assert window.train[0] == 0
    if mode == "rolling":  # each fold moves on by one test window
        assert windows[1].train[0] - windows[0].train[0] == 3 * BARS_PER_DAY


def test_folds_around_gaps_stay_purged_and_consecutive() -> None:
    cfg = WalkForwardConfig(folds=4, train_days=5.0, val_days=1.0, test_days=1.0)
    bars = 30 * BARS_PER_DAY
    # Test windows start at bars 7487, 7775, 8063 and 8351 (whole days back from the last bar, 8639): one gap
    # across the boundary of folds 0 and 1, one inside fold 2's window.
    times = grid(bars, missing=(range(7770, 7780), range(8100, 8160)))
    windows = wf.plan_folds(times, cfg, PURGE)
    assert_walk_forward(windows, len(times), PURGE)
    traded = [times[w.test[0]] // BAR_MS for w in windows]
    assert traded == [7487, 7780, 8063, 8351]  # fold 1 starts with the first bar after the gap
    assert [w.test[1] - 1 - w.test[0] for w in windows] == [283, 283, 228, 288]


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        (WalkForwardConfig(folds=10, train_days=5.0, val_days=1.0, test_days=1.0), r"use fewer walk_forward\.folds"),
        (WalkForwardConfig(folds=1, train_days=30.0, val_days=1.0, test_days=1.0), r"shorter walk_forward\.train_days"),
        (
            WalkForwardConfig(folds=1, mode="expanding", train_days=30.0, val_days=1.0, test_days=1.0),
            r"do not fit the 20\.0 days",
        ),
        (WalkForwardConfig(folds=1, train_days=1.0, val_days=1.0, test_days=0.003), r"walk_forward\.test_days"),
    ],
)
def test_folds_that_do_not_fit_the_data_name_the_keys(cfg: WalkForwardConfig, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        wf.plan_folds(grid(20 * BARS_PER_DAY + 1), cfg, PURGE)


# --- fold datasets --------------------------------------------------------------------------------


def test_fold_datasets_hold_the_planned_rows(features: pd.DataFrame, tmp_path: Path) -> None:
    times = wf.complete_open_times(features)
    windows = wf.plan_folds(times, SHORT, PURGE)
    assert_walk_forward(windows, len(times), PURGE)
    snapshots = wf.write_fold_datasets(features, windows, SplitConfig(), tmp_path, {"symbol": "SYN", "interval": "5"})
    for window, snapshot in zip(windows, snapshots, strict=True):
        dataset = MarketDataset.load(snapshot.dataset_dir)
        first, stop = window.rows
        assert np.array_equal(dataset.open_time_ms, times[first:stop])
        assert dataset.splits == {
            name: (start - first, end - first)
            for name, (start, end) in zip(
                ("train", "val", "test"), (window.train, window.val, window.test), strict=True
            )
        }
        assert dataset.meta["walk_forward_fold"] == window.fold and dataset.meta["symbol"] == "SYN"
        assert dataset.meta["purge_bars"] == PURGE
        assert snapshot.ranges == window.ranges(times)
        assert snapshot.ranges["test"]["start"] == pd.Timestamp(times[window.test[0]], unit="ms", tz="UTC").isoformat()


def test_fold_normaliser_is_fitted_on_its_train_rows_only(features: pd.DataFrame) -> None:
    times = wf.complete_open_times(features)
    window = wf.plan_folds(times, SHORT, PURGE)[0]
    dataset = wf.fold_dataset(features, window, SplitConfig())
    complete = features.loc[~features["warmup"].to_numpy(dtype=bool)].sort_values("open_time_ms")
    train_rows = complete[list(FEATURE_COLUMNS)].to_numpy(np.float64)[window.train[0] : window.train[1]]
    expected = Normaliser.fit(train_rows, FEATURE_COLUMNS)
    assert np.array_equal(dataset.normaliser.mean, expected.mean)
    assert np.array_equal(dataset.normaliser.std, expected.std)

    # Truncation: whatever happens after the fold's train end leaves its normaliser alone ...
    train_end = times[window.train[1] - 1]
    later = features["open_time_ms"].to_numpy() > train_end
    altered = features.copy()
    altered.loc[later, list(FEATURE_COLUMNS)] *= 10.0
    unchanged = wf.fold_dataset(altered, window, SplitConfig()).normaliser
    assert np.array_equal(unchanged.mean, expected.mean) and np.array_equal(unchanged.std, expected.std)
    # ... and a change of a train row moves it (the check above could fail).
    altered_train = features.copy()
    altered_train.loc[features["open_time_ms"].to_numpy() == train_end, "ret_1"] += 5.0
    assert not np.array_equal(wf.fold_dataset(altered_train, window, SplitConfig()).normaliser.mean, expected.mean)


def test_fold_normaliser_ignores_later_klines(klines: pd.DataFrame, funding: pd.DataFrame) -> None:
    """The same fold built from klines that end right after its train split: an identical normaliser."""
    full = compute_features(klines, "5", funding)
    times = wf.complete_open_times(full)
    window = wf.plan_folds(times, SHORT, PURGE)[0]
    normaliser = wf.fold_dataset(full, window, SplitConfig()).normaliser
    train_end = pd.Timestamp(times[window.train[1] - 1], unit="ms", tz="UTC")
    truncated = compute_features(klines.loc[klines["open_time"] <= train_end], "5", funding)
    complete = truncated.loc[~truncated["warmup"].to_numpy(dtype=bool)].sort_values("open_time_ms")
    train = complete.loc[complete["open_time_ms"] >= times[window.train[0]], list(FEATURE_COLUMNS)]
    refit = Normaliser.fit(train.to_numpy(np.float64), FEATURE_COLUMNS)
    assert np.allclose(normaliser.mean, refit.mean, rtol=1e-9, atol=1e-12)
    assert np.allclose(normaliser.std, refit.std, rtol=1e-9, atol=1e-12)


# --- saved and stitched backtests -----------------------------------------------------------------


def window_backtests(
    start_ms: int, bars: int, seed: int, names: tuple[str, ...] = ("agent", "buy_and_hold"), positions_seed: int = 0
) -> Backtests:
    """Backtests of random positions (drawn by `positions_seed`) over `bars` bars of a market drawn by `seed`
    from `start_ms`, with costs and funding."""
    market = np.random.default_rng(seed)
    log_returns = market.normal(0.0, 2e-3, bars)
    funding = np.where(np.arange(bars) % 96 == 0, market.normal(1e-4, 1e-4, bars), 0.0)
    rng = np.random.default_rng([seed, positions_seed])
    results = {
        name: run_backtest(rng.choice([-1.0, 0.0, 0.5, 1.0], bars), log_returns, 6.5e-4, funding_rates=funding)
        for name in names
    }
    return Backtests(start_ms + BAR_MS * np.arange(bars + 1, dtype=np.int64), results)


def test_saved_backtests_load_back_exactly(tmp_path: Path) -> None:
    saved = window_backtests(0, 50, seed=1, names=("agent", "momentum", "random"))
    path = save_backtests(tmp_path / "b.npz", saved.results, saved.open_time_ms)
    loaded = load_backtests(path)
    assert loaded.names == ("agent", "momentum", "random")
    assert np.array_equal(loaded.open_time_ms, saved.open_time_ms)
    for name, result in saved.results.items():
        for field in dataclasses.fields(result):
            assert np.array_equal(getattr(loaded.results[name], field.name), getattr(result, field.name))
    with pytest.raises(BacktestsError, match="no saved backtests"):
        load_backtests(tmp_path / "missing.npz")


def test_stitched_curve_is_the_concatenation_of_the_windows() -> None:
    first = window_backtests(0, 40, seed=1)
    second = window_backtests(40 * BAR_MS, 30, seed=2)
    stitched = concatenate([first, second])
    assert np.array_equal(stitched.open_time_ms, np.arange(71) * BAR_MS)
    for name in ("agent", "buy_and_hold"):
        a, b, s = first.results[name], second.results[name], stitched.results[name]
        for key in ("net_returns", "positions", "position_changes", "log_returns", "gross_returns"):
            assert np.array_equal(getattr(s, key), np.concatenate([getattr(a, key), getattr(b, key)])), key
        # the second window compounds on the equity the first ended with
        assert np.allclose(s.equity, np.concatenate([a.equity, a.equity[-1] * b.equity[1:]]), rtol=1e-12)
        assert np.allclose(s.gross_equity, np.concatenate([a.gross_equity, a.gross_equity[-1] * b.gross_equity[1:]]))
        scaled = a.equity_ex_funding[-1] * b.equity_ex_funding[1:]
        assert np.allclose(s.equity_ex_funding, np.concatenate([a.equity_ex_funding, scaled]), rtol=1e-12)
        assert np.allclose(s.fees, np.concatenate([a.fees, a.equity[-1] * b.fees]), rtol=1e-12)
        assert np.allclose(s.funding, np.concatenate([a.funding, a.equity[-1] * b.funding]), rtol=1e-12, atol=0)
        periods = periods_per_year("5")
        metrics = compute_metrics(s, periods)
        assert metrics["total_return"] == pytest.approx(a.equity[-1] * b.equity[-1] - 1, rel=1e-12)
        assert metrics["num_trades"] == int((a.position_changes > 0).sum() + (b.position_changes > 0).sum())
    with pytest.raises(BacktestsError, match="do not follow one another"):
        concatenate([first, window_backtests(41 * BAR_MS, 30, seed=2)])
    with pytest.raises(BacktestsError, match="different series"):
        concatenate([first, window_backtests(40 * BAR_MS, 30, seed=2, names=("agent",))])


def test_pooled_account_earns_the_mean_return_of_the_seeds() -> None:
    one, two = window_backtests(0, 60, seed=3), window_backtests(0, 60, seed=3)
    two = Backtests(
        two.open_time_ms, {name: run_backtest(-r.positions, r.log_returns, 6.5e-4) for name, r in two.results.items()}
    )
    pooled = average([one, two]).results["agent"]
    assert np.allclose(pooled.net_returns, (one.results["agent"].net_returns + two.results["agent"].net_returns) / 2)
    assert np.allclose(pooled.equity, np.concatenate([[1.0], np.cumprod(1 + pooled.net_returns)]))
    assert np.array_equal(pooled.log_returns, one.results["agent"].log_returns)
    alone = average([one]).results["agent"]  # one account averages to itself
    assert np.allclose(alone.equity, one.results["agent"].equity, rtol=1e-12)
    with pytest.raises(BacktestsError, match="same bars"):
        average([one, window_backtests(BAR_MS, 60, seed=3)])


def write_fold(task: wf.FoldTask, backtests: Backtests) -> None:
    save_backtests(Path(task.out_dir) / wf.FOLD_BACKTESTS, backtests.results, backtests.open_time_ms)


def test_stitched_curves_and_report_per_seed_and_pooled(tmp_path: Path) -> None:
    snapshots = [wf.FoldSnapshot(k, str(tmp_path / f"fold-{k}"), {}) for k in range(3)]
    tasks = wf.fold_tasks(snapshots, [0, 1], "tiny", {}, tmp_path)
    windows = {}
    for task in tasks:
        start = task.fold * 40 * BAR_MS
        windows[task.seed, task.fold] = window_backtests(start, 40, seed=task.fold, positions_seed=task.seed)
        write_fold(task, windows[task.seed, task.fold])
    curves = wf.stitched_curves(list(reversed(tasks)))  # any task order: folds are stitched in time order
    assert sorted(curves) == [0, 1]
    for seed, curve in curves.items():
        expected = np.concatenate([windows[seed, k].results["agent"].net_returns for k in range(3)])
        assert np.array_equal(curve.results["agent"].net_returns, expected)

    cfg = EvaluationConfig(bootstrap_samples=50, random_baseline_seeds=2)
    report = wf.stitched_report(curves, "5", cfg)
    assert report["test"] == {"start": "1970-01-01T00:00:00+00:00", "end": "1970-01-01T10:00:00+00:00", "bars": 120}
    assert report["seeds"] == [0, 1] and [entry["seed"] for entry in report["per_seed"]] == [0, 1]
    for part in (report, *report["per_seed"]):
        assert set(part["agent"]) >= {"sharpe", "sharpe_ci", "sharpe_se", "total_return", "max_drawdown", "degenerate"}
        assert set(part["baselines"]) == {"buy_and_hold"} == set(part["comparison"])
        low, high = part["baselines"]["buy_and_hold"]["sharpe_ci"]
        assert low <= high
    seed_one = report["per_seed"][1]["agent"]
    assert seed_one["total_return"] == pytest.approx(float(np.prod(1 + curves[1].results["agent"].net_returns) - 1))
    pooled_net = (curves[0].results["agent"].net_returns + curves[1].results["agent"].net_returns) / 2
    assert report["agent"]["total_return"] == pytest.approx(float(np.prod(1 + pooled_net) - 1))


# --- tasks ----------------------------------------------------------------------------------------


def test_tasks_chain_warm_starts_within_a_seed(tmp_path: Path) -> None:
    snapshots = [wf.FoldSnapshot(k, str(tmp_path / f"fold-{k}"), {}) for k in range(3)]
    cold = wf.fold_tasks(snapshots, [0, 1], "tiny", {"dreamer": {"device": "cpu"}}, tmp_path)
    assert [(t.seed, t.fold) for t in cold] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    assert all(t.init_from is None for t in cold) and len(wf.task_chains(cold)) == 6
    warm = wf.fold_tasks(snapshots, [0, 1], "tiny", {}, tmp_path, warm_start=True)
    assert warm[0].init_from is None
    assert warm[1].init_from == str(tmp_path / "runs" / "seed-0" / "fold-0" / "agent" / "checkpoint.pt")
    assert [[(t.seed, t.fold) for t in chain] for chain in wf.task_chains(warm)] == [
        [(0, 0), (0, 1), (0, 2)],
        [(1, 0), (1, 1), (1, 2)],
    ]
    with pytest.raises(ConfigError, match="not listed before it"):
        wf.task_chains(warm[1:])
    cfg = cold[4].run_config()
    assert cfg.name == "tiny" and cfg.dreamer.seed == 1 and cfg.dreamer.device == "cpu"
    assert json.loads(json.dumps(cold[0].to_dict()))["overrides"] == {"dreamer": {"device": "cpu"}}
    assert wf.task_runner(1) is wf.run_sequentially
    with pytest.raises(ConfigError, match="workers must be >= 1"):
        wf.task_runner(0)


def test_a_finished_task_is_returned_without_retraining(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def must_not_train(*args: object, **kwargs: object) -> None:
        raise AssertionError("a finished task was trained again")

    for stage in ("stage_train_world_model", "stage_train_policy", "stage_train_ppo", "stage_evaluate"):
        monkeypatch.setattr(f"dreamer.pipeline.{stage}", must_not_train)
    task = wf.FoldTask(
        fold=1, seed=2, dataset_dir=str(tmp_path / "data"), out_dir=str(tmp_path / "task"), config="tiny"
    )
    stored = {"fold": 1, "seed": 2, "agent": {"sharpe": 0.5}, "baselines": {}, "comparison": {}}
    (tmp_path / "task").mkdir()
    (tmp_path / "task" / wf.FOLD_RESULT).write_text(json.dumps(stored))
    assert wf.run_fold(task) == stored
    seen: list[dict] = []
    assert wf.run_sequentially([task], on_result=seen.append) == [stored] == seen
    with pytest.raises(DreamerError, match="not of fold 1 seed 3"):
        wf.run_fold(dataclasses.replace(task, seed=3))
    with pytest.raises(AssertionError, match="trained again"):  # an unfinished task does train
        wf.run_fold(dataclasses.replace(task, out_dir=str(tmp_path / "other")))


def test_a_warm_start_needs_the_previous_fold(tmp_path: Path) -> None:
    task = wf.FoldTask(
        fold=1,
        seed=0,
        dataset_dir=str(tmp_path / "data"),
        out_dir=str(tmp_path / "task"),
        config="tiny",
        init_from=str(tmp_path / "fold-0" / "agent" / "checkpoint.pt"),
    )
    with pytest.raises(DreamerError, match="previous fold of the seed must finish first"):
        wf.run_fold(task)
