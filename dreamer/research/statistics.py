"""Honest statistics of a walk-forward sweep: is there an edge once seeds, folds and the number of
configurations tried are accounted for?

* **Probabilistic Sharpe ratio** (PSR; Bailey & López de Prado 2012, "The Sharpe Ratio Efficient Frontier",
  Journal of Risk 15(2)): the probability that the true Sharpe ratio exceeds a benchmark SR*, given T
  observations whose returns may be skewed and fat-tailed,
  `PSR(SR*) = Φ((SR − SR*) √(T − 1) / √(1 − γ3·SR + (γ4 − 1)/4·SR²))`.
* **Deflated Sharpe ratio** (DSR; Bailey & López de Prado 2014, "The Deflated Sharpe Ratio: Correcting for
  Selection Bias, Backtest Overfitting and Non-Normality", Journal of Portfolio Management 40(5)): the PSR
  against the Sharpe ratio that the best of N skill-less trials reaches by luck alone,
  `SR0 = √V · ((1 − γ)·Φ⁻¹(1 − 1/N) + γ·Φ⁻¹(1 − 1/(N·e)))` (γ ≈ 0.5772 the Euler–Mascheroni constant, V the
  variance of the trials' Sharpe ratios), `DSR = PSR(SR0)`.
* **Probability of backtest overfitting** (PBO; Bailey, Borwein, López de Prado & Zhu 2017, "The Probability
  of Backtest Overfitting", Journal of Computational Finance 20(4)) by combinatorially symmetric
  cross-validation (CSCV): how often the configuration that is best in one half of the data ranks in the
  bottom half of the other.
* **`summarise`**: the per-(symbol, config) table of a sweep: mean Sharpe with a confidence interval over
  folds, the seed and fold variance components, paired comparisons with every baseline, the DSR of the
  stitched out-of-sample curve and a one-line verdict per symbol.

Units: PSR, DSR and CSCV take the *per-observation* Sharpe ratio (mean / standard deviation of per-bar
returns, not annualised), because T in the formulas counts those bars: divide an annualised Sharpe ratio by
√(periods per year) and its variance by the periods per year. Kurtosis is Pearson's (3 for normal returns),
not the excess kurtosis. `summarise` takes and reports annualised Sharpe ratios (the `sharpe` of
`dreamer.evaluation.metrics`) and converts internally. Everything here is pure: numbers in, numbers out.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from dreamer.errors import ConfigError

EULER_GAMMA = float(np.euler_gamma)


# --- probabilistic and deflated Sharpe ratio -----------------------------------------------------------------


def expected_maximum_sharpe(trials_variance: float, n_trials: int) -> float:
    """Expected largest Sharpe ratio among `n_trials` independent trials of zero true Sharpe whose estimates
    have variance `trials_variance` (the "False Strategy Theorem" of Bailey & López de Prado 2014):
    `√V · ((1 − γ)·Φ⁻¹(1 − 1/N) + γ·Φ⁻¹(1 − 1/(N·e)))`.

    The result has the units of √V: a per-observation variance gives a per-observation Sharpe ratio. One
    trial involves no selection, so its benchmark is the null's own mean, 0. The approximation is asymptotic
    in N: against the exact expectation it is 8 % low at N = 2, within 3 % from N = 5 and 1 % from N = 100.
    """
    if n_trials < 1:
        raise ValueError(f"n_trials must be at least 1, got {n_trials}")
    if not trials_variance >= 0.0:
        raise ValueError(f"trials_variance must be a non-negative number, got {trials_variance}")
    if n_trials == 1:
        return 0.0
    quantiles = (1.0 - EULER_GAMMA) * stats.norm.ppf(1.0 - 1.0 / n_trials) + EULER_GAMMA * stats.norm.ppf(
        1.0 - 1.0 / (n_trials * math.e)
    )
    return math.sqrt(trials_variance) * float(quantiles)


def probabilistic_sharpe_ratio(
    sharpe: float, benchmark_sharpe: float, n_obs: int, skewness: float = 0.0, kurtosis: float = 3.0
) -> float:
    """Probability that the true per-observation Sharpe ratio exceeds `benchmark_sharpe`, given the observed
    per-observation `sharpe` of `n_obs` returns with this `skewness` and Pearson `kurtosis` (Bailey & López de
    Prado 2012): `Φ((SR − SR*) √(T − 1) / √(1 − γ3·SR + (γ4 − 1)/4·SR²))`.

    The denominator is the standard error of the Sharpe estimate under non-normal i.i.d. returns; negative
    skew and fat tails widen it. Every real distribution has kurtosis ≥ skewness² + 1, which keeps it
    positive; moments that break this are rejected.
    """
    if n_obs < 2:
        raise ValueError(f"n_obs must be at least 2, got {n_obs}")
    spread = 1.0 - skewness * sharpe + (kurtosis - 1.0) / 4.0 * sharpe**2
    if not spread > 0.0:
        raise ValueError(
            f"skewness {skewness} and kurtosis {kurtosis} are not the moments of a distribution "
            "(Pearson kurtosis must be at least skewness² + 1)"
        )
    z = (sharpe - benchmark_sharpe) * math.sqrt(n_obs - 1) / math.sqrt(spread)
    return float(stats.norm.cdf(z))


def deflated_sharpe_ratio(
    sharpe: float,
    trials_variance: float,
    n_trials: int,
    n_obs: int,
    skewness: float = 0.0,
    kurtosis: float = 3.0,
) -> float:
    """Probability that the selected strategy's true Sharpe ratio beats what the best of `n_trials` skill-less
    trials would show (Bailey & López de Prado 2014): `PSR(SR0)` with `SR0 = expected_maximum_sharpe(V, N)`.

    All Sharpe quantities are per observation: `sharpe` is the selected strategy's, `trials_variance` the
    variance of the trials' Sharpe ratios (`np.var(trial_sharpes, ddof=1)`), `n_obs` its number of returns,
    `skewness` and Pearson `kurtosis` their shape. DSR ≥ 0.95 is the paper's bar for a discovery.
    """
    benchmark = expected_maximum_sharpe(trials_variance, n_trials)
    return probabilistic_sharpe_ratio(sharpe, benchmark, n_obs, skewness, kurtosis)


def return_moments(net_returns: np.ndarray) -> dict[str, float]:
    """`{"skewness", "kurtosis"}` (Pearson) of per-bar returns, as the PSR and DSR need them.

    These are the moments of the sample itself (no small-sample correction), which always satisfy
    kurtosis ≥ skewness² + 1. A series without spread reports the normal shape (0, 3): its Sharpe ratio is
    0, where the shape does not enter the PSR.
    """
    returns = np.asarray(net_returns, dtype=np.float64)
    if returns.ndim != 1 or len(returns) < 2:
        raise ValueError("return_moments needs a 1-D series of at least 2 returns")
    if not returns.std() > 0.0:
        return {"skewness": 0.0, "kurtosis": 3.0}
    return {
        "skewness": float(stats.skew(returns, bias=True)),
        "kurtosis": float(stats.kurtosis(returns, fisher=False, bias=True)),
    }


# --- probability of backtest overfitting (CSCV) -------------------------------------------------------------


def cscv_logits(returns: np.ndarray, n_partitions: int = 16) -> np.ndarray:
    """`[C(S, S/2)]` logits `λ = ln(ω / (1 − ω))` of combinatorially symmetric cross-validation, one per split.

    `returns` is `[T, N]`: the per-bar returns of N configurations over the same T bars. Its rows are cut into
    S = `n_partitions` blocks of consecutive bars, all equally long (the T mod S oldest rows are dropped, so
    both halves of every split weigh the same). Each choice of S/2 blocks is an in-sample set, the other S/2
    its out-of-sample complement. The configuration with the best in-sample per-bar Sharpe ratio (the first
    of tied ones) gets its out-of-sample rank r among the N (1 = worst; tied Sharpe ratios share their
    average rank), and `ω = r / (N + 1)`. λ > 0: the in-sample winner stays in the better half out of sample.
    """
    matrix = np.asarray(returns, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[1] < 2:
        raise ValueError("cscv_logits needs a [T, N] matrix of returns with at least 2 configurations")
    if n_partitions < 2 or n_partitions % 2:
        raise ValueError(f"n_partitions must be an even number of at least 2, got {n_partitions}")
    bars, configs = matrix.shape
    block = bars // n_partitions
    if block * (n_partitions // 2) < 2:
        raise ValueError(f"{bars} rows are too few for {n_partitions} partitions: each half needs 2 rows")
    blocks = matrix[bars - block * n_partitions :].reshape(n_partitions, block, configs)
    block_means = blocks.mean(axis=1)  # [S, N]
    block_squares = ((blocks - block_means[:, None, :]) ** 2).sum(axis=1)  # [S, N] within-block sum of squares
    in_sample = np.zeros((math.comb(n_partitions, n_partitions // 2), n_partitions), dtype=bool)  # [C, S]
    for row, chosen in enumerate(itertools.combinations(range(n_partitions), n_partitions // 2)):
        in_sample[row, list(chosen)] = True
    sharpe_in = _pooled_sharpe(block_means, block_squares, block, in_sample)  # [C, N]
    sharpe_out = _pooled_sharpe(block_means, block_squares, block, ~in_sample)
    best = np.argmax(sharpe_in, axis=1)  # [C]
    ranks = stats.rankdata(sharpe_out, axis=1)  # [C, N]
    omega = ranks[np.arange(len(best)), best] / (configs + 1)
    return np.log(omega / (1.0 - omega))


def _pooled_sharpe(
    block_means: np.ndarray, block_squares: np.ndarray, block: int, membership: np.ndarray
) -> np.ndarray:
    """`[C, N]` per-bar Sharpe ratio over the union of the blocks each row of `membership` `[C, S]` selects,
    from the blocks' means and within-block sums of squares (the pooled-variance identity
    `SS = Σ SS_b + n_b·(Σ m_b² − k·m²)`): a split costs O(S·N), not a pass over its rows."""
    chosen = membership.astype(np.float64)
    count = chosen.sum(axis=1, keepdims=True)  # [C, 1] blocks in each set
    mean = chosen @ block_means / count  # [C, N]
    between = block * np.maximum(chosen @ block_means**2 - count * mean**2, 0.0)
    std = np.sqrt((chosen @ block_squares + between) / (block * count - 1))
    return np.where(std > 0, mean / np.where(std > 0, std, 1.0), 0.0)


def probability_of_backtest_overfitting(returns: np.ndarray, n_partitions: int = 16) -> float:
    """PBO: the share of CSCV splits (`cscv_logits`) whose in-sample best configuration ranks at or below
    the median out of sample (λ ≤ 0) — Bailey, Borwein, López de Prado & Zhu (2017).

    ≈ 0: the selection carries over; ≈ 0.5: it is a coin toss (configurations indistinguishable); > 0.5: the
    in-sample winner tends to lose out of sample. With an odd N the exact median rank counts as overfit, so
    pure noise gives (N + 1) / 2N rather than 1/2. The paper suggests S = 16 partitions.
    """
    return float(np.mean(cscv_logits(returns, n_partitions) <= 0.0))


# --- the summary of a walk-forward sweep ---------------------------------------------------------------------


@dataclass
class _Run:
    """The test-window numbers of one (fold, seed) of a (symbol, config)."""

    fold: Any
    seed: Any
    sharpe: float
    baselines: dict[str, float] = field(default_factory=dict)


@dataclass
class _Stitched:
    """One seed's stitched out-of-sample curve, reduced to what the DSR needs (per-bar Sharpe)."""

    sharpe: float
    num_bars: int
    skewness: float
    kurtosis: float
    periods_per_year: float


