"""Honest statistics of a walk-forward sweep: PSR, DSR, CSCV/PBO and `summarise`, on known inputs."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from scipy import integrate, stats

from dreamer.errors import ConfigError
from dreamer.evaluation.metrics import sharpe_ratio
from dreamer.research.statistics import (
    cscv_logits,
    deflated_sharpe_ratio,
    expected_maximum_sharpe,
    probabilistic_sharpe_ratio,
    probability_of_backtest_overfitting,
    return_moments,
    summarise,
)

# --- deflated and probabilistic Sharpe ratio ----------------------------------------------------------------

DAYS = 250  # the paper's observations per year
PAPER_SHARPE = 2.5 / math.sqrt(DAYS)  # annualised 2.5, per day
PAPER_TRIALS_VARIANCE = 0.5 / DAYS  # V[SR_n] = 1/2 annualised, per day


def test_deflated_sharpe_reproduces_the_published_example():
    """Bailey & López de Prado (2014), "The Deflated Sharpe Ratio: Correcting for Selection Bias, Backtest
    Overfitting and Non-Normality", J. Portfolio Management 40(5), numerical example: a strategist reports an
    annualised Sharpe ratio of 2.5 on "a daily sample of 5 years"; "the analyst responds that N = 100,
    V[{SR_n}] = 1/2, T = 1250, γ3 = −3 and γ4 = 10". The paper computes SR0 ≈ 0.1132 "non-annualized (with
    250 observations per year)" and DSR ≈ 0.9004 < 0.95; after only N = 46 trials DSR would have been 0.9505,
    and with normal returns (γ3 = 0, γ4 = 3) DSR = 0.9505 after N = 88 trials."""
    assert expected_maximum_sharpe(PAPER_TRIALS_VARIANCE, 100) == pytest.approx(0.1132, abs=5e-5)
    dsr = deflated_sharpe_ratio(PAPER_SHARPE, PAPER_TRIALS_VARIANCE, 100, 1250, skewness=-3.0, kurtosis=10.0)
    assert dsr == pytest.approx(0.9004, abs=5e-5)
    assert deflated_sharpe_ratio(PAPER_SHARPE, PAPER_TRIALS_VARIANCE, 46, 1250, -3.0, 10.0) == pytest.approx(
        0.9505, abs=5e-5
    )
    assert deflated_sharpe_ratio(PAPER_SHARPE, PAPER_TRIALS_VARIANCE, 88, 1250, 0.0, 3.0) == pytest.approx(
        0.9505, abs=5e-5
    )


@pytest.mark.parametrize(("trials", "tolerance"), [(10, 0.025), (100, 0.01), (1000, 0.005)])
def test_expected_maximum_approximates_the_exact_expected_maximum_of_normals(trials, tolerance):
    exact = integrate.quad(lambda x: x * trials * stats.norm.pdf(x) * stats.norm.cdf(x) ** (trials - 1), -12, 12)[0]
    assert expected_maximum_sharpe(1.0, trials) == pytest.approx(exact, rel=tolerance)
    assert expected_maximum_sharpe(4.0, trials) == pytest.approx(2.0 * expected_maximum_sharpe(1.0, trials))


def test_one_trial_has_no_selection_bias():
    assert expected_maximum_sharpe(0.01, 1) == 0.0
    assert deflated_sharpe_ratio(0.1, 0.01, 1, 500) == probabilistic_sharpe_ratio(0.1, 0.0, 500)


def test_psr_under_normal_returns_is_the_asymptotic_sharpe_test():
    sharpe, n_obs = 0.08, 400
    assert probabilistic_sharpe_ratio(sharpe, sharpe, n_obs, -1.0, 6.0) == 0.5
    expected = stats.norm.cdf(sharpe * math.sqrt(n_obs - 1) / math.sqrt(1 + sharpe**2 / 2))
    assert probabilistic_sharpe_ratio(sharpe, 0.0, n_obs) == pytest.approx(expected)
    # negative skew and fat tails make the same Sharpe ratio less convincing
    assert probabilistic_sharpe_ratio(sharpe, 0.0, n_obs, -2.0, 9.0) < probabilistic_sharpe_ratio(sharpe, 0.0, n_obs)


def test_psr_is_calibrated_on_skewed_returns_where_the_normal_formula_is_not():
    """Returns with true per-bar Sharpe 0.2, skewness −2 and kurtosis 9 (a reflected exponential): tested
    against their own true Sharpe ratio, PSR > 0.95 must happen 5 % of the time. Ignoring the shape
    (γ3 = 0, γ4 = 3) makes the false-positive rate about double."""
    rng = np.random.default_rng(3)
    true_sharpe, n_obs, samples = 0.2, 500, 4_000
    returns = true_sharpe - (rng.exponential(size=(samples, n_obs)) - 1.0)
    sharpes = returns.mean(axis=1) / returns.std(axis=1, ddof=1)
    skews = stats.skew(returns, axis=1)
    kurtoses = stats.kurtosis(returns, axis=1, fisher=False)
    corrected = np.array(
        [
            probabilistic_sharpe_ratio(sharpe, true_sharpe, n_obs, skew, kurtosis)
            for sharpe, skew, kurtosis in zip(sharpes, skews, kurtoses, strict=True)
        ]
    )
    naive = np.array([probabilistic_sharpe_ratio(sharpe, true_sharpe, n_obs) for sharpe in sharpes])
    assert 0.035 < np.mean(corrected > 0.95) < 0.065  # 5 % ± 4 standard errors
    assert np.mean(naive > 0.95) > 0.075


def test_psr_rejects_moments_no_distribution_has():
    with pytest.raises(ValueError, match="skewness"):
        probabilistic_sharpe_ratio(1.0, 0.0, 100, skewness=4.0, kurtosis=2.0)
    with pytest.raises(ValueError, match="n_obs"):
        probabilistic_sharpe_ratio(0.1, 0.0, 1)


def test_return_moments_are_pearson_moments_of_the_sample():
    assert return_moments(np.array([-1.0, 1.0] * 50)) == {"skewness": 0.0, "kurtosis": 1.0}
    assert return_moments(np.zeros(10)) == {"skewness": 0.0, "kurtosis": 3.0}
    sample = np.random.default_rng(0).exponential(size=200_000)
    shape = return_moments(sample)
    assert shape["skewness"] == pytest.approx(2.0, abs=0.1)
    assert shape["kurtosis"] == pytest.approx(9.0, abs=0.6)


# --- probability of backtest overfitting ---------------------------------------------------------------------


def _two_blocks(first: list[list[float]], second: list[list[float]]) -> np.ndarray:
    """`[4, N]` returns whose 2 partitions are `first` and `second` (each `[2, N]`)."""
    return np.array(first + second, dtype=np.float64)


def test_cscv_by_hand_when_the_in_sample_winner_always_comes_last():
    """Config 0 wins block A and comes last in block B, config 1 the reverse, config 2 is in between: both
    splits pick a config that ranks 1 of 3 out of sample, so ω = 1/4, λ = ln(1/3) and PBO = 1."""
    returns = _two_blocks([[3.0, -1.0, 1.0], [1.0, -3.0, -1.0]], [[-1.0, 3.0, 1.0], [-3.0, 1.0, -1.0]])
    np.testing.assert_allclose(cscv_logits(returns, 2), [math.log(1 / 3)] * 2)
    assert probability_of_backtest_overfitting(returns, 2) == 1.0


def test_cscv_by_hand_when_one_config_wins_both_halves():
    returns = _two_blocks([[3.0, -1.0, 1.0], [1.0, -3.0, -1.0]], [[3.0, -1.0, 1.0], [1.0, -3.0, -1.0]])
    np.testing.assert_allclose(cscv_logits(returns, 2), [math.log(3.0)] * 2)
    assert probability_of_backtest_overfitting(returns, 2) == 0.0


def _naive_cscv_logits(returns: np.ndarray, partitions: int) -> np.ndarray:
    """The paper's procedure written out: concatenate the chosen blocks' rows, rank the Sharpe ratios."""
    block = len(returns) // partitions
    blocks = np.split(returns[len(returns) - block * partitions :], partitions)
    logits = []
    for chosen in itertools.combinations(range(partitions), partitions // 2):
        rest = [i for i in range(partitions) if i not in chosen]
        sharpe_in = sharpe_ratio(np.concatenate([blocks[i] for i in chosen]).T, 1.0)
        sharpe_out = sharpe_ratio(np.concatenate([blocks[i] for i in rest]).T, 1.0)
        rank = stats.rankdata(sharpe_out)[np.argmax(sharpe_in)]
        omega = rank / (returns.shape[1] + 1)
        logits.append(math.log(omega / (1 - omega)))
    return np.array(logits)


def test_cscv_matches_the_procedure_written_out():
    returns = np.random.default_rng(5).normal(0.0, 0.01, size=(125, 7))  # 125 = 6 × 20 + 5 dropped rows
    returns[:, 2] += 0.002
    np.testing.assert_allclose(cscv_logits(returns, 6), _naive_cscv_logits(returns, 6))


def test_pbo_is_zero_when_one_config_dominates():
    returns = np.random.default_rng(11).normal(0.0, 0.01, size=(1600, 10))
    returns[:, 4] += 0.005
    assert probability_of_backtest_overfitting(returns, 16) == 0.0


def test_pbo_of_pure_noise_is_a_coin_toss_on_average():
    """One noise matrix gives a PBO anywhere in [0, 1] (its splits share rows); the mean over many is 1/2."""
    rng = np.random.default_rng(2024)
    estimates = [probability_of_backtest_overfitting(rng.normal(size=(240, 10)), 8) for _ in range(200)]
    assert np.mean(estimates) == pytest.approx(0.5, abs=0.06)


def test_cscv_rejects_unusable_shapes():
    with pytest.raises(ValueError, match="even"):
        cscv_logits(np.zeros((100, 3)), 5)
    with pytest.raises(ValueError, match="2 configurations"):
        cscv_logits(np.zeros((100, 1)), 4)
    with pytest.raises(ValueError, match="too few"):
        cscv_logits(np.zeros((3, 3)), 4)


# --- summarise -----------------------------------------------------------------------------------------------

# fold -> agent Sharpe of seeds 0 and 1: fold means 3, -1, 1 (mean 1, sd 2); every seed 1 away from its fold mean
AGENT = {0: (2.0, 4.0), 1: (-2.0, 0.0), 2: (0.0, 2.0)}
T_975_2 = stats.t.ppf(0.975, 2)


def _folds(symbol: str = "BTCUSDT", config: str = "demo", shift: float = 0.0) -> list[dict]:
    return [
        {
            "symbol": symbol,
            "config": config,
            "seed": seed,
            "fold": fold,
            "agent": {"sharpe": sharpes[seed] + shift, "total_return": 0.01},
            "baselines": {"buy_and_hold": {"sharpe": 1.0}, "flat": {"sharpe": 0.0}},
        }
        for fold, sharpes in AGENT.items()
        for seed in (0, 1)
    ]


def _stitched(config: str, sharpes: tuple[float, ...], symbol: str = "BTCUSDT", bars: int = 1000) -> list[dict]:
    return [
        {
            "symbol": symbol,
            "config": config,
            "seed": seed,
            "periods_per_year": 365.0,
            "agent": {"sharpe": sharpe, "num_bars": bars + seed, "skewness": -0.5 * seed, "kurtosis": 4.0 + seed},
        }
        for seed, sharpe in enumerate(sharpes)
    ]


def test_summarise_known_two_way_design():
    """3 folds × 2 seeds. Fold means 3, −1, 1: mean 1, CI 1 ± t(2)·2/√3. Within folds every seed is 1 from
    its fold mean: MS_within = 6/3 = 2 (seed std √2); MS_between = 2·(4 + 4 + 0)/2 = 8, so the fold
    component is (8 − 2)/2 = 3 (fold std √3) and the seed share 2/5."""
    row = summarise(_folds(), [], n_configs=1)["symbols"]["BTCUSDT"]["configs"]["demo"]
    assert (row["seeds"], row["folds"], row["runs"]) == (2, 3, 6)
    assert row["sharpe"] == pytest.approx(1.0)
    half = T_975_2 * 2.0 / math.sqrt(3.0)
    assert row["sharpe_ci"] == pytest.approx([1.0 - half, 1.0 + half])
    assert row["fold_sharpes"] == pytest.approx([3.0, -1.0, 1.0])
    assert row["seed_std"] == pytest.approx(math.sqrt(2.0))
    assert row["fold_std"] == pytest.approx(math.sqrt(3.0))
    assert row["seed_variance_share"] == pytest.approx(0.4)
    assert row["deflated_sharpe"] is None


def test_summarise_pairs_baselines_fold_by_fold():
    baselines = summarise(_folds(), [], n_configs=1)["symbols"]["BTCUSDT"]["configs"]["demo"]["baselines"]
    hold = baselines["buy_and_hold"]  # differences 2, -2, 0
    assert hold["sharpe_diff"] == pytest.approx(0.0)
    assert hold["sharpe_diff_ci"] == pytest.approx([-T_975_2 * 2 / math.sqrt(3), T_975_2 * 2 / math.sqrt(3)])
    assert hold["p_value"] == pytest.approx(1.0)
    assert (hold["folds_won"], hold["folds"]) == (1, 3)
    flat = baselines["flat"]  # differences 3, -1, 1
    assert flat["sharpe_diff"] == pytest.approx(1.0)
    assert flat["p_value"] == pytest.approx(stats.ttest_1samp([3.0, -1.0, 1.0], 0.0).pvalue)
    assert (flat["folds_won"], flat["folds"]) == (2, 3)


def test_summarise_deflates_the_stitched_curve_by_the_configs_tried():
    """Two configs, their seed-mean stitched Sharpe 2.5 and 0.5 (annualised, daily bars): V is their variance,
    (2.5 − 0.5)²/2 / 365 per day, larger than the 1/(T − 1) floor; T is the shortest seed's curve."""
    folds = _folds(config="a", shift=1.0) + _folds(config="b")
    stitched = _stitched("a", (2.0, 3.0)) + _stitched("b", (0.0, 1.0))
    result = summarise(folds, stitched, n_configs=5)
    symbol = result["symbols"]["BTCUSDT"]
    assert symbol["best_config"] == "a"
    deflated = symbol["configs"]["a"]["deflated_sharpe"]
    variance = 2.0 / 365.0
    expected = deflated_sharpe_ratio(2.5 / math.sqrt(365.0), variance, 5, 1000, -0.25, 4.5)
    assert deflated["dsr"] == pytest.approx(expected)
    assert deflated["sharpe"] == pytest.approx(2.5)
    assert deflated["expected_max_sharpe"] == pytest.approx(expected_maximum_sharpe(variance, 5) * math.sqrt(365))
    assert deflated["trials_sharpe_std"] == pytest.approx(math.sqrt(2.0))
    assert (deflated["trials"], deflated["num_bars"], deflated["seeds"]) == (5, 1000, 2)
    # more configurations tried, same results: a lower DSR
    assert (
        summarise(folds, stitched, n_configs=50)["symbols"]["BTCUSDT"]["configs"]["a"]["deflated_sharpe"]["dsr"]
        < deflated["dsr"]
    )


