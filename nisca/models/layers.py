"""Network building blocks: a plain MLP and the per-channel nonlinearity f = [f_1, ..., f_N].

`ChannelwiseMLP` holds N independent scalar networks R -> R with one hidden layer each (thesis: 128 ReLU
units) and evaluates all of them at once: the weights are (N, H) tensors and there is no Python loop over
channels. With ReLU units each f_n is piecewise linear with H knots, so the forward and backward passes
work on the sorted knots and inputs of every channel (`PiecewiseLinearReLU`, O(N (B + H) log(B + H)))
instead of materialising the B x N x H hidden activations; the monotone (tanh) variant uses the dense
batched form. See benchmarks/decoder_throughput.py for the measured speed against a loop of N networks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F


class MLP(nn.Sequential):
    """Linear layers with ReLU between them: in_dim -> hidden[0] -> ... -> out_dim (no final activation)."""

    def __init__(self, in_dim: int, out_dim: int, hidden: Sequence[int] = (128,)) -> None:
        layers: list[nn.Module] = []
        width = in_dim
        for size in hidden:
            layers += [nn.Linear(width, int(size)), nn.ReLU()]
            width = int(size)
        layers.append(nn.Linear(width, out_dim))
        super().__init__(*layers)


DENSE_LIMIT = 100_000  # batch x channels x hidden below which the dense form is faster (decoder benchmark)


def _merged_order(knots: torch.Tensor, yt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sort each channel's H knots and B inputs together: the order (N, H+B) and every entry's rank."""
    order = torch.cat([knots, yt], dim=-1).argsort(dim=-1)  # ties between a knot and an input: measure zero
    rank = torch.empty_like(order).scatter_(-1, order, torch.arange(order.shape[-1], device=order.device)
                                            .expand_as(order).contiguous())
    return order, rank