def summarise(
    folds: Sequence[Mapping[str, Any]],
    stitched: Sequence[Mapping[str, Any]],
    n_configs: int,
    *,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Per-(symbol, config) statistics of a walk-forward sweep and a one-line verdict per symbol.

    Input (plain JSON-friendly records; extra keys are ignored):

    * `folds`: one record per (symbol, config, seed, fold) test window:
      `{"symbol": str, "config": str, "seed": int, "fold": int, "agent": {"sharpe": float, …},
      "baselines": {name: {"sharpe": float, …}, …}}`, Sharpe ratios annualised (`dreamer run`'s metrics).
      A sweep over several intervals folds the interval into the symbol label ("BTCUSDT/5").
    * `stitched`: one record per (symbol, config, seed) stitched out-of-sample curve:
      `{"symbol", "config", "seed", "periods_per_year": float, "agent": {"sharpe": float (annualised),
      "num_bars": int, "skewness": float, "kurtosis": float (Pearson)}}` (`return_moments` of the stitched net
      returns gives the last two). May be empty: the DSR is then missing. Every (symbol, config) in it must
      have fold records.
    * `n_configs`: how many configurations were tried per symbol (all of them, including any not in `folds`):
      the N of the deflated Sharpe ratio.

    Output: `{"confidence": c, "n_configs": N, "symbols": {symbol: {"best_config": name, "verdict": str,
    "configs": {config: {"seeds", "folds", "runs", "sharpe", "sharpe_ci", "sharpe_ci_level", "fold_sharpes",
    "seed_std", "fold_std", "seed_variance_share", "baselines": {name: {"sharpe_diff", "sharpe_diff_ci",
    "p_value", "folds_won", "folds"}}, "deflated_sharpe": {"dsr", "sharpe", "expected_max_sharpe", "trials",
    "trials_sharpe_std", "num_bars", "skewness", "kurtosis", "seeds"} | None}}}}}` — Sharpe ratios annualised,
    a number that cannot be estimated from the data given (a CI from one fold, a seed spread from one seed) is
    None.

    Method. Seeds are nested in folds: every seed of a fold trades the same test window, so its runs share
    the window's market noise and are not independent draws. The model is one-way random effects,
    `sharpe[f, s] = μ + a_f + e_fs`, with `a_f` the fold effect (the window's market and its training data:
    what a different test period would change) and `e_fs` the seed effect (what retraining with another seed
    changes). `sharpe` is the mean of the per-fold means over seeds; its CI is Student's t over those F fold
    means with F − 1 degrees of freedom, which accounts for both components (the variance of a fold mean is
    σ²_fold + σ²_seed / S) and is exact for normal fold effects. A bootstrap over folds is not used: with the
    handful of folds a sweep affords (4 folds allow 35 distinct resamples) percentile intervals are too
    narrow. `seed_std` is the pooled within-fold standard deviation (√ of the ANOVA mean square within),
    `fold_std` the √ of the fold component (mean squares between minus within over the effective seeds per
    fold, floored at 0), `seed_variance_share` = σ²_seed / (σ²_seed + σ²_fold). The baseline comparisons are
    paired: agent minus baseline Sharpe in the same run, averaged over the fold's seeds, then the same t
    interval and a two-sided paired t-test over folds; `folds_won` counts folds where that mean difference is
    positive.

    The DSR takes the stitched curve of the (symbol, config), its Sharpe ratio, shape and bar count averaged
    over seeds, N = `n_configs`, and as V the variance of the per-config stitched Sharpe ratios of the symbol
    — but never less than 1/(T − 1), the sampling variance of a skill-less Sharpe estimate over T bars (a
    smaller spread means correlated configurations, which this keeps from inflating the DSR).

    Verdict for the symbol's best config (highest `sharpe`): "evidence of an edge" if the CI lies above 0 and
    the DSR reaches the confidence level; "positive across folds, but not significant after deflating for N
    configs" if only the CI does (or "… with no deflated Sharpe ratio to confirm it" without stitched
    curves); "a consistent loss" if the CI lies below 0; "no evidence of an edge" otherwise.
    """
    if n_configs < 1:
        raise ConfigError(f"n_configs must be at least 1, got {n_configs}")
    if not 0.5 < confidence < 1.0:
        raise ConfigError(f"confidence must be in (0.5, 1), got {confidence}")
    runs = _runs_by_group(folds)
    curves = _stitched_by_group(stitched)
    orphans = sorted(set(curves) - set(runs))
    if orphans:
        raise ValueError(f"stitched curves without fold records: {orphans}")
    symbols: dict[str, dict[str, Any]] = {}
    for symbol in sorted({symbol for symbol, _ in runs}):
        configs = sorted(config for sym, config in runs if sym == symbol)
        if len(configs) > n_configs:
            raise ConfigError(f"{symbol} has {len(configs)} configs in the sweep but n_configs is {n_configs}")
        deflated = _deflated_sharpe(symbol, configs, curves, n_configs)
        table = {
            config: _config_summary(runs[symbol, config], confidence) | {"deflated_sharpe": deflated.get(config)}
            for config in configs
        }
        best = max(configs, key=lambda config: table[config]["sharpe"])
        symbols[symbol] = {
            "best_config": best,
            "verdict": _verdict(symbol, best, table[best], n_configs, confidence),
            "configs": table,
        }
    return {"confidence": confidence, "n_configs": n_configs, "symbols": symbols}


def _number(record: Mapping[str, Any], key: str, where: str) -> float:
    value = record.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{where}: {key!r} must be a finite number, got {value!r}")
    return float(value)


def _fields(record: Mapping[str, Any], names: tuple[str, ...], kind: str) -> tuple[Any, ...]:
    missing = [name for name in names if name not in record]
    if missing:
        raise ValueError(f"{kind} record {dict(record)!r} lacks {missing}")
    return tuple(record[name] for name in names)


def _runs_by_group(folds: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], list[_Run]]:
    groups: dict[tuple[str, str], list[_Run]] = defaultdict(list)
    seen: set[tuple[Any, ...]] = set()
    for record in folds:
        symbol, config, seed, fold, agent = _fields(record, ("symbol", "config", "seed", "fold", "agent"), "fold")
        key = (str(symbol), str(config), seed, fold)
        where = "fold record {}/{} seed {} fold {}".format(*key)
        if key in seen:
            raise ValueError(f"{where} appears twice")
        seen.add(key)
        baselines = {
            str(name): _number(metrics, "sharpe", f"{where} baseline {name}")
            for name, metrics in record.get("baselines", {}).items()
        }
        groups[key[:2]].append(_Run(fold, seed, _number(agent, "sharpe", where), baselines))
    return groups


def _stitched_by_group(stitched: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], list[_Stitched]]:
    groups: dict[tuple[str, str], list[_Stitched]] = defaultdict(list)
    seen: set[tuple[Any, ...]] = set()
    for record in stitched:
        symbol, config, seed, agent = _fields(record, ("symbol", "config", "seed", "agent"), "stitched")
        key = (str(symbol), str(config), seed)
        where = "stitched record {}/{} seed {}".format(*key)
        if key in seen:
            raise ValueError(f"{where} appears twice")
        seen.add(key)
        periods = _number(record, "periods_per_year", where)
        num_bars = int(_number(agent, "num_bars", where))
        if num_bars < 2 or periods <= 0:
            raise ValueError(f"{where}: needs num_bars >= 2 and positive periods_per_year")
        groups[key[:2]].append(
            _Stitched(
                sharpe=_number(agent, "sharpe", where) / math.sqrt(periods),
                num_bars=num_bars,
                skewness=_number(agent, "skewness", where),
                kurtosis=_number(agent, "kurtosis", where),
                periods_per_year=periods,
            )
        )
    return groups


def _t_interval(values: np.ndarray, confidence: float) -> list[float] | None:
    """Student's t confidence interval of the mean of `values` (None below 2 values)."""
    if len(values) < 2:
        return None
    half = stats.t.ppf((1.0 + confidence) / 2.0, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))
    mean = float(values.mean())
    return [mean - float(half), mean + float(half)]