def test_identical_configs_fall_back_to_the_sampling_variance_of_a_sharpe_estimate():
    folds = _folds(config="a") + _folds(config="b")
    stitched = _stitched("a", (1.0, 1.0)) + _stitched("b", (1.0, 1.0))
    deflated = summarise(folds, stitched, n_configs=2)["symbols"]["BTCUSDT"]["configs"]["a"]["deflated_sharpe"]
    assert deflated["trials_sharpe_std"] == pytest.approx(math.sqrt(365.0 / 999.0))


def test_verdict_line_for_no_edge():
    result = summarise(_folds(), _stitched("demo", (0.4, 0.6)), n_configs=3)
    dsr = result["symbols"]["BTCUSDT"]["configs"]["demo"]["deflated_sharpe"]["dsr"]
    half = T_975_2 * 2.0 / math.sqrt(3.0)
    assert result["symbols"]["BTCUSDT"]["verdict"] == (
        f"BTCUSDT/demo: no evidence of an edge: mean Sharpe 1.00 [{1 - half:.2f}, {1 + half:.2f}] over 2 seeds x "
        f"3 folds (seed std 1.41, fold std 1.73); beats buy_and_hold on 1/3, flat on 2/3 folds; "
        f"DSR {dsr:.2f} (3 configs tried)"
    )
    one_seed = [record for record in _folds() if record["seed"] == 0]
    single = summarise(one_seed, _stitched("demo", (0.4,)), n_configs=1)["symbols"]["BTCUSDT"]["verdict"]
    assert " over 1 seed x 3 folds;" in single and single.endswith("(1 config tried)")


