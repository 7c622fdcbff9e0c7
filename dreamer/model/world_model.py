"""The DreamerV3 world model for a market seen through a vector of features.

    encoder      e_t = enc(symlog x_t)
    RSSM         h_t = f(h_{t-1}, z_{t-1}[, a_{t-1}]),  z_t ~ q(z_t | h_t, e_t),  ẑ_t ~ p(z_t | h_t)
    decoder      x̂_t = dec(h_t, z_t)                  symlog-MSE against symlog x_t
    return head  r̂_t = rew(h_t, z_t)                  twohot over symlog-spaced bins, in basis points

The "reward" of this environment is the next bar's log return `r_t = log(close_{t+1} / close_t)`: the
state at bar t (which has seen the features up to the close of t) forecasts it, and the agent's imagined
reward is its position times that forecast, less costs.

Why there is no action input by default: we are a price taker. Our orders are too small to move the
market, so the market's next state does not depend on our position: p(x_{t+1} | x_{≤t}, a_{≤t}) =
p(x_{t+1} | x_{≤t}). Conditioning the dynamics on actions would only let the model fit spurious
action-outcome correlations from data collected by another policy. `world_model_uses_action: true` still
feeds a_{t-1} (one-hot over `position_levels`) into the GRU, for experiments; it is never required.

Loss (names as in the DreamerV3 paper), one scalar and one backward per update:

    L = β_pred·L_pred + w_dyn·L_dyn + w_rep·L_rep,   L_pred = L_decoder + L_reward   (see `kl.py`)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from dreamer.model.config import DreamerConfig
from dreamer.model.distributions import categorical_entropy
from dreamer.model.heads import ObservationDecoder, ObservationEncoder, TwoHotHead
from dreamer.model.kl import kl_loss
from dreamer.model.networks import OneHotBlock
from dreamer.model.rssm import RSSM, RSSMState


class WorldModel(nn.Module):
    def __init__(self, obs_dim: int, cfg: DreamerConfig) -> None:
        super().__init__()
        if obs_dim < 1:
            raise ValueError(f"obs_dim must be >= 1, got {obs_dim}")
        self.cfg = cfg
        self.obs_dim = obs_dim
        self.action_dim = len(cfg.position_levels) if cfg.world_model_uses_action else 0
        hidden, layers = cfg.hidden_size, cfg.mlp_layers
        self.encoder = ObservationEncoder(obs_dim, hidden, layers)
        self.rssm = RSSM(self.encoder.out_features, self.action_dim, cfg)
        self.feature_size = cfg.deterministic_size + self.rssm.stoch_size  # D + S·K
        self.decoder = ObservationDecoder(self.feature_size, obs_dim, hidden, layers)
        self.reward = TwoHotHead(
            self.feature_size, hidden, layers, cfg.num_bins, cfg.bins_low, cfg.bins_high, unit=cfg.return_unit
        )
        # E[r̂ − r] over the train split, subtracted from every return forecast (`calibrate_return_mean`)
        self.return_offset: Tensor
        self.register_buffer("return_offset", torch.zeros(()))

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        # checkpoints written before the calibration existed carry no offset: theirs is 0
        state_dict.setdefault(prefix + "return_offset", torch.zeros(()))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # --- inference API (used by the agent and the evaluation) -----------------------------------

    def initial_state(self, batch_size: int) -> RSSMState:
        """`h [B, D]`, `z [B, S·K]`."""
        return self.rssm.initial_state(batch_size)

    def observe(self, obs: Tensor, actions: Tensor | None = None, state: RSSMState | None = None) -> RSSMState:
        """Posterior filtering of `obs [B, T, F]` (`actions [B, T, A]`: a_{t-1} at t) from the learned initial
        state or `state [B, ·]`: `h [B, T, D]`, `z [B, T, S·K]`."""
        return self.rssm.observe(self.encoder(obs), actions, state)[0]

    def observe_step(self, state: RSSMState, obs: Tensor, action: Tensor | None = None) -> RSSMState:
        """One posterior step for bar-by-bar inference: `obs [B, F]` -> state `[B, ·]`."""
        return self.rssm.observe_step(state, self.encoder(obs), action)[0]

    def imagine_step(self, state: RSSMState, action: Tensor | None = None) -> RSSMState:
        """One prior step: `h [N, D]`, `z [N, S·K]` -> the next imagined state."""
        return self.rssm.imagine_step(state, action)

    def features(self, state: RSSMState) -> Tensor:
        """`[..., D + S·K]`, the input of every head (and of the actor and critic)."""
        return torch.cat([state.h, state.z], -1)

    def predict_return(self, features: Tensor) -> Tensor:
        """Expected next-bar log return in natural units, calibrated (`calibrate_return_mean`): `[...]`."""
        return self.reward.mean(features) - self.return_offset

    def return_distribution(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """(probs `[..., num_bins]`, bin values `[num_bins]` as natural log returns, shifted by the calibration
        so that the distribution's mean is `predict_return`)."""
        probs, values = self.reward.distribution(features)
        return probs, values - self.return_offset

    # --- training -------------------------------------------------------------------------------

    def loss(
        self, obs: Tensor, next_log_return: Tensor, actions: Tensor | None = None
    ) -> tuple[Tensor, dict[str, Tensor], RSSMState]:
        """World-model loss on `obs [B, T, F]` and `next_log_return [B, T]` (NaN targets are masked out).

        Returns (scalar loss, detached 0-dim metrics, posterior state `h [B, T, D]`, `z [B, T, S·K]`).
        """
        embed = self.encoder(obs)  # [B, T, H]
        post, post_probs = self.rssm.observe(embed, actions)  # h [B, T, D], z [B, T, S·K], q [B, T, S, K]
        prior_probs = self.rssm.prior_probs(post.h)  # [B, T, S, K]
        post_logp, prior_logp = post_probs.log(), prior_probs.log()
        # features [h, z]: z is one-hot in value, so the heads' first layers gather rows of W_z, not multiply
        z = OneHotBlock.of(post.z, self.cfg.num_categories)  # z [B, T, S·K], hot classes [B, T, S]

        decoder = self.decoder.loss(post.h, obs, z).mean()
        observed = torch.isfinite(next_log_return)  # [B, T]
        reward_nll = self.reward.loss(post.h, torch.where(observed, next_log_return, 0.0), z)  # [B, T]
        reward = (reward_nll * observed).sum() / observed.sum().clamp_min(1)
        pred = decoder + reward
        kl = kl_loss(post_probs, post_logp, prior_logp, self.cfg)
        loss = self.cfg.beta_pred * pred + kl.loss

        with torch.no_grad():
            metrics = {
                "loss/total": loss.detach(),
                "loss/pred": pred.detach(),
                "loss/decoder": decoder.detach(),
                "loss/reward": reward.detach(),
                "loss/dyn": kl.dyn.detach(),
                "loss/rep": kl.rep.detach(),
                "kl/raw": kl.kl,
                "kl/free_bits_active": kl.free_bits_active,
                "entropy/prior": categorical_entropy(prior_probs, prior_logp).mean(),
                "entropy/posterior": categorical_entropy(post_probs, post_logp).mean(),
            }
        return loss, metrics, post