def _t_p_value(values: np.ndarray) -> float | None:
    """Two-sided p-value of a one-sample t-test of mean 0 (None below 2 values)."""
    if len(values) < 2:
        return None
    spread = float(values.std(ddof=1))
    if spread == 0.0:
        return 1.0 if float(values.mean()) == 0.0 else 0.0
    t_stat = float(values.mean()) / (spread / math.sqrt(len(values)))
    return float(2.0 * stats.t.sf(abs(t_stat), len(values) - 1))


def _variance_components(groups: list[np.ndarray]) -> tuple[float | None, float | None]:
    """`(σ²_seed, σ²_fold)` of the one-way random-effects ANOVA of runs grouped by fold (unbalanced groups
    allowed); None where the design cannot separate it (one seed per fold, one fold)."""
    sizes = np.array([len(group) for group in groups], dtype=np.float64)
    total, folds = float(sizes.sum()), len(groups)
    within_df = total - folds
    if within_df <= 0:
        return None, None
    seed_var = sum(float(((group - group.mean()) ** 2).sum()) for group in groups) / within_df
    if folds < 2:
        return seed_var, None
    grand = float(np.concatenate(groups).mean())
    between = sum(len(group) * (float(group.mean()) - grand) ** 2 for group in groups) / (folds - 1)
    effective_seeds = (total - float((sizes**2).sum()) / total) / (folds - 1)
    return seed_var, max(0.0, (between - seed_var) / effective_seeds)


