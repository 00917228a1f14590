"""The batched per-channel nonlinearity equals N separate networks, and monotone mode is increasing."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nisca.models import layers
from nisca.models.layers import (
    MLP,
    ChannelwiseDeepMLP,
    ChannelwiseMLP,
    SharedChannelNonlinearity,
    _bucket_index,
    _sort_knots,
)


def reference_loop(layer: ChannelwiseMLP, y: torch.Tensor) -> torch.Tensor:
    """N separate nn.Sequential(Linear(1, H), ReLU, Linear(H, 1)) loaded with the layer's weights."""
    outputs = []
    for n in range(layer.n_channels):
        net = nn.Sequential(nn.Linear(1, layer.hidden), nn.ReLU(), nn.Linear(layer.hidden, 1))
        with torch.no_grad():
            net[0].weight.copy_(layer.weight_in[n].unsqueeze(1))
            net[0].bias.copy_(layer.bias_in[n])
            net[2].weight.copy_(layer.weight_out[n].unsqueeze(0))
            net[2].bias.copy_(layer.bias_out[n : n + 1])
        outputs.append(net(y[:, n : n + 1]))
    return torch.cat(outputs, dim=1)


def deep_reference_loop(layer: ChannelwiseDeepMLP, y: torch.Tensor) -> torch.Tensor:
    """N separate nn.Sequential(Linear(1, H), ReLU, [Linear(H, H), ReLU] x (layers - 1), Linear(H, 1))."""
    outputs = []
    for n in range(layer.n_channels):
        modules = [nn.Linear(1, layer.hidden), nn.ReLU()]
        for _ in range(layer.layers - 1):
            modules += [nn.Linear(layer.hidden, layer.hidden), nn.ReLU()]
        net = nn.Sequential(*modules, nn.Linear(layer.hidden, 1))
        with torch.no_grad():
            net[0].weight.copy_(layer.weight_in[n].unsqueeze(1))
            net[0].bias.copy_(layer.bias_in[n])
            for depth in range(layer.layers - 1):
                net[2 + 2 * depth].weight.copy_(layer.weight_hidden[depth, n].T)  # Linear stores (out, in)
                net[2 + 2 * depth].bias.copy_(layer.bias_hidden[depth, n])
            net[-1].weight.copy_(layer.weight_out[n].unsqueeze(0))
            net[-1].bias.copy_(layer.bias_out[n : n + 1])
        outputs.append(net(y[:, n : n + 1]))
    return torch.cat(outputs, dim=1)


@pytest.mark.parametrize("n_channels,depth", [(1, 1), (3, 2), (5, 3)])
def test_deep_channel_networks_equal_a_loop_of_separate_deep_networks(n_channels, depth):
    torch.manual_seed(0)
    layer = ChannelwiseDeepMLP(n_channels, hidden=16, layers=depth)
    y = torch.randn(50, n_channels) * 3
    assert torch.allclose(layer(y), deep_reference_loop(layer, y), atol=1e-5)
    y2 = y.clone()
    y2[:, 0] += 1.0
    changed = (layer(y2) - layer(y)).abs().amax(0) > 0
    assert changed[0] and not changed[1:].any()
    with pytest.raises(ValueError, match="layers must be >= 1"):
        ChannelwiseDeepMLP(n_channels, layers=0)


@pytest.mark.parametrize("form", ["forward", "dense_forward", "piecewise_forward"])
@pytest.mark.parametrize("n_channels,batch", [(1, 64), (3, 64), (17, 64), (40, 300)])
def test_batched_nonlinearity_equals_a_loop_of_separate_networks(n_channels, batch, form):
    torch.manual_seed(0)
    layer = ChannelwiseMLP(n_channels, hidden=32)
    evaluate = getattr(layer, form)
    y = torch.randn(batch, n_channels) * 3
    assert torch.allclose(evaluate(y), reference_loop(layer, y), atol=1e-4)
    # each channel's output depends on its own input only
    y2 = y.clone()
    y2[:, 0] += 1.0
    changed = (evaluate(y2) - evaluate(y)).abs().amax(0) > 0
    assert changed[0] and not changed[1:].any()


def test_knot_sorted_gradients_equal_the_dense_form_in_float64(search):
    """The piecewise-linear forward/backward (sorted knots) against autograd through all B x N x H units."""
    torch.manual_seed(1)
    layer = ChannelwiseMLP(9, hidden=24).double()
    with torch.no_grad():  # include units with w1 = 0 (constant: active iff b1 > 0)
        layer.weight_in[0, :2] = 0.0
        layer.bias_in[0, 0], layer.bias_in[0, 1] = 1.0, -1.0
    y = (torch.randn(70, 9, dtype=torch.float64) * 3).requires_grad_()
    weights = torch.randn(70, 9, dtype=torch.float64)
    results = []
    for forward in (layer.piecewise_forward, layer.dense_forward):
        layer.zero_grad()
        y.grad = None
        out = forward(y)
        (out * weights).sum().backward()
        results.append([out.detach().clone(), y.grad.clone()] + [p.grad.clone() for p in layer.parameters()])
    for fast, dense in zip(*results):
        assert torch.allclose(fast, dense, atol=1e-10)