def test_verdicts_for_an_edge_a_loss_and_an_undeflated_edge():
    strong = [record | {"agent": {"sharpe": 3.0 + 0.1 * record["seed"]}} for record in _folds("AAA")]
    losing = [record | {"agent": {"sharpe": -3.0 - 0.1 * record["fold"]}} for record in _folds("BBB")]
    result = summarise(strong + losing, _stitched("demo", (3.0, 3.1), "AAA", bars=20_000), n_configs=2)
    assert result["symbols"]["AAA"]["verdict"].startswith("AAA/demo: evidence of an edge: mean Sharpe 3.05")
    assert result["symbols"]["BBB"]["verdict"].startswith("BBB/demo: a consistent loss")
    assert result["symbols"]["BBB"]["verdict"].endswith("DSR n/a")
    undeflated = summarise(strong, [], n_configs=2)["symbols"]["AAA"]["verdict"]
    assert "positive across folds, with no deflated Sharpe ratio to confirm it" in undeflated
    short = summarise(strong, _stitched("demo", (3.0, 3.1), "AAA", bars=30), n_configs=2)["symbols"]["AAA"]
    assert "positive across folds, but not significant after deflating for 2 configs" in short["verdict"]


def test_designs_that_cannot_separate_the_components_report_none():
    one_seed = [record for record in _folds() if record["seed"] == 0]
    row = summarise(one_seed, [], n_configs=1)["symbols"]["BTCUSDT"]["configs"]["demo"]
    assert row["seed_std"] is None and row["fold_std"] is None and row["seed_variance_share"] is None
    assert row["sharpe_ci"] is not None
    one_fold = [record for record in _folds() if record["fold"] == 0]
    result = summarise(one_fold, [], n_configs=1)["symbols"]["BTCUSDT"]
    assert result["configs"]["demo"]["sharpe_ci"] is None
    assert result["configs"]["demo"]["seed_std"] == pytest.approx(math.sqrt(2.0))
    assert result["verdict"].startswith("BTCUSDT/demo: too few folds to judge (1)")