def _config_summary(runs: list[_Run], confidence: float) -> dict[str, Any]:
    by_fold: dict[Any, list[_Run]] = defaultdict(list)
    for run in runs:
        by_fold[run.fold].append(run)
    order = sorted(by_fold)
    sharpes = [np.array([run.sharpe for run in by_fold[fold]]) for fold in order]
    fold_means = np.array([group.mean() for group in sharpes])
    seed_var, fold_var = _variance_components(sharpes)
    total_var = None if seed_var is None or fold_var is None else seed_var + fold_var
    baselines: dict[str, dict[str, Any]] = {}
    for name in sorted({name for run in runs for name in run.baselines}):
        differences = np.array(
            [
                np.mean([run.sharpe - run.baselines[name] for run in by_fold[fold] if name in run.baselines])
                for fold in order
                if any(name in run.baselines for run in by_fold[fold])
            ]
        )
        baselines[name] = {
            "sharpe_diff": float(differences.mean()),
            "sharpe_diff_ci": _t_interval(differences, confidence),
            "p_value": _t_p_value(differences),
            "folds_won": int((differences > 0).sum()),
            "folds": len(differences),
        }
    return {
        "seeds": len({run.seed for run in runs}),
        "folds": len(order),
        "runs": len(runs),
        "sharpe": float(fold_means.mean()),
        "sharpe_ci": _t_interval(fold_means, confidence),
        "sharpe_ci_level": confidence,
        "fold_sharpes": [float(value) for value in fold_means],
        "seed_std": None if seed_var is None else math.sqrt(seed_var),
        "fold_std": None if fold_var is None else math.sqrt(fold_var),
        "seed_variance_share": seed_var / total_var if seed_var is not None and total_var else None,
        "baselines": baselines,
    }