def _values_and_gradients(layer, forward, y, weights):
    layer.zero_grad()
    y = y.detach().clone().requires_grad_()
    out = forward(y)
    (out * weights).sum().backward()
    return [out.detach(), y.grad] + [p.grad.clone() for p in layer.parameters()]


def test_knot_sorted_form_handles_zero_input_weights_and_inputs_outside_all_knots(search):
    """w1 = +0 / -0 with b1 > 0, < 0, = 0 (always on, never on, never on: relu'(0) = 0), and inputs far
    left and right of every knot (the first and last bucket)."""
    torch.manual_seed(2)
    layer = ChannelwiseMLP(4, hidden=10).double()
    with torch.no_grad():
        layer.weight_in[0, :6] = torch.tensor([0.0, -0.0, 0.0, -0.0, 0.0, -0.0], dtype=torch.float64)
        layer.bias_in[0, :6] = torch.tensor([1.0, 1.0, -1.0, -1.0, 0.0, 0.0], dtype=torch.float64)
        layer.weight_in[1] = 0.0  # a channel with constant units only
    y = torch.randn(50, 4, dtype=torch.float64) * 3
    y[:5] = 1e4
    y[5:10] = -1e4
    weights = torch.randn(50, 4, dtype=torch.float64)
    fast = _values_and_gradients(layer, layer.piecewise_forward, y, weights)
    dense = _values_and_gradients(layer, layer.dense_forward, y, weights)
    for a, b in zip(fast, dense):
        assert torch.allclose(a, b, atol=1e-8, rtol=1e-10)


def test_knot_sorted_form_at_inputs_equal_to_a_knot():
    """An input exactly at a knot (measure zero): the value is the dense one and nothing is NaN."""
    torch.manual_seed(3)
    layer = ChannelwiseMLP(3, hidden=16)
    knots = -layer.bias_in.detach() / layer.weight_in.detach()
    y = torch.randn(20, 3)
    y[:16] = knots.T  # every knot of every channel is one of the inputs
    weights = torch.randn(20, 3)
    fast = _values_and_gradients(layer, layer.piecewise_forward, y, weights)
    assert torch.allclose(fast[0], reference_loop(layer, y).detach(), atol=1e-5)
    assert all(torch.isfinite(t).all() for t in fast)


def _exact_while_weights_move(layer: ChannelwiseMLP, batch: int, steps: int, move) -> ChannelwiseMLP:
    """Values and all gradients of the piecewise form equal the dense form's at every step, while
    `move(layer, step)` changes the weights between steps (so the knot-order hint goes stale)."""
    y = torch.randn(batch, layer.n_channels, dtype=torch.float64) * 2
    weights = torch.randn(batch, layer.n_channels, dtype=torch.float64)
    for step in range(steps):
        fast = _values_and_gradients(layer, layer.piecewise_forward, y, weights)
        dense = _values_and_gradients(layer, layer.dense_forward, y, weights)
        for a, b in zip(fast, dense):
            assert torch.allclose(a, b, atol=1e-10)
        with torch.no_grad():
            move(layer, step)
    return layer


def test_knot_order_of_the_previous_call_is_only_a_hint():
    """The sort starts from the last call's knot order; after the weights move (knots cross) the result is
    still exact, and a stale hint (another shape) is ignored."""
    torch.manual_seed(4)

    def move_every_weight(layer: ChannelwiseMLP, step: int) -> None:
        for parameter in layer.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.5)

    layer = _exact_while_weights_move(ChannelwiseMLP(5, hidden=12).double(), batch=40, steps=3,
                                      move=move_every_weight)
    layer._knot_order = torch.zeros(2, 3, dtype=torch.long)
    y = torch.randn(40, 5, dtype=torch.float64) * 2
    assert torch.allclose(layer.piecewise_forward(y), layer.dense_forward(y), atol=1e-10)


def test_monotone_relu_units_use_the_sorted_knot_kernel_with_the_dense_gradients(search):
    """Monotone ReLU units are a ReLU network with sign-coupled output weights: the piecewise kernel gives
    the dense form's output and gradients, and a unit with w1 = 0 (constant) is allowed."""
    torch.manual_seed(2)
    layer = ChannelwiseMLP(5, hidden=16, monotone=True).double()
    with torch.no_grad():
        layer.weight_in[0, 0] = 0.0
    y = torch.randn(60, 5, dtype=torch.float64) * 3
    weights = torch.randn(60, 5, dtype=torch.float64)
    fast = _values_and_gradients(layer, layer.piecewise_forward, y, weights)
    dense = _values_and_gradients(layer, layer.dense_forward, y, weights)
    for a, b in zip(fast, dense):
        assert torch.allclose(a, b, atol=1e-10)
    slopes = torch.autograd.functional.jacobian(lambda v: layer.piecewise_forward(v).sum(0), y[:1])
    assert (slopes.diagonal(dim1=0, dim2=2).squeeze() > 0).all()