def _sorted_cumsum(values: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Cumulative sums of values (..., N, H+B) taken in the merged order of each channel."""
    return values.gather(-1, order.expand_as(values)).cumsum(-1)


class PiecewiseLinearReLU(torch.autograd.Function):
    """f_n(y) = b2_n + sum_h w2_nh relu(w1_nh y + b1_nh) for all channels, exactly, without the B x N x H
    hidden tensor.

    A one-hidden-layer ReLU network of a scalar is piecewise linear: unit h is active right of its knot
    t = -b1/w1 when w1 > 0, left of it when w1 < 0 (always or never when w1 = 0). Sorting each channel's
    knots together with its B inputs once, prefix sums give every input the slope and intercept of its
    active units (forward), and every knot the sums of g and g*y over the inputs on its active side
    (backward: the gradients of w1, b1, w2). Cost O(N (H + B) log(H + B)) instead of O(N B H). Equal to
    the dense form up to float rounding (tests/models/test_layers.py).
    """

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)
    def forward(ctx, y, w1, b1, w2, b2):
        yt = y.T.contiguous()  # (N, B)
        H = w1.shape[-1]
        positive, negative = w1 > 0, w1 < 0
        knots = torch.where(w1 == 0, torch.full_like(w1, -float("inf")), -b1 / torch.where(w1 == 0, 1.0, w1))
        order, rank = _merged_order(knots, yt)
        zeros = torch.zeros_like(yt)
        slope, intercept = w2 * w1, w2 * b1
        parts = torch.stack([torch.cat([torch.where(mask, term, 0.0), zeros], dim=-1)
                             for mask in (positive, negative) for term in (slope, intercept)])
        prefix = _sorted_cumsum(parts, order)  # (4, N, H+B)
        at_y = prefix.gather(-1, rank[:, H:].expand(4, -1, -1))  # sums over knots left of each y
        left_w, left_b, neg_w_left, neg_b_left = at_y
        always = torch.where((w1 == 0) & (b1 > 0), intercept, 0.0).sum(-1, keepdim=True)
        sums_w = left_w + prefix[2, :, -1:] - neg_w_left
        sums_b = left_b + prefix[3, :, -1:] - neg_b_left + always
        ctx.save_for_backward(yt, w1, b1, w2, sums_w, order, rank)
        return (yt * sums_w + sums_b + b2.unsqueeze(1)).T

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, grad_out):
        yt, w1, b1, w2, sums_w, order, rank = ctx.saved_tensors
        H = w1.shape[-1]
        g = grad_out.T.contiguous()  # (N, B)
        zeros = torch.zeros_like(w1)
        parts = torch.stack([torch.cat([zeros, g], dim=-1), torch.cat([zeros, g * yt], dim=-1)])
        prefix = _sorted_cumsum(parts, order)  # sums of g and g*y over the inputs left of each position
        left = prefix.gather(-1, rank[:, :H].expand(2, -1, -1))  # (2, N, H) at every knot
        total = prefix[:, :, -1:]
        always = ((w1 == 0) & (b1 > 0)).unsqueeze(0)
        active = torch.where(w1 > 0, total - left, torch.where(w1 < 0, left, torch.where(always, total, 0.0)))
        g0, g1 = active[0], active[1]
        return (g * sums_w).T, w2 * g1, w2 * g0, w1 * g1 + b1 * g0, g.sum(-1)


def _inverse_softplus(value: torch.Tensor) -> torch.Tensor:
    return value + torch.log(-torch.expm1(-value))


class ChannelwiseMLP(nn.Module):
    """N scalar MLPs f_n(y_n) = w2_n . act(w1_n * y_n + b1_n) + b2_n, evaluated as one batched op.

    monotone: the input and output weights pass through softplus (positive), the activation is tanh
      and a positive linear term softplus(c_n) * y_n is added, so every f_n is strictly increasing and
      therefore invertible by construction (a decreasing channel is absorbed by the sign of A's row).
    residual: f_n(y) = y + g_n(y) with g_n's output weights initialised small, so f starts near the
      identity (a warm start from the linear model).
    Shapes: input (batch, N) -> output (batch, N).
    """

    def __init__(self, n_channels: int, hidden: int = 128, monotone: bool = False, residual: bool = False) -> None:
        super().__init__()
        self.n_channels = int(n_channels)
        self.hidden = int(hidden)
        self.monotone = bool(monotone)
        self.residual = bool(residual)
        N, H = self.n_channels, self.hidden
        bound_out = 1.0 / math.sqrt(H)
        # The same initial distributions as nn.Linear(1, H) and nn.Linear(H, 1) for every channel.
        weight_in = torch.empty(N, H).uniform_(-1.0, 1.0)
        bias_in = torch.empty(N, H).uniform_(-1.0, 1.0)
        weight_out = torch.empty(N, H).uniform_(-bound_out, bound_out)
        bias_out = torch.empty(N).uniform_(-bound_out, bound_out)
        if self.monotone:
            weight_in = _inverse_softplus(weight_in.abs() + 0.05)
            bias_in = bias_in * 2.0
            weight_out = _inverse_softplus(weight_out.abs() + 1e-3)
            self.slope = nn.Parameter(_inverse_softplus(torch.full((N,), 0.1)))
        if self.residual:
            weight_out = weight_out * 0.1 if not self.monotone else weight_out - 2.0
            bias_out = torch.zeros(N)
        self.weight_in = nn.Parameter(weight_in)
        self.bias_in = nn.Parameter(bias_in)
        self.weight_out = nn.Parameter(weight_out)
        self.bias_out = nn.Parameter(bias_out)

    def effective_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The (N, H) input and output weights actually used (positive in monotone mode)."""
        if self.monotone:
            return F.softplus(self.weight_in), F.softplus(self.weight_out)
        return self.weight_in, self.weight_out

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        small = y.shape[0] * self.n_channels * self.hidden < DENSE_LIMIT
        out = self.dense_forward(y) if self.monotone or small else self.piecewise_forward(y)
        if self.residual:
            out = out + y
        return out

    def piecewise_forward(self, y: torch.Tensor) -> torch.Tensor:
        """The ReLU networks evaluated on sorted knots (no B x N x H tensor); f without the residual."""
        if self.monotone:
            raise ValueError("piecewise_forward needs ReLU units; the monotone variant uses tanh")
        return PiecewiseLinearReLU.apply(y, self.weight_in, self.bias_in, self.weight_out, self.bias_out)

    def dense_forward(self, y: torch.Tensor) -> torch.Tensor:
        """All B x N x H hidden units materialised: the monotone tanh units, and small problems where the
        sort of the piecewise form costs more than it saves; f without the residual."""
        weight_in, weight_out = self.effective_weights()
        N = self.n_channels
        # Channel-major layout (N, batch, H): two batched matrix products over the N channels.
        pre = torch.baddbmm(self.bias_in.unsqueeze(1), y.T.unsqueeze(2), weight_in.unsqueeze(1))
        hidden = torch.tanh(pre) if self.monotone else pre.relu_()
        out = torch.baddbmm(self.bias_out.view(N, 1, 1), hidden, weight_out.unsqueeze(2)).squeeze(2).T
        if self.monotone:
            out = out + F.softplus(self.slope) * y
        return out

    def extra_repr(self) -> str:
        return f"channels={self.n_channels}, hidden={self.hidden}, monotone={self.monotone}, residual={self.residual}"
