"""The logistic-normal posterior on the probability simplex (MODEL.md section 2).

A point u in R^{K-1} maps to the simplex by the additive logistic transform z = softmax([u, 0]).
With u ~ N(mu, diag(s^2)) the density of z (on its first K-1 coordinates) is

    log q(z) = log N(u; mu, diag(s^2)) - sum_{k=1..K} log z_k,

because the Jacobian determinant of u -> z_{1..K-1} is prod_k z_k. Every log z_k is taken from the
logits with log_softmax, so the density stays finite even where z_k underflows to 0 in float32.
"""

from __future__ import annotations

import math

import torch

LOG_2PI = math.log(2.0 * math.pi)


def pad_logits(u: torch.Tensor) -> torch.Tensor:
    """[u, 0]: the K logits of the additive logistic map (the last component is the reference)."""
    return torch.cat([u, torch.zeros_like(u[..., :1])], dim=-1)


def additive_logistic(u: torch.Tensor) -> torch.Tensor:
    """z = softmax([u, 0]) for u of shape (..., K-1); returns (..., K) rows on the simplex."""
    return torch.softmax(pad_logits(u), dim=-1)


def log_additive_logistic(u: torch.Tensor) -> torch.Tensor:
    """log z computed as log_softmax([u, 0]): finite at the simplex corners."""
    return torch.log_softmax(pad_logits(u), dim=-1)


def sample_logits(
    mu: torch.Tensor, scale: torch.Tensor, n_samples: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Reparameterised draws u = mu + scale * eps, shape (n_samples, batch, K-1)."""
    eps = torch.randn((n_samples, *mu.shape), dtype=mu.dtype, device=mu.device, generator=generator)
    return mu + scale * eps


def log_normal(u: torch.Tensor, mu: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """log N(u; mu, diag(scale^2)) summed over the last axis."""
    standard = (u - mu) / scale
    return -0.5 * (standard.pow(2) + LOG_2PI).sum(-1) - torch.log(scale).sum(-1)


def logistic_normal_log_density(u: torch.Tensor, mu: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """log q(z|x) at z = softmax([u, 0]), from the logits u (..., K-1); returns shape (...)."""
    return log_normal(u, mu, scale) - log_additive_logistic(u).sum(-1)


def additive_log_ratio(z: torch.Tensor) -> torch.Tensor:
    """The inverse map: u_k = log(z_k / z_K) for z strictly inside the simplex."""
    log_z = torch.log(z)
    return log_z[..., :-1] - log_z[..., -1:]
