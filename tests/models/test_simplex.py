"""The logistic-normal posterior: simplex map, change-of-variables density, stability at the corners."""

from __future__ import annotations

import math

import torch

from nisca.models.simplex import (
    additive_log_ratio,
    additive_logistic,
    log_additive_logistic,
    logistic_normal_log_density,
    sample_logits,
)

torch.set_default_dtype(torch.float32)


def test_additive_logistic_maps_onto_the_simplex_and_inverts():
    u = torch.randn(500, 4, dtype=torch.float64) * 3
    z = additive_logistic(u)
    assert z.shape == (500, 5)
    assert (z > 0).all()
    assert torch.allclose(z.sum(-1), torch.ones(500, dtype=torch.float64))
    assert torch.allclose(additive_log_ratio(z), u, atol=1e-9)


def test_log_density_equals_change_of_variables_with_a_numerical_jacobian():
    """log q(z) = log N(u) - log|det dz_{1:K-1}/du|, the Jacobian taken numerically (central differences)."""
    gen = torch.Generator().manual_seed(0)
    K = 4
    mu = torch.randn(K - 1, dtype=torch.float64, generator=gen)
    scale = torch.rand(K - 1, dtype=torch.float64, generator=gen) + 0.3
    for _ in range(5):
        u = mu + scale * torch.randn(K - 1, dtype=torch.float64, generator=gen)
        h = 1e-6
        columns = []
        for j in range(K - 1):
            step = torch.zeros(K - 1, dtype=torch.float64)
            step[j] = h
            columns.append((additive_logistic(u + step)[:-1] - additive_logistic(u - step)[:-1]) / (2 * h))
        jacobian = torch.stack(columns, dim=1)
        log_det = torch.linalg.slogdet(jacobian).logabsdet
        normal = torch.distributions.Normal(mu, scale).log_prob(u).sum()
        expected = normal - log_det
        assert torch.allclose(logistic_normal_log_density(u, mu, scale), expected, atol=1e-6)


def test_density_integrates_to_one_over_the_simplex():
    """Monte Carlo: the integral of q over the 2-simplex (area 1/2 in (z1, z2)) is 1."""
    gen = torch.Generator().manual_seed(1)
    mu = torch.tensor([0.4, -0.3], dtype=torch.float64)
    scale = torch.tensor([0.7, 0.5], dtype=torch.float64)
    z = torch.distributions.Dirichlet(torch.ones(3, dtype=torch.float64)).sample((400_000,))
    q = torch.exp(logistic_normal_log_density(additive_log_ratio(z), mu, scale))
    integral = 0.5 * q.mean()
    assert abs(integral.item() - 1.0) < 0.02
    # a density missing the Jacobian term does not normalise
    wrong = torch.distributions.Normal(mu, scale).log_prob(additive_log_ratio(z)).sum(-1).exp()
    assert abs(0.5 * wrong.mean().item() - 1.0) > 0.5


def test_log_density_is_finite_at_the_simplex_corners_in_float32():
    u = torch.tensor([[120.0, -120.0], [-150.0, -150.0], [0.0, 200.0]], requires_grad=True)
    mu = torch.zeros(3, 2)
    scale = torch.ones(3, 2)
    z = additive_logistic(u)
    assert (z == 0).any()  # z underflows: a log of z itself would be -inf
    log_q = logistic_normal_log_density(u, mu, scale)
    assert torch.isfinite(log_q).all()
    log_q.sum().backward()
    assert torch.isfinite(u.grad).all()
    assert torch.isfinite(log_additive_logistic(u)).all()


def test_sampling_is_reparameterised_with_the_right_moments():
    gen = torch.Generator().manual_seed(2)
    mu = torch.tensor([[1.0, -2.0]], requires_grad=True)
    scale = torch.tensor([[0.5, 2.0]], requires_grad=True)
    u = sample_logits(mu, scale, 20_000, generator=gen)
    assert u.shape == (20_000, 1, 2)
    assert torch.allclose(u.mean((0, 1)), mu[0], atol=0.05)
    assert torch.allclose(u.std((0, 1)), scale[0], atol=0.05)
    u.sum().backward()
    assert mu.grad is not None and scale.grad is not None
    assert math.isclose(mu.grad.sum().item(), 2 * 20_000, rel_tol=1e-6)
