"""Network building blocks: a plain MLP and the per-channel nonlinearity f = [f_1, ..., f_N].

`ChannelwiseMLP` holds N independent scalar networks R -> R with one hidden layer each (thesis: 128 ReLU
units) and evaluates all of them at once: the weights are (N, H) tensors and there is no Python loop over
channels. With ReLU units each f_n is piecewise linear with H knots, so the forward and backward passes
sort every channel's knots (starting from the previous call's order, nearly sorted while training), find
each input's bucket among them by binary search and use prefix sums over the buckets
(`PiecewiseLinearReLU`, O(N (H + B) log H)) instead of materialising the B x N x H hidden activations;
small problems (DENSE_LIMIT) and the monotone (tanh) variant use the dense batched form. See
benchmarks/decoder_throughput.py for the measured speed against a loop of N networks.
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


DENSE_LIMIT = 60_000  # batch x channels x hidden below which the dense form is faster (decoder benchmark)


class PiecewiseLinearReLU(torch.autograd.Function):
    """f_n(y) = b2_n + sum_h w2_nh relu(w1_nh y + b1_nh) for all channels, exactly, without the B x N x H
    hidden tensor.

    A one-hidden-layer ReLU network of a scalar is piecewise linear: unit h is active right of its knot
    t = -b1/w1 when w1 > 0, left of it when w1 < 0 (w1 = 0: knot -inf or +inf, always or never active).
    Forward: sort each channel's H knots (starting from `order_hint`, the order of the previous call, which
    is nearly sorted while training), find every input's bucket among them (torch.searchsorted), read the
    slope and intercept of its active units from prefix sums over the sorted knots. Backward: the sums of g
    and g*y over the inputs of every bucket (index_add), prefix-summed, give every knot the sums over the
    inputs on its active side: the gradients of w1, b1, w2, and every input its slope (the gradient of y).
    Cost O(N (H + B) log H) instead of O(N B H). Equal to the dense form up to float rounding
    (tests/models/test_layers.py). Returns the output and the knot order (pass it back as order_hint).
    """

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)
    def forward(ctx, y, w1, b1, w2, b2, order_hint=None):
        N, H = w1.shape
        yt = y.T.contiguous()  # (N, B)
        w1 = w1 + 0.0  # -0.0 -> +0.0: a unit with w1 = 0 counts as rising, knot -inf (b1 > 0) or +inf
        knots = (b1 / w1).neg_().nan_to_num_(float("inf"), float("inf"), -float("inf"))  # w1 = b1 = 0: never
        if order_hint is not None and order_hint.shape == knots.shape and order_hint.device == knots.device:
            sorted_knots, inner = knots.gather(-1, order_hint).sort(dim=-1)
            order = order_hint.gather(-1, inner)
        else:
            sorted_knots, order = knots.sort(dim=-1)
        bucket = torch.searchsorted(sorted_knots, yt)  # (N, B): the number of knots left of each input
        sign = torch.ones_like(w1).copysign_(w1)  # +1: active right of the knot, -1: left of it
        terms = torch.stack([w1, b1]).mul_(w2)  # (2, N, H): slope and intercept of every active unit
        change = terms.new_empty(2, N, H + 1)  # unsorted; column H: the units active left of all knots
        torch.mul(terms, sign, out=change[..., :H])  # what passing the knot left to right adds
        torch.sum(terms - change[..., :H], dim=-1, out=change[..., H]).mul_(0.5)
        padded_order = torch.cat([order.new_full((N, 1), H), order], dim=-1)
        table = change.gather(-1, padded_order.expand(2, N, H + 1)).cumsum_(-1)  # per bucket (2, N, H+1)
        slope, intercept = table.gather(-1, bucket.expand(2, N, -1))
        rank = torch.empty_like(order).scatter_(-1, order, torch.arange(H, device=order.device).expand(N, H))
        ctx.save_for_backward(yt, w1, b1, w2, slope, bucket, rank, sign)
        ctx.mark_non_differentiable(order)
        return intercept.addcmul_(yt, slope).add_(b2.unsqueeze(1)).T, order

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, grad_out, _grad_order):
        yt, w1, b1, w2, slope, bucket, rank, sign = ctx.saved_tensors
        N, H = w1.shape
        B = yt.shape[1]
        g = grad_out.T  # (N, B)
        src = yt.new_empty(2, N, B)
        src[0] = g
        torch.mul(g, yt, out=src[1])
        rows = torch.arange(0, 2 * N * (H + 1), H + 1, device=yt.device).view(2, N, 1)
        sums = yt.new_zeros(2 * N * (H + 1)).index_add_(0, (bucket + rows).view(-1), src.view(-1))
        sums = sums.view(2, N, H + 1).cumsum_(-1)  # [..., j]: over the inputs left of sorted knot j; H: all
        total = sums[..., H:]
        left = sums.gather(-1, rank.expand(2, N, H))  # for every unit (unsorted), over the inputs left of it
        active = torch.addcmul(total * (sign + 1.0).mul_(0.5), sign, left, value=-1.0)  # on its active side
        g0, g1 = active
        return (g * slope).T, w2 * g1, w2 * g0, torch.addcmul(b1 * g0, w1, g1), total[0, :, 0], None


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
        self._knot_order: torch.Tensor | None = None  # the knots' last sort order: a hint for the next sort

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
        out, self._knot_order = PiecewiseLinearReLU.apply(y, self.weight_in, self.bias_in, self.weight_out,
                                                          self.bias_out, self._knot_order)
        return out

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