def test_unknown_monotone_units_are_refused():
    with pytest.raises(ValueError, match="monotone_units"):
        ChannelwiseMLP(3, monotone=True, monotone_units="sigmoid")


def test_residual_mode_adds_the_identity():
    torch.manual_seed(0)
    layer = ChannelwiseMLP(5, hidden=16, residual=True)
    y = torch.randn(32, 5)
    assert torch.allclose(layer(y), reference_loop(layer, y) + y, atol=1e-5)
    # starts near the identity: the learned part is small at initialisation
    assert (layer(y) - y).abs().mean() < 0.5 * y.abs().mean()


@pytest.mark.parametrize("units", ["relu", "tanh"])
@pytest.mark.parametrize("residual", [False, True])
def test_monotone_mode_is_strictly_increasing_even_after_random_updates(residual, units):
    torch.manual_seed(0)
    layer = ChannelwiseMLP(6, hidden=32, monotone=True, residual=residual, monotone_units=units)
    with torch.no_grad():  # arbitrary raw parameters, as an optimiser could leave them
        for parameter in layer.parameters():
            parameter.add_(torch.randn_like(parameter) * 3)
    grid = torch.linspace(-20, 20, 2001).unsqueeze(1).expand(-1, 6)
    values = layer(grid)  # 12,000 inputs: the dense form for tanh units, sorted knots for ReLU units
    assert (values.diff(dim=0) > 0).all()
    # the same random weights in unconstrained mode are not monotone: the constraint does the work
    free = ChannelwiseMLP(6, hidden=32)
    free.load_state_dict({k: v for k, v in layer.state_dict().items() if k != "slope"})
    assert not (free(grid).diff(dim=0) > 0).all()


def test_gradients_reach_every_channel_and_the_mlp_shapes():
    layer = ChannelwiseMLP(4, hidden=8)
    layer(torch.randn(10, 4)).pow(2).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in layer.parameters())
    mlp = MLP(7, 3, (16, 8))
    assert mlp(torch.randn(5, 7)).shape == (5, 3)
    assert sum(isinstance(m, nn.Linear) for m in mlp) == 3


@pytest.fixture(params=["branch-free search", "searchsorted"])
def search(request, monkeypatch):
    """Both ways `_bucket_index` finds the buckets on the CPU, whatever the problem size."""
    monkeypatch.setattr(layers, "BRANCH_FREE_SEARCH_MIN", 0 if request.param == "branch-free search" else 10**9)
    return request.param


