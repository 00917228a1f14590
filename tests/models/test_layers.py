"""The batched per-channel nonlinearity equals N separate networks, and monotone mode is increasing."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nisca.models.layers import MLP, ChannelwiseMLP


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


def test_knot_sorted_gradients_equal_the_dense_form_in_float64():
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


def test_knot_sorted_form_handles_zero_input_weights_and_inputs_outside_all_knots():
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


def test_knot_order_of_the_previous_call_is_only_a_hint():
    """The sort starts from the last call's knot order; after the weights move (knots cross) the result is
    still exact, and a stale hint (another shape) is ignored."""
    torch.manual_seed(4)
    layer = ChannelwiseMLP(5, hidden=12).double()
    y = torch.randn(40, 5, dtype=torch.float64) * 2
    weights = torch.randn(40, 5, dtype=torch.float64)
    for step in range(3):
        fast = _values_and_gradients(layer, layer.piecewise_forward, y, weights)
        dense = _values_and_gradients(layer, layer.dense_forward, y, weights)
        for a, b in zip(fast, dense):
            assert torch.allclose(a, b, atol=1e-10)
        with torch.no_grad():
            for parameter in layer.parameters():
                parameter.add_(torch.randn_like(parameter) * 0.5)
    layer._knot_order = torch.zeros(2, 3, dtype=torch.long)
    assert torch.allclose(layer.piecewise_forward(y), layer.dense_forward(y), atol=1e-10)


def test_residual_mode_adds_the_identity():
    torch.manual_seed(0)
    layer = ChannelwiseMLP(5, hidden=16, residual=True)
    y = torch.randn(32, 5)
    assert torch.allclose(layer(y), reference_loop(layer, y) + y, atol=1e-5)
    # starts near the identity: the learned part is small at initialisation
    assert (layer(y) - y).abs().mean() < 0.5 * y.abs().mean()


@pytest.mark.parametrize("residual", [False, True])
def test_monotone_mode_is_strictly_increasing_even_after_random_updates(residual):
    torch.manual_seed(0)
    layer = ChannelwiseMLP(6, hidden=32, monotone=True, residual=residual)
    with torch.no_grad():  # arbitrary raw parameters, as an optimiser could leave them
        for parameter in layer.parameters():
            parameter.add_(torch.randn_like(parameter) * 3)
    grid = torch.linspace(-20, 20, 2001).unsqueeze(1).expand(-1, 6)
    values = layer(grid)
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
