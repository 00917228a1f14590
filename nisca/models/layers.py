"""Network building blocks: a plain MLP and the per-channel nonlinearity f = [f_1, ..., f_N].

`ChannelwiseMLP` holds N independent scalar networks R -> R with one hidden layer each (thesis: 128 ReLU
units) and evaluates all of them at once: the weights are (N, H) tensors and there is no Python loop over
channels. With ReLU units each f_n is piecewise linear with H knots, so the forward and backward passes
sort every channel's knots (starting from the previous call's order, nearly sorted while training), find
each input's bucket among them by binary search and use prefix sums over the buckets
(`PiecewiseLinearReLU`, O(N (H + B) log H)) instead of materialising the B x N x H hidden activations;
small problems (`dense_limit`, per device type) and the monotone variant with tanh units use the dense
batched form. See benchmarks/decoder_throughput.py for the measured speed against a loop of N networks,
and benchmarks/dense_limit.py for where each form is faster. `ChannelwiseDeepMLP` stacks several hidden
layers per channel (CNAE's `layers` option), each one batched product over all channels.
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


#: batch x channels x hidden below which the dense form is faster, per device type (benchmarks/dense_limit.py:
#: on the CPU the piecewise form wins from 60,000; on an H100 a step is bound by kernel launches, and the
#: dense form's 2 products beat the piecewise form's ~20 kernels up to about 10^8 elements, 400 MB each)
DENSE_LIMITS: dict[str, int] = {"cpu": 60_000, "cuda": 100_000_000}
BRANCH_FREE_SEARCH_MIN = 10_000  # batch x channels from which `_bucket_index` beats searchsorted on the CPU


def dense_limit(device: torch.device) -> int:
    """The number of B x N x H hidden elements below which `ChannelwiseMLP` takes the dense form on `device`."""
    return DENSE_LIMITS.get(device.type, DENSE_LIMITS["cpu"])


def _sort_knots(knots: torch.Tensor, order_hint: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Every channel's knots sorted (dim -1), and their order, starting from `order_hint` when it fits.

    The previous call's order is still the sorted one for every channel when the weights did not change
    (evaluation, the decoder benchmark) and for many channels while training. On the CPU the hinted order
    is checked first (a diff and a min, about a fifth of a sort): when it still sorts every channel no sort
    runs at all; otherwise only the channels out of order are sorted again, or all of them when more than a
    quarter are (below that the partial sort is cheaper). On other devices the hinted order is sorted as a
    whole, which needs no host synchronisation. Returns (sorted knots, order); the order may be the hint
    itself (it is never modified in place).
    """
    if order_hint is None or order_hint.shape != knots.shape or order_hint.device != knots.device:
        return knots.sort(dim=-1)
    hinted = knots.gather(-1, order_hint)
    if knots.device.type != "cpu":
        return _sort_from(hinted, order_hint)
    steps = hinted.diff(dim=1)  # >= 0 everywhere: the hint still sorts every channel (the usual case)
    if bool(steps.amin() >= 0):  # NaN (inf - inf, equal knots) fails this check: decided per channel below
        return hinted, order_hint
    # the channels out of order: a knot below its left neighbour (inf - inf = nan: equal, in order)
    rows = (steps.nan_to_num_(0.0, float("inf"), -float("inf")).amin(dim=1) < 0).nonzero().squeeze(1)
    if rows.numel() == 0:
        return hinted, order_hint
    if 4 * rows.numel() > knots.shape[0]:  # sorting a quarter of the channels alone costs about a full sort
        return _sort_from(hinted, order_hint)
    resorted, inner = hinted.index_select(0, rows).sort(dim=-1)
    order = order_hint.index_copy(0, rows, order_hint.index_select(0, rows).gather(-1, inner))
    return hinted.index_copy_(0, rows, resorted), order