@pytest.mark.parametrize("hidden", [1, 2, 3, 7, 16, 128, 129])
def test_branch_free_knot_search_counts_like_searchsorted(hidden, search):
    """`_bucket_index` (the CPU binary search) against torch.searchsorted (side "left"), with inputs on
    knots, repeated and infinite knots, and inputs outside all knots."""
    torch.manual_seed(5)
    n_channels, batch = 7, 60
    knots = torch.randn(n_channels, hidden) * 2
    knots[0, : (hidden + 1) // 2] = 0.5  # repeated knots
    knots[1, 0] = -float("inf")
    knots[2, -1] = float("inf")
    knots = knots.sort(dim=-1).values
    y = torch.randn(batch, n_channels) * 3
    y[:4] = knots[:, :4].T if hidden >= 4 else knots[:, :1].T  # inputs exactly on knots
    y[4], y[5] = 1e4, -1e4
    index = _bucket_index(knots, y)
    assert index.dtype == torch.int32 and index.shape == (batch, n_channels)
    expected = torch.searchsorted(knots, y.T.contiguous()).T + torch.arange(n_channels) * (hidden + 1)
    assert torch.equal(index.long(), expected)


def _hint_results(knots, hint):
    sorted_knots, order = _sort_knots(knots, hint)
    assert torch.equal(sorted_knots, knots.sort(dim=-1).values)  # values sorted
    assert torch.equal(knots.gather(-1, order), sorted_knots)  # and the order is a permutation giving them
    assert torch.equal(order.sort(dim=-1).values, torch.arange(knots.shape[1]).expand_as(order))
    return sorted_knots, order


def test_knot_sort_is_skipped_or_limited_to_the_channels_a_stale_hint_no_longer_sorts():
    torch.manual_seed(6)
    knots = torch.randn(12, 9)
    knots[0, :3] = float("inf")  # equal infinite knots (inf - inf = nan between them) ...
    knots[0, 3:5] = -float("inf")
    _, hint = knots.sort(dim=-1)
    hint_before = hint.clone()
    sorted_knots, order = _hint_results(knots, hint)
    assert order is hint  # still sorted: no sort at all, the hint itself comes back
    moved = knots.clone()
    moved[0, 5], moved[0, 6] = 10.0, -10.0  # ... and an inversion in the same channel is still found
    moved[3] = moved[3].flip(0)
    _, order = _hint_results(moved, hint)  # two channels of twelve: only those re-sorted
    untouched = [n for n in range(12) if n not in (0, 3)]
    assert torch.equal(order[untouched], hint[untouched])
    assert not torch.equal(order[0], hint[0]) and not torch.equal(order[3], hint[3])
    _, order = _hint_results(torch.randn(12, 9), hint)  # most channels out of order: one sort of all
    assert torch.equal(hint, hint_before)  # the hint is never modified in place


def test_piecewise_form_stays_exact_while_few_knots_cross_between_steps(search):
    """Small weight updates (a few channels' knot orders change per step: the partial re-sort) against the
    dense form, values and all gradients."""
    torch.manual_seed(7)

    def move_one_channel(layer: ChannelwiseMLP, step: int) -> None:
        layer.bias_in[step % 12].add_(torch.randn(40, dtype=torch.float64) * 0.3)

    _exact_while_weights_move(ChannelwiseMLP(12, hidden=40).double(), batch=50, steps=6, move=move_one_channel)


def test_shared_nonlinearity_is_one_curve_up_to_a_per_channel_affine_map():
    """f_n(y) = gain_n F(y) + offset_n: the same input in two channels differs only by those two numbers,
    gradients reach the shared network, and it starts at the identity in residual mode."""
    torch.manual_seed(0)
    layer = SharedChannelNonlinearity(5, hidden=16, residual=True)
    y = torch.linspace(-3, 3, 200).unsqueeze(1).expand(200, 5).contiguous()
    assert torch.allclose(layer(y), y, atol=0.5)  # near the identity at the start (small g)
    with torch.no_grad():
        layer.network.weight_out.mul_(50.0)  # a clearly nonlinear F
        layer.gain.copy_(torch.tensor([1.0, 2.0, -1.0, 0.5, 3.0]))
        layer.offset.copy_(torch.tensor([0.0, 1.0, 2.0, -1.0, 0.5]))
    out = layer(y)
    shared = (out - layer.offset) / layer.gain
    assert torch.allclose(shared, shared[:, :1].expand_as(shared), atol=1e-5)
    assert (shared[:, 0] - y[:, 0]).abs().max() > 0.1  # F is not the identity any more
    out.square().sum().backward()
    assert layer.network.weight_in.grad.shape == (1, 16) and layer.network.weight_in.grad.abs().sum() > 0
    assert layer.gain.grad.shape == (5,)


def test_dense_limit_is_chosen_per_device_type(monkeypatch):
    """The form follows the device's own limit: a CPU input takes the CPU's, whatever CUDA's is."""
    torch.manual_seed(0)
    layer = ChannelwiseMLP(4, hidden=8)
    y = torch.randn(10, 4)  # 10 x 4 x 8 = 320 hidden elements
    calls = []
    monkeypatch.setattr(layer, "dense_forward", lambda y: calls.append("dense") or y)
    monkeypatch.setattr(layer, "piecewise_forward", lambda y: calls.append("piecewise") or y)
    monkeypatch.setitem(layers.DENSE_LIMITS, "cuda", 10**9)
    monkeypatch.setitem(layers.DENSE_LIMITS, "cpu", 320)
    layer(y)
    monkeypatch.setitem(layers.DENSE_LIMITS, "cpu", 321)
    layer(y)
    assert calls == ["piecewise", "dense"]
    assert layers.dense_limit(torch.device("meta")) == layers.DENSE_LIMITS["cpu"]  # unknown types: the CPU's


def test_dense_form_computes_in_float32_under_autocast():
    """Under bf16 autocast (the mixed precision of wide scenes on GPUs) the dense form, like the piecewise
    one, stays in float32: which form runs is a speed choice, never a precision one."""
    torch.manual_seed(0)
    layer = ChannelwiseMLP(5, hidden=16)
    y = torch.randn(32, 5) * 2
    with torch.autocast("cpu", dtype=torch.bfloat16):
        dense = layer.dense_forward(y.bfloat16())
        piecewise = layer.piecewise_forward(y.bfloat16())
    assert dense.dtype == piecewise.dtype == torch.float32
    assert torch.allclose(dense, piecewise, atol=1e-5)
    assert torch.allclose(dense, layer.dense_forward(y.bfloat16().float()), atol=1e-6)
