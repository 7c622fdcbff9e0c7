"""Where a signal is lost: the world model, the critic and imagination, checked on the held-out bars that
the evaluated policy traded, against what really happened there.

    forecast     r̂_t, the world model's one-step forecast at each traded bar (the posterior the policy
                 decided from): mean and std in bp, correlation with the realised next return and its
                 direction accuracy. `trace.npz` keeps r̂ per bar, so a caller holding a reference forecast
                 (a synthetic market's oracle) can correlate the two.
    critic       v(x_t) of the trained critic vs the realised λ-return R^λ_t of the evaluated policy
                 (rewards: the backtest's net returns, in the reward's unit; bootstrap: the same critic):
                 means and correlation. A critic that learned the value of holding tracks R^λ.
    imagination  from every `stride`-th traded bar, the evaluated (deterministic) policy imagined
                 `horizon` bars ahead from the same latent and account vs the same bars in the backtest:
                 turnover per bar and net return per bar (bp). Imagined net return is on returns drawn
                 from the world model, its expected net return on the forecast mean; a policy that trades
                 far more, or earns far more, in imagination than on real bars is fooled by the model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from dreamer.agent.checkpoint import load_checkpoint
from dreamer.agent.imagination import agent_input_size, imagine, known_funding, trading_reward
from dreamer.agent.networks import make_critic
from dreamer.agent.policy import TradingPolicy
from dreamer.agent.portfolio import BASIS_POINTS, Portfolio
from dreamer.agent.returns import lambda_returns
from dreamer.evaluation.backtest import BacktestResult
from dreamer.evaluation.scoring import direction_accuracy, pearson
from dreamer.features.dataset import BarFunding
from dreamer.model.heads import TwoHotHead
from dreamer.model.rssm import RSSMState
from dreamer.training.device import single_threaded

TRACE_FILE = "trace.npz"


def load_critic(agent_checkpoint: str | Path, policy: TradingPolicy) -> TwoHotHead:
    """The trained critic of an agent checkpoint (the policy itself carries only the actor)."""
    saved = load_checkpoint(agent_checkpoint, policy.device)
    critic = make_critic(agent_input_size(policy.world_model), policy.cfg)
    prefix = "critic."
    critic.load_state_dict({k[len(prefix) :]: v for k, v in saved["actor_critic"].items() if k.startswith(prefix)})
    return critic.to(policy.device).eval().requires_grad_(False)


@torch.no_grad()
def policy_diagnostics(
    policy: TradingPolicy,
    critic: TwoHotHead,
    inputs: torch.Tensor,
    backtest: BacktestResult,
    out_dir: str | Path | None = None,
    *,
    funding: BarFunding | None = None,
    stride: int = 16,
    seed: int = 0,
) -> dict[str, Any]:
    """The three diagnostics (module docstring) of a backtest whose decisions were taken from agent states
    `inputs [N, I]` (`TradingPolicy.decide`); `funding`: the traded rows' (None: no funding), which
    imagination charges as in training. Writes `trace.npz` (per-bar forecast, value, λ-return) to `out_dir`
    when given."""
    with single_threaded():
        cfg, world_model = policy.cfg, policy.world_model
        latent = inputs[:, : world_model.feature_size]  # [N, D + S·K]
        forecast = world_model.predict_return(latent).double().cpu().numpy()  # [N]
        realised = backtest.log_returns  # [N] r_{t+1}

        values = critic.mean(inputs).double().cpu()  # [N] v(x), reward units (the critic's own), like the rewards
        log_equity = np.log(backtest.equity)
        drawdown_after = np.maximum.accumulate(log_equity)[1:] - log_equity[1:]  # [N]
        rewards = trading_reward(
            torch.from_numpy(backtest.net_log_returns), torch.from_numpy(drawdown_after), cfg
        )  # [N]
        returns = lambda_returns(rewards[:-1, None], values[:, None], cfg.discount, cfg.lambda_gae)[:, 0]  # [N − 1]
        value_np, return_np = values[:-1].numpy(), returns.numpy()

        report = {
            "forecast": {
                "mean_bps": float(forecast.mean() * BASIS_POINTS),
                "std_bps": float(forecast.std() * BASIS_POINTS),
                "corr_with_realised": pearson(forecast, realised),
                "direction_accuracy": direction_accuracy(forecast, realised),
            },
            "critic": {
                "value_mean": float(value_np.mean()),
                "realised_lambda_return_mean": float(return_np.mean()),
                "corr": pearson(value_np, return_np),
            },
            "imagination": _imagined_vs_real(
                policy, inputs, backtest, BarFunding.none(len(inputs)) if funding is None else funding, stride, seed
            ),
        }
        if out_dir is not None:
            np.savez(Path(out_dir) / TRACE_FILE, forecast=forecast, value=values.numpy(), lambda_return=return_np)
    return report


def _imagined_vs_real(
    policy: TradingPolicy, inputs: torch.Tensor, backtest: BacktestResult, funding: BarFunding, stride: int, seed: int
) -> dict[str, Any]:
    cfg, world_model = policy.cfg, policy.world_model
    horizon = cfg.imagination_horizon
    starts = np.arange(0, len(backtest.positions) - horizon, stride)
    if not starts.size:
        return {"starts": 0}
    x = inputs[torch.from_numpy(starts).to(inputs.device)]  # [n, I]
    deter = cfg.deterministic_size
    state = RSSMState(x[:, :deter], x[:, deter : world_model.feature_size])
    account = Portfolio.from_features(x[:, world_model.feature_size :])
    charged = known_funding(
        torch.from_numpy(funding.known_rate).float(),
        torch.from_numpy(funding.next_settlements).float(),
        torch.from_numpy(starts),
        horizon,
    ).to(inputs.device)  # [H, n]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        imagined = imagine(world_model, policy.actor, state, account, horizon, cfg, sample=False, funding=charged)
    window = starts[:, None] + np.arange(horizon)  # [n, H] real bars of each imagined path
    previous = np.concatenate([[0.0], backtest.positions])[window]  # position held before each bar
    real_turnover = np.abs(backtest.positions[window] - previous)
    imagined_positions = imagined.positions.double().cpu().numpy().T  # [n, H]
    imagined_previous = np.concatenate(
        [account.position.double().cpu().numpy()[:, None], imagined_positions[:, :-1]], 1
    )
    return {
        "starts": int(starts.size),
        "horizon": horizon,
        "imagined_turnover": float(np.abs(imagined_positions - imagined_previous).mean()),
        "realised_turnover": float(real_turnover.mean()),
        "imagined_net_bps": float(imagined.net_returns.double().mean() * BASIS_POINTS),
        "imagined_expected_net_bps": float(imagined.rewards.double().mean() / cfg.return_unit * BASIS_POINTS),
        "realised_net_bps": float(backtest.net_log_returns[window].mean() * BASIS_POINTS),
    }
