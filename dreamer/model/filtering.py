"""The RSSM's posterior filtering over a whole sequence as one autograd node, with hand-written
backpropagation through time.

Why: the loop runs T = 64 steps of ~20 small ops on `[B = 16, ·]` tensors. Under autograd each op also
records a graph node, and the backward pass then runs ~40 tiny kernels per step through the autograd
engine, adds up gradients one small tensor at a time and computes every weight gradient as T separate
16-row matmuls. Here the forward loop runs without a graph, the backward loop does only what truly
depends on the next step's gradient (the input gradients), and every weight gradient is one matmul over
all B·T rows after the loop. Same function, same gradients (tested against the plain autograd loop);
at the seed's sizes (B·T = 16 × 64) forward + backward take ~85 ms instead of ~130–155 ms on one CPU core.

One step, in the notation of `rssm.py` (`W` are the layers' matrices, LN the LayerNorms with their
affine weights, `u_mix` the uniform mixture, `U_t` the step's uniform noise):

    a_t = W_z·z_{t-1} [+ W_a·a_{t-1}]          img_in, z one-hot: the sum of S gathered columns of W_z
    x_t = silu(LN_img(a_t))
    m_t = W_x·x_t + W_h·h_{t-1}                  GRU pre-activations [r, u, c]
    r, u = σ(LN_gru(m_t)[r, u]),  c = LN_gru(m_t)[c]
    n_t = tanh(r·c),  h_t = h_{t-1} + u·(n_t − h_{t-1})
    b_t = W_post_h·h_t + W_post_e·e_t            the embedding's share is precomputed for all t
    l_t = W_out·silu(LN_post(b_t)) + b_out       logits [B, S·K]
    q_t = (1 − u_mix)·softmax(l_t) + u_mix/K
    z_t = one_hot(inverse_cdf(q_t, U_t))         straight-through: ∂z_t/∂q_t = I

On CUDA under autocast the loop runs in fp32: its matmuls are too small for tensor cores to matter.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from dreamer.model.networks import LayerNormGRUCell, NormSiLU, latent_offsets, one_hot_weight_grad

if TYPE_CHECKING:
    from dreamer.model.rssm import Posterior

aten = torch.ops.aten


class _Weights(NamedTuple):
    """The parameters the loop reads (autograd sees them as the Function's inputs): shapes as in `rssm.py`."""

    img_w: Tensor  # [H, S·K], W_z: the z block of img_in's matrix
    img_norm_w: Tensor  # [H]
    img_norm_b: Tensor
    gru_w: Tensor  # [3D, H + D], [W_x, W_h]
    gru_norm_w: Tensor  # [3D]
    gru_norm_b: Tensor
    post_w: Tensor  # [H, D], W_post_h
    post_norm_w: Tensor  # [H]
    post_norm_b: Tensor
    out_w: Tensor  # [S·K, H]
    out_b: Tensor  # [S·K]


class _Trace(NamedTuple):
    """What the backward pass needs of every step: `[B, ·]` per step in the loop, `[T, B, ·]` once stacked."""

    img_pre: Tensor  # a_t [B, H]
    img_mean: Tensor  # LayerNorm statistics [B, 1]
    img_rstd: Tensor
    img_norm: Tensor  # LN_img(a_t) [B, H]
    xh: Tensor  # [x_t, h_{t-1}] [B, H + D], x_t = silu(LN_img(a_t))
    h: Tensor  # h_t [B, D]
    gru_pre: Tensor  # m_t [B, 3D]
    gru_mean: Tensor
    gru_rstd: Tensor
    gru_norm: Tensor  # LN_gru(m_t) [B, 3D]
    gates: Tensor  # [r, u] [B, 2D]
    new: Tensor  # n_t [B, D]
    post_pre: Tensor  # b_t [B, H]
    post_mean: Tensor
    post_rstd: Tensor
    post_norm: Tensor  # LN_post(b_t) [B, H]
    post_hidden: Tensor  # silu(LN_post(b_t)) [B, H]
    soft: Tensor  # softmax(l_t) [B, S, K]
    sample: Tensor  # the sampled class of each latent [B, S, 1]

    def norm_inputs(self, layer: str) -> tuple[Tensor, Tensor, Tensor]:
        """(input, mean, rstd) of the LayerNorm of `layer` ('img', 'gru' or 'post'), what its backward needs."""
        return getattr(self, f"{layer}_pre"), getattr(self, f"{layer}_mean"), getattr(self, f"{layer}_rstd")

    def norm_inputs_per_step(self, layer: str) -> list[tuple[Tensor, Tensor, Tensor]]:
        """`norm_inputs` of a stacked trace as T tuples of `[B, ·]` views."""
        inputs, mean, rstd = self.norm_inputs(layer)
        return list(zip(inputs.unbind(0), mean.unbind(0), rstd.unbind(0), strict=True))


def layer_norm_input_grad(grad: Tensor, inputs: Tensor, mean: Tensor, rstd: Tensor, weight: Tensor) -> Tensor:
    """∂L/∂input of a LayerNorm over the last axis at `inputs [N, C]` (statistics `[N, 1]` from its forward)."""
    mask = [True, False, False]
    return aten.native_layer_norm_backward(grad, inputs, inputs.shape[-1:], mean, rstd, weight, None, mask)[0]


def layer_norm_param_grads(
    grad: Tensor, inputs: Tensor, mean: Tensor, rstd: Tensor, weight: Tensor, bias: Tensor
) -> tuple[Tensor, Tensor]:
    """(∂L/∂weight, ∂L/∂bias) of a LayerNorm, summed over all rows of `grad [N, C]` at once."""
    mask = [False, True, True]
    _, grad_weight, grad_bias = aten.native_layer_norm_backward(
        grad, inputs, inputs.shape[-1:], mean, rstd, weight, bias, mask
    )
    return grad_weight, grad_bias


class _FilterSequence(torch.autograd.Function):
    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)
    def forward(
        ctx: Any,
        h0: Tensor,  # [B, D]
        z0: Tensor,  # [B, S·K], one-hot in value
        embed_proj: Tensor,  # [B, T, H], W_post_e·e_t
        action_proj: Tensor | None,  # [B, T, H], W_a·a_{t-1}; None without action input
        uniform: Tensor,  # [T, B, S, 1], U[0, 1) noise of the samples
        unimix: float,
        classes: int,  # K
        eps: float,  # of the three LayerNorms
        keep_trace: bool,  # False when no gradient will be asked for: only h, the samples and q are kept
        *weights: Tensor,  # `_Weights`, flat: autograd differentiates the inputs of a Function only
    ) -> tuple[Tensor, Tensor, Tensor]:
        w = _Weights(*weights)
        batch, steps, hidden = embed_proj.shape
        deter, stoch = h0.shape[-1], z0.shape[-1] // classes
        # transposed once, so each step's matmul reads contiguous rows (~10 % faster than strided)
        img_rows, gru_rows = w.img_w.T.contiguous(), w.gru_w.T.contiguous()  # [S·K, H]: gathered by z; [H + D, 3D]
        post_rows, out_rows = w.post_w.T.contiguous(), w.out_w.T.contiguous()  # [D, H], [H, S·K]
        offsets = latent_offsets(stoch, classes, h0.device)
        h = h0.contiguous()
        img_pre = z0 @ w.img_w.T  # [B, H]: z_0 comes from outside, so it is multiplied, not gathered
        trace: list[_Trace] = []
        hs: list[Tensor] = []  # without a trace: h_t and the samples alone
        samples: list[Tensor] = []
        probs_seq: list[Tensor] = []
        for t in range(steps):
            if action_proj is not None:
                img_pre = img_pre + action_proj[:, t]
            img_norm, img_mean, img_rstd = torch.native_layer_norm(img_pre, (hidden,), w.img_norm_w, w.img_norm_b, eps)
            xh = torch.cat([F.silu(img_norm), h], -1)  # [B, H + D]
            gru_pre = xh @ gru_rows  # m_t [B, 3D]
            gru_norm, gru_mean, gru_rstd = torch.native_layer_norm(
                gru_pre, (3 * deter,), w.gru_norm_w, w.gru_norm_b, eps
            )
            gates = torch.sigmoid(gru_norm[:, : 2 * deter])  # [B, 2D]: r, u
            new = torch.tanh(gates[:, :deter] * gru_norm[:, 2 * deter :])  # n_t [B, D]
            h = torch.lerp(h, new, gates[:, deter:])  # h_t [B, D]
            post_pre = torch.addmm(embed_proj[:, t], h, post_rows)  # [B, H]
            post_norm, post_mean, post_rstd = torch.native_layer_norm(
                post_pre, (hidden,), w.post_norm_w, w.post_norm_b, eps
            )
            post_hidden = F.silu(post_norm)
            soft = torch.softmax(torch.addmm(w.out_b, post_hidden, out_rows).view(batch, stoch, classes), -1)
            probs = soft * (1.0 - unimix) + unimix / classes  # q_t [B, S, K]
            sample = torch.searchsorted(probs.cumsum(-1), uniform[t], right=True).clamp_max_(classes - 1)
            if not keep_trace:
                hs.append(h)
                samples.append(sample)
            else:
                trace.append(
                    _Trace(
                        img_pre,
                        img_mean,
                        img_rstd,
                        img_norm,
                        xh,
                        h,
                        gru_pre,
                        gru_mean,
                        gru_rstd,
                        gru_norm,
                        gates,
                        new,
                        post_pre,
                        post_mean,
                        post_rstd,
                        post_norm,
                        post_hidden,
                        soft,
                        sample,
                    )
                )
            probs_seq.append(probs)
            img_pre = F.embedding_bag(sample.view(batch, stoch) + offsets, img_rows, mode="sum")  # a_{t+1} [B, H]
        if keep_trace:
            stacked = _Trace(*(torch.stack(column) for column in zip(*trace, strict=True)))  # [T, B, ·]
            ctx.save_for_backward(h0, z0, *stacked, *weights)
            h_seq, sample_seq = stacked.h, stacked.sample
        else:
            h_seq, sample_seq = torch.stack(hs), torch.stack(samples)  # [T, B, D], [T, B, S, 1]
        ctx.unimix, ctx.has_action = unimix, action_proj is not None
        # the outputs batch-major, as the heads and the KL read them: [B, T, ·]
        probs = torch.stack(probs_seq, 1)  # [B, T, S, K]
        z = torch.zeros_like(probs).scatter_(-1, sample_seq.transpose(0, 1), 1.0).flatten(-2)  # [B, T, S·K]
        return h_seq.transpose(0, 1).contiguous(), z, probs

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx: Any, grad_h: Tensor, grad_z: Tensor, grad_probs: Tensor) -> tuple[Tensor | None, ...]:
        h0, z0, *rest = ctx.saved_tensors
        tr = _Trace(*rest[: len(_Trace._fields)])
        w = _Weights(*rest[len(_Trace._fields) :])
        steps, batch, stoch, classes = tr.soft.shape
        deter, hidden = h0.shape[-1], tr.img_norm.shape[-1]

        # Everything that does not depend on the next step's gradient, for all T at once: [T, B, ·]
        mix = 1.0 - ctx.unimix  # ∂q/∂softmax(l): scaling q's gradient by it up front saves a pass per step
        grad_q = torch.add(  # ∂L/∂q_t·(1 − u_mix) [T, B, S, K], z's gradient passed on to q (straight-through)
            grad_probs.transpose(0, 1), grad_z.view_as(grad_probs).transpose(0, 1), out=torch.empty_like(tr.soft)
        ).mul_(mix)
        img_w_mix = w.img_w * mix  # [H, S·K]: ∂a_{t+1}/∂z_t, pre-scaled like grad_q
        grad_h = grad_h.transpose(0, 1)
        h_prev = tr.xh[..., hidden:]  # h_{t-1}
        reset, update, cand = tr.gates[..., :deter], tr.gates[..., deter:], tr.gru_norm[..., 2 * deter :]
        gate_slope = tr.gates * (1.0 - tr.gates)  # σ' of r and u
        new_slope = update * (1.0 - tr.new.square())  # ∂h_t/∂(r·c) = u·tanh'
        # ∂h_t/∂LN_gru(m_t) for the [r, u, c] blocks, so that one multiply per step gives the gradient of all three
        gate_grad = torch.stack(
            [
                new_slope * cand * gate_slope[..., :deter],
                (tr.new - h_prev) * gate_slope[..., deter:],
                new_slope * reset,
            ],
            dim=2,
        )  # [T, B, 3, D]
        keep = 1.0 - update  # ∂h_t/∂h_{t-1} along the direct path

        soft, post_norm, img_norm = tr.soft.unbind(0), tr.post_norm.unbind(0), tr.img_norm.unbind(0)
        post_ln, gru_ln, img_ln = (tr.norm_inputs_per_step(layer) for layer in ("post", "gru", "img"))

        grads: list[tuple[Tensor, ...]] = []  # per step, latest first: ∂L/∂ of l, LN_post, b, m, LN_img, a
        dgru_norm = torch.empty_like(gate_grad)  # ∂L/∂LN_gru(m_t) [T, B, 3, D]
        dh = grad_h[-1].clone()  # ∂L/∂h_t: from the output, and from step t+1 once past the last step
        dimg_pre = None  # ∂L/∂a_{t+1}
        for t in reversed(range(steps)):
            dq = grad_q[t] if dimg_pre is None else torch.addmm(grad_q[t].view(batch, -1), dimg_pre, img_w_mix)
            dlogits = aten._softmax_backward_data(dq.view(batch, stoch, classes), soft[t], -1, dq.dtype)
            dlogits = dlogits.view(batch, -1)  # [B, S·K]
            dpost_norm = aten.silu_backward(dlogits @ w.out_w, post_norm[t])
            dpost_pre = layer_norm_input_grad(dpost_norm, *post_ln[t], w.post_norm_w)
            dh = torch.addmm(dh, dpost_pre, w.post_w)  # ∂L/∂h_t, complete
            torch.mul(dh.unsqueeze(1), gate_grad[t], out=dgru_norm[t])
            dgru_pre = layer_norm_input_grad(dgru_norm[t].view(batch, -1), *gru_ln[t], w.gru_norm_w)
            dxh = dgru_pre @ w.gru_w  # [B, H + D]: ∂L/∂[x_t, h_{t-1}] through m_t
            dh = torch.addcmul(dxh[:, hidden:], dh, keep[t])  # ∂L/∂h_{t-1} = (1 − u)·dh + W_hᵀ·dm
            if t > 0:
                dh += grad_h[t - 1]
            dimg_norm = aten.silu_backward(dxh[:, :hidden], img_norm[t])
            dimg_pre = layer_norm_input_grad(dimg_norm, *img_ln[t], w.img_norm_w)
            grads.append((dlogits, dpost_norm, dpost_pre, dgru_pre, dimg_norm, dimg_pre))
        assert dimg_pre is not None  # T >= 1, checked by filter_sequence
        dz = dimg_pre @ w.img_w  # ∂L/∂z_0

        # Weight gradients: one matmul or reduction over all T·B rows each
        dlogits, dpost_norm, dpost_pre, dgru_pre, dimg_norm, dimg_pre = (
            torch.stack(column[::-1]).flatten(0, 1) for column in zip(*grads, strict=True)
        )  # [T·B, ·]
        rows = tr._replace(**{name: value.flatten(0, 1) for name, value in tr._asdict().items()})  # [T·B, ·]
        columns = tr.sample[:-1].flatten(0, 1).squeeze(-1) + latent_offsets(stoch, classes, h0.device)  # [(T−1)·B, S]
        grad_img_w = one_hot_weight_grad(dimg_pre[batch:], columns, stoch * classes)  # z_1..z_{T-1}: one-hot samples
        grad_img_w += dimg_pre[:batch].T @ z0  # z_0 comes from outside
        img_norm_grads = layer_norm_param_grads(dimg_norm, *rows.norm_inputs("img"), w.img_norm_w, w.img_norm_b)
        gru_norm_grads = layer_norm_param_grads(
            dgru_norm.flatten(0, 1).flatten(1), *rows.norm_inputs("gru"), w.gru_norm_w, w.gru_norm_b
        )
        post_norm_grads = layer_norm_param_grads(dpost_norm, *rows.norm_inputs("post"), w.post_norm_w, w.post_norm_b)
        grads_w = _Weights(
            grad_img_w,
            *img_norm_grads,
            dgru_pre.T @ rows.xh,  # [3D, H + D]
            *gru_norm_grads,
            dpost_pre.T @ rows.h,  # [H, D]
            *post_norm_grads,
            dlogits.T @ rows.post_hidden,  # [S·K, H]
            dlogits.sum(0),
        )
        grad_embed_proj = dpost_pre.view(steps, batch, hidden).transpose(0, 1)  # [B, T, H]
        grad_action_proj = dimg_pre.view(steps, batch, hidden).transpose(0, 1) if ctx.has_action else None
        # one gradient per input of forward: h0, z0, embed_proj, action_proj, uniform, unimix, classes, eps,
        # keep_trace, weights
        return dh, dz, grad_embed_proj, grad_action_proj, None, None, None, None, None, *grads_w