def test_unbalanced_design_uses_the_effective_seeds_per_fold():
    """Fold 0 has 3 seeds (1, 2, 3), fold 1 one seed (6): MS_within = 2/2 = 1, grand mean 3,
    MS_between = 3·(2 − 3)² + 1·(6 − 3)² = 12, n0 = (4 − 10/4)/1 = 1.5, fold variance (12 − 1)/1.5."""
    records = [
        {"symbol": "X", "config": "c", "seed": seed, "fold": fold, "agent": {"sharpe": sharpe}}
        for fold, seed, sharpe in [(0, 0, 1.0), (0, 1, 2.0), (0, 2, 3.0), (1, 0, 6.0)]
    ]
    row = summarise(records, [], n_configs=1)["symbols"]["X"]["configs"]["c"]
    assert row["seed_std"] == pytest.approx(1.0)
    assert row["fold_std"] == pytest.approx(math.sqrt(11.0 / 1.5))
    assert row["sharpe"] == pytest.approx(4.0)  # folds weigh the same: (2 + 6) / 2


def test_summary_is_json():
    result = summarise(_folds() + _folds("ETHUSDT"), _stitched("demo", (0.5, 0.7)), n_configs=4)
    assert json.loads(json.dumps(result, allow_nan=False)) == result


def test_summarise_rejects_inconsistent_input():
    with pytest.raises(ConfigError, match="n_configs"):
        summarise(_folds(config="a") + _folds(config="b"), [], n_configs=1)
    with pytest.raises(ValueError, match="twice"):
        summarise(_folds() + _folds()[:1], [], n_configs=1)
    with pytest.raises(ValueError, match="lacks"):
        summarise([{"symbol": "X", "config": "c", "seed": 0, "agent": {"sharpe": 1.0}}], [], n_configs=1)
    with pytest.raises(ValueError, match="finite"):
        summarise([_folds()[0] | {"agent": {"sharpe": None}}], [], n_configs=1)
    mixed = [*_stitched("a", (1.0,)), _stitched("b", (1.0,))[0] | {"periods_per_year": 8760.0}]
    with pytest.raises(ValueError, match="without fold records"):
        summarise(_folds(config="a"), _stitched("b", (1.0,)), n_configs=2)
    with pytest.raises(ValueError, match="periods per year"):
        summarise(_folds(config="a") + _folds(config="b"), mixed, n_configs=2)