def _deflated_sharpe(
    symbol: str, configs: list[str], curves: dict[tuple[str, str], list[_Stitched]], n_configs: int
) -> dict[str, dict[str, Any]]:
    """The DSR block of every config of `symbol` that has stitched curves."""
    candidates = {config: curves[symbol, config] for config in configs if curves.get((symbol, config))}
    periods = {curve.periods_per_year for seeds in candidates.values() for curve in seeds}
    if len(periods) > 1:
        raise ValueError(f"{symbol}: stitched curves mix periods per year {sorted(periods)}; label symbols by interval")
    sharpes = {config: float(np.mean([curve.sharpe for curve in seeds])) for config, seeds in candidates.items()}
    dispersion = float(np.var(list(sharpes.values()), ddof=1)) if len(sharpes) > 1 else 0.0
    out = {}
    for config, seeds in candidates.items():
        num_bars = min(curve.num_bars for curve in seeds)
        skewness = float(np.mean([curve.skewness for curve in seeds]))
        kurtosis = float(np.mean([curve.kurtosis for curve in seeds]))
        variance = max(dispersion, 1.0 / (num_bars - 1))
        scale = math.sqrt(seeds[0].periods_per_year)
        out[config] = {
            "dsr": deflated_sharpe_ratio(sharpes[config], variance, n_configs, num_bars, skewness, kurtosis),
            "sharpe": sharpes[config] * scale,
            "expected_max_sharpe": expected_maximum_sharpe(variance, n_configs) * scale,
            "trials": n_configs,
            "trials_sharpe_std": math.sqrt(variance) * scale,
            "num_bars": num_bars,
            "skewness": skewness,
            "kurtosis": kurtosis,
            "seeds": len(seeds),
        }
    return out