def filter_sequence(
    img_in: NormSiLU,
    gru: LayerNormGRUCell,
    posterior: Posterior,
    h0: Tensor,
    z0: Tensor,
    embed_proj: Tensor,
    action_proj: Tensor | None,
    uniform: Tensor,
    unimix: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """Posterior filtering from `h0 [B, D]`, `z0 [B, S·K]` over `embed_proj [B, T, H]` (W_post_e·e_t) and
    `action_proj [B, T, H]` (W_a·a_{t-1}, or None) with the noise `uniform [T, B, S, 1]`.

    Returns `h [B, T, D]`, straight-through one-hot `z [B, T, S·K]` and posterior probs `q [B, T, S, K]`.
    """
    stoch, classes = uniform.shape[2], posterior.classes
    if embed_proj.shape[1] < 1:
        raise ValueError(f"filter_sequence needs at least one step, got embed_proj of shape {tuple(embed_proj.shape)}")
    norms = (img_in.norm, gru.norm, posterior.norm)
    if len({norm.eps for norm in norms}) != 1:
        raise ValueError("filter_sequence expects the same eps in the three LayerNorms")
    weights = _Weights(
        img_in.linear.weight[:, : stoch * classes],  # W_z; the action block's share comes in `action_proj`
        img_in.norm.weight,
        img_in.norm.bias,
        gru.linear.weight,
        gru.norm.weight,
        gru.norm.bias,
        posterior.h_proj.weight,
        posterior.norm.weight,
        posterior.norm.bias,
        posterior.out.weight,
        posterior.out.bias,
    )
    # Inference (the backtest filters months of bars in one call) asks for no gradient: then the per-step
    # trace the backward needs (19 tensors a step) is never kept, and memory stays O(T·(D + S·K)).
    differentiable = (h0, z0, embed_proj, action_proj, *weights)
    keep_trace = torch.is_grad_enabled() and any(x is not None and x.requires_grad for x in differentiable)
    return _FilterSequence.apply(
        h0, z0, embed_proj, action_proj, uniform, unimix, classes, img_in.norm.eps, keep_trace, *weights
    )  # fmt: skip