def _sort_from(hinted: torch.Tensor, order_hint: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sort knots already gathered in the hinted order; the order is composed with the hint."""
    hinted, inner = hinted.sort(dim=-1)
    return hinted, order_hint.gather(-1, inner)


def _bucket_index(sorted_knots: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """For every input y[b, n], n * (H + 1) + the number of channel n's knots below it: its bucket's index in
    the flattened (N, H + 1) table of the buckets (int32 where it fits, shape (B, N)).

    The counts are those of torch.searchsorted(sorted_knots, y.T) (side "left"). On the CPU they are found
    by a branch-free binary search (Khuong & Morin's lower bound) run on all inputs at once: ceil(log2 H)
    + 1 steps of one index_select, one comparison and one in-place add over the B x N inputs. searchsorted
    spends most of its time there on mispredicted branches (about 20-25 ns an input with H = 128, the
    largest cost of a training step); this takes about two thirds of that (benchmarks/decoder_throughput.py).
    Its fixed cost (about 25 small ops) only pays from BRANCH_FREE_SEARCH_MIN inputs on; below that, and on
    other devices (one kernel, no branch prediction to lose), searchsorted does the search.
    """
    N, H = sorted_knots.shape
    B = y.shape[0]
    index_dtype = torch.int32 if N * (H + 1) < 2**31 else torch.int64
    rows = torch.arange(N, dtype=index_dtype, device=y.device)
    if y.device.type != "cpu" or y.numel() < BRANCH_FREE_SEARCH_MIN:
        counts = torch.searchsorted(sorted_knots, y.T.contiguous(), out_int32=index_dtype == torch.int32)
        return (counts.T + rows * (H + 1)).contiguous()
    knots = sorted_knots.view(-1)
    values = y.reshape(-1)
    below = torch.empty(values.shape, dtype=index_dtype, device=y.device)  # 1 where knot < input (a bool
    # out would be slower: comparing into and adding from the index type saves a third of every step)
    half = H // 2  # step 1: the middle knot of every channel, a (N,) vector, needs no index_select
    torch.lt(sorted_knots[:, half], y, out=below.view(B, N))
    position = torch.add(rows * H, below.view(B, N), alpha=half).view(-1)  # flat: channel n's knots from n H
    remaining = H - half  # the count lies in [position, position + remaining]
    found = torch.empty_like(values)
    while remaining > 1:
        half = remaining // 2
        torch.index_select(knots[half:], 0, position, out=found)  # knots[position + half]
        position.add_(torch.lt(found, values, out=below), alpha=half)
        remaining -= half
    torch.index_select(knots, 0, position, out=found)
    position.add_(torch.lt(found, values, out=below))
    return position.view(B, N).add_(rows)  # n H + count -> n (H + 1) + count


class PiecewiseLinearReLU(torch.autograd.Function):
    """f_n(y) = b2_n + sum_h w2_nh relu(w1_nh y + b1_nh) for all channels, exactly, without the B x N x H
    hidden tensor.

    A one-hidden-layer ReLU network of a scalar is piecewise linear: unit h is active right of its knot
    t = -b1/w1 when w1 > 0, left of it when w1 < 0 (w1 = 0: knot -inf or +inf, always or never active).
    Forward: sort each channel's H knots (`_sort_knots`, starting from `order_hint`, the order of the
    previous call), find every input's bucket among them (`_bucket_index`, a binary search), read the slope
    and intercept of its active units from prefix sums over the sorted knots. Backward: the sums of g and g*y
    over the inputs of every bucket (index_add), prefix-summed, give every knot the sums over the inputs on
    its active side: the gradients of w1, b1, w2, and every input its slope (the gradient of y).
    Pairs that always travel together, (slope, intercept) in the forward pass and (g, g*y) in the backward
    pass, are stored as one complex number (a view of a trailing dimension of 2 reals, whose sums are the
    same real additions): every gather, prefix sum and index_add then moves N x B or N x H elements instead
    of twice as many, with a contiguous index. Cost O(N (H + B) log H) instead of O(N B H). Equal to the
    dense form up to float rounding (tests/models/test_layers.py). Returns the output and the knot order
    (pass it back as order_hint).
    """

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)
    def forward(ctx, y, w1, b1, w2, b2, order_hint=None):
        N, H = w1.shape
        B = y.shape[0]
        y = y.contiguous()  # (B, N)
        w1 = w1 + 0.0  # -0.0 -> +0.0: a unit with w1 = 0 counts as rising, knot -inf (b1 > 0) or +inf
        knots = (b1 / w1).neg_().nan_to_num_(float("inf"), float("inf"), -float("inf"))  # w1 = b1 = 0: never
        sorted_knots, order = _sort_knots(knots, order_hint)
        flat = _bucket_index(sorted_knots, y)  # (B, N): bucket of each input in the flattened table
        # what passing a knot left to right adds: w2 * |w1| to the slope, w2 * sign(w1) * b1 to the intercept
        sign = torch.ones_like(w1).copysign_(w1)  # -1 where the unit is active left of its knot, else +1
        signed_w2 = w2 * sign
        weights = torch.complex(w1, b1)
        change = weights * signed_w2  # (N, H): slope + i intercept
        # table[:, j]: slope + i intercept in bucket j (left of sorted knot j): column 0 holds b2 and the
        # units active left of all knots (w1 < 0: w2 - signed_w2 = 2 w2), column j + 1 the change at sorted
        # knot j
        table = change.new_empty(N, H + 1)
        torch.sum(weights * (w2 - signed_w2), dim=1, out=table[:, 0])
        first = torch.view_as_real(table[:, 0]).mul_(0.5)
        first[:, 1].add_(b2)
        torch.gather(change, 1, order, out=table[:, 1:])
        table.cumsum_(1)
        pair = table.view(-1).index_select(0, flat.view(-1)).view(B, N)
        slope = pair.real
        ctx.save_for_backward(y, w1, b1, w2, slope, flat, order, sign)
        ctx.mark_non_differentiable(order)
        return torch.addcmul(pair.imag, y, slope), order

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, grad_out, _grad_order):
        y, w1, b1, w2, slope, flat, order, sign = ctx.saved_tensors
        N, H = w1.shape
        g = grad_out  # (B, N)
        source = torch.complex(g, g * y).reshape(-1)  # g + i g*y for every input
        sums = source.new_zeros(N * (H + 1)).index_add_(0, flat.view(-1), source)
        sums = sums.view(N, H + 1).cumsum_(1)  # [:, j]: over the inputs left of sorted knot j; H: all inputs
        left = torch.empty_like(sums[:, :H]).scatter_(1, order, sums[:, :H])  # for every unit (unsorted)
        # the sums over the inputs on each unit's active side, as two contiguous (N, H) planes g and g*y:
        # left of the knot where w1 < 0 (sign -1), right of it (all minus left) where w1 >= 0, i.e.
        # total / 2 + sign * (total / 2 - left); arithmetic, as torch.where branches on every element
        # (mispredicted half the time), and reading the real or imaginary part of a complex tensor is slow
        # enough that every plane is read once
        half_total = torch.view_as_real(sums[:, H:]).permute(2, 0, 1) * 0.5  # (2, N, 1)
        active = torch.sub(half_total, torch.view_as_real(left).permute(2, 0, 1), out=w1.new_empty(2, N, H))
        torch.addcmul(half_total, active, sign, out=active)
        grad_b1, grad_w1 = w2 * active
        return g * slope, grad_w1, grad_b1, torch.addcmul(b1 * active[0], w1, active[1]), sums[:, H].real, None


def _inverse_softplus(value: torch.Tensor) -> torch.Tensor:
    return value + torch.log(-torch.expm1(-value))


class ChannelwiseMLP(nn.Module):
    """N scalar MLPs f_n(y_n) = w2_n . act(w1_n * y_n + b1_n) + b2_n, evaluated as one batched op.

    monotone: every f_n is strictly increasing, hence invertible by construction (a decreasing channel
      is absorbed by the sign of A's row): a positive linear term softplus(c_n) * y_n is added and every
      unit is non-decreasing. `monotone_units` says how:
      'relu' (the default): ReLU units whose output weight takes the sign of their input weight,
        w2 = sign(w1) softplus(v), so w2 * w1 >= 0. Any increasing piecewise-linear f_n with H knots is
        reachable, and the sorted-knot kernel (`PiecewiseLinearReLU`) applies: as fast as the free layer.
      'tanh': tanh units with softplus-positive input and output weights (smooth; the only form before
        the fifth session, kept for its checkpoints). It needs the dense B x N x H form: 30-35x slower
        on the 156-162-channel real scenes (benchmarks/monotone_units.py).
    residual: f_n(y) = y + g_n(y) with g_n's output weights initialised small, so f starts near the
      identity (a warm start from the linear model).
    Shapes: input (batch, N) -> output (batch, N).
    """

    def __init__(self, n_channels: int, hidden: int = 128, monotone: bool = False, residual: bool = False,
                 monotone_units: str = "relu") -> None:
        super().__init__()
        if monotone_units not in ("relu", "tanh"):
            raise ValueError(f"monotone_units must be 'relu' or 'tanh', got {monotone_units!r}")
        self.n_channels = int(n_channels)
        self.hidden = int(hidden)
        self.monotone = bool(monotone)
        self.residual = bool(residual)
        self.monotone_units = monotone_units
        N, H = self.n_channels, self.hidden
        bound_out = 1.0 / math.sqrt(H)
        # The same initial distributions as nn.Linear(1, H) and nn.Linear(H, 1) for every channel.
        weight_in = torch.empty(N, H).uniform_(-1.0, 1.0)
        bias_in = torch.empty(N, H).uniform_(-1.0, 1.0)
        weight_out = torch.empty(N, H).uniform_(-bound_out, bound_out)
        bias_out = torch.empty(N).uniform_(-bound_out, bound_out)
        if self.monotone:
            if self.tanh_units:
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

    @property
    def tanh_units(self) -> bool:
        return self.monotone and self.monotone_units == "tanh"

    def effective_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The (N, H) input and output weights actually used (monotone: w2 * w1 >= 0 for every unit)."""
        if self.tanh_units:
            return F.softplus(self.weight_in), F.softplus(self.weight_out)
        if self.monotone:  # the output weight takes the input weight's sign (0 where w1 = 0)
            return self.weight_in, torch.sign(self.weight_in.detach()) * F.softplus(self.weight_out)
        return self.weight_in, self.weight_out

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        small = y.shape[0] * self.n_channels * self.hidden < dense_limit(y.device)
        out = self.dense_forward(y) if self.tanh_units or small else self.piecewise_forward(y)
        if self.residual:
            out = out + y
        return out

    def piecewise_forward(self, y: torch.Tensor) -> torch.Tensor:
        """The ReLU networks evaluated on sorted knots (no B x N x H tensor); f without the residual."""
        if self.tanh_units:
            raise ValueError("piecewise_forward needs ReLU units; this monotone layer has tanh units")
        weight_in, weight_out = self.effective_weights()
        hint = self._knot_order
        if hint is not None and hint.is_inference() and not torch.is_inference_mode_enabled():
            hint = None  # sorted under torch.inference_mode (e.g. trainer.validate): autograd cannot save it
        out, self._knot_order = PiecewiseLinearReLU.apply(y, weight_in, self.bias_in, weight_out,
                                                          self.bias_out, hint)
        return self._with_slope(out, y)

    def dense_forward(self, y: torch.Tensor) -> torch.Tensor:
        """All B x N x H hidden units materialised: the tanh units, and small problems where the sort of
        the piecewise form costs more than it saves; f without the residual."""
        if torch.is_autocast_enabled(y.device.type):  # float32, like the piecewise form (custom_fwd): the
            with torch.autocast(y.device.type, enabled=False):  # form is a speed choice, not a precision one
                return self.dense_forward(y.float())
        weight_in, weight_out = self.effective_weights()
        N = self.n_channels
        # Channel-major layout (N, batch, H): two batched matrix products over the N channels.
        pre = torch.baddbmm(self.bias_in.unsqueeze(1), y.T.unsqueeze(2), weight_in.unsqueeze(1))
        hidden = torch.tanh(pre) if self.tanh_units else pre.relu_()
        out = torch.baddbmm(self.bias_out.view(N, 1, 1), hidden, weight_out.unsqueeze(2)).squeeze(2).T
        return self._with_slope(out, y)

    def _with_slope(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Monotone mode: + softplus(c_n) y_n, which makes every f_n strictly increasing."""
        return torch.addcmul(out, F.softplus(self.slope), y) if self.monotone else out

    def extra_repr(self) -> str:
        units = f"monotone ({self.monotone_units})" if self.monotone else "free (relu)"
        return f"channels={self.n_channels}, hidden={self.hidden}, {units}, residual={self.residual}"


class ChannelwiseDeepMLP(nn.Module):
    """N scalar networks R -> R with `layers` hidden ReLU layers of H units each, every layer one batched op
    over all channels: the first and last are (N, H) weights, the ones between (N, H, H) batched products.

    The original CNAE code builds g and f this way (grouped 1 x 1 convolutions, 3 layers of 128); this class
    reproduces that architecture (measured no better than one layer on the thesis benchmark, docs/results.md
    A12). Weights start from the distributions nn.Linear would draw for each channel.
    Shapes: input (batch, N) -> output (batch, N).
    """

    def __init__(self, n_channels: int, hidden: int = 128, layers: int = 3) -> None:
        super().__init__()
        if layers < 1:
            raise ValueError(f"layers must be >= 1, got {layers}")
        self.n_channels, self.hidden, self.layers = int(n_channels), int(hidden), int(layers)
        N, H, bound = self.n_channels, self.hidden, 1.0 / math.sqrt(hidden)
        self.weight_in = nn.Parameter(torch.empty(N, H).uniform_(-1.0, 1.0))
        self.bias_in = nn.Parameter(torch.empty(N, H).uniform_(-1.0, 1.0))
        self.weight_hidden = nn.Parameter(torch.empty(layers - 1, N, H, H).uniform_(-bound, bound))
        self.bias_hidden = nn.Parameter(torch.empty(layers - 1, N, H).uniform_(-bound, bound))
        self.weight_out = nn.Parameter(torch.empty(N, H).uniform_(-bound, bound))
        self.bias_out = nn.Parameter(torch.empty(N).uniform_(-bound, bound))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        hidden = F.relu(torch.addcmul(self.bias_in, y.unsqueeze(-1), self.weight_in))  # (B, N, H)
        for weight, bias in zip(self.weight_hidden, self.bias_hidden):
            hidden = F.relu(torch.einsum("bnh,nhk->bnk", hidden, weight) + bias)
        return (hidden * self.weight_out).sum(dim=-1) + self.bias_out

    def extra_repr(self) -> str:
        return f"channels={self.n_channels}, hidden={self.hidden}, layers={self.layers}"


class SharedChannelNonlinearity(nn.Module):
    """One scalar network F for all N channels, with a per-channel affine output:
    f_n(y) = gain_n F(y) + offset_n.

    For data whose nonlinearity is physically the same function in every channel, up to each channel's
    scaling: in fast-exchange DCE-MRI every frame goes through the same spoiled gradient-echo equation
    (docs/dce.md), and the per-channel standardisation of the data only adds the affine part. N channel
    networks could each bend differently; one shared F cannot absorb channel-specific structure. All
    B x N inputs go through F at once, as one channel of a ChannelwiseMLP (same options: monotone,
    residual). Starts at the identity when `residual` (gain 1, offset 0, small g).
    Shapes: input (batch, N) -> output (batch, N).
    """

    def __init__(self, n_channels: int, hidden: int = 128, monotone: bool = False, residual: bool = False,
                 monotone_units: str = "relu") -> None:
        super().__init__()
        self.n_channels = int(n_channels)
        self.network = ChannelwiseMLP(1, hidden, monotone=monotone, residual=residual, monotone_units=monotone_units)
        self.gain = nn.Parameter(torch.ones(self.n_channels))
        self.offset = nn.Parameter(torch.zeros(self.n_channels))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        shared = self.network(y.reshape(-1, 1)).view_as(y)
        return torch.addcmul(self.offset, shared, self.gain)

    def extra_repr(self) -> str:
        return f"channels={self.n_channels}"