def _verdict(symbol: str, config: str, summary: dict[str, Any], n_configs: int, confidence: float) -> str:
    ci = summary["sharpe_ci"]
    deflated = summary["deflated_sharpe"]
    dsr = None if deflated is None else deflated["dsr"]
    if ci is None:
        judgement = f"too few folds to judge ({summary['folds']})"
    elif ci[0] > 0 and dsr is not None and dsr >= confidence:
        judgement = "evidence of an edge"
    elif ci[0] > 0 and dsr is None:
        judgement = "positive across folds, with no deflated Sharpe ratio to confirm it"
    elif ci[0] > 0:
        judgement = f"positive across folds, but not significant after deflating for {_count(n_configs, 'config')}"
    elif ci[1] < 0:
        judgement = "a consistent loss"
    else:
        judgement = "no evidence of an edge"
    interval = "" if ci is None else f" [{ci[0]:.2f}, {ci[1]:.2f}]"
    spread = ", ".join(
        f"{label} std {summary[key]:.2f}"
        for key, label in (("seed_std", "seed"), ("fold_std", "fold"))
        if summary[key] is not None
    )
    parts = [
        f"{symbol}/{config}: {judgement}: mean Sharpe {summary['sharpe']:.2f}{interval} over "
        f"{_count(summary['seeds'], 'seed')} x {_count(summary['folds'], 'fold')}" + (f" ({spread})" if spread else "")
    ]
    if summary["baselines"]:
        wins = ", ".join(f"{name} on {row['folds_won']}/{row['folds']}" for name, row in summary["baselines"].items())
        parts.append(f"beats {wins} folds")
    parts.append("DSR n/a" if dsr is None else f"DSR {dsr:.2f} ({_count(n_configs, 'config')} tried)")
    return "; ".join(parts)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
