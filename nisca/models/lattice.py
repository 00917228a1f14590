"""Exact posterior estimates for small K: the posterior of z on a lattice that covers the simplex.

With K <= 5 the simplex is low-dimensional enough to integrate over directly. Every lattice point g has
the same prior mass under the flat Dirichlet(1) prior (or its Dirichlet(alpha) density, when learned), so
the posterior given x is a softmax over the lattice of log p(x | g) + log p(g), and the posterior mean is
that softmax's average of g. This is the Bayes estimate under the trained decoder, free of the encoder's
approximation (the amortisation gap) and of Monte Carlo noise: the abundances' default readout for
K <= 5 (`inference: auto`). The same sum gives the exact marginal likelihood log p(x), which
`objective: lattice` maximises in training (nisca.models.training.VariationalConfig).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from nisca.errors import ConfigError

MAX_LATTICE_POINTS = 50_000  # decoder evaluations, once per fit; pixels x points per chunk below
TRAINING_LATTICE_POINTS = 12_000  # decoder evaluations per training step with `objective: lattice`
MIN_RESOLUTION = 20  # steps per unit: coarser lattices bias the posterior mean of a narrow posterior
PAIR_BUDGET = 1 << 24  # (pixels x lattice points) per chunk: 128 MiB of float64 scores


def lattice_size(latent_dim: int, resolution: int) -> int:
    """Points of the lattice: compositions of `resolution` into K parts, C(resolution + K - 1, K - 1)."""
    return math.comb(resolution + latent_dim - 1, latent_dim - 1)


def default_resolution(latent_dim: int, max_points: int = MAX_LATTICE_POINTS, setting: str = "inference") -> int:
    """The finest resolution whose lattice has at most `max_points` points; an error naming `setting` when
    that is coarser than MIN_RESOLUTION (K >= 6), where sampling is the way to the posterior."""
    resolution = MIN_RESOLUTION
    if not lattice_fits(latent_dim, max_points):
        other = "inference 'sampling'" if setting == "inference" else "objective 'iwae'"
        raise ConfigError(
            f"{setting} 'lattice' covers the simplex with at most {max_points:,} points, too few for K = "
            f"{latent_dim} (a 1/{MIN_RESOLUTION} lattice has {lattice_size(latent_dim, resolution):,}); "
            f"it works up to K = 5: use {other}"
        )
    while lattice_size(latent_dim, resolution + 1) <= max_points:
        resolution += 1
    return resolution


def lattice_fits(latent_dim: int, max_points: int = MAX_LATTICE_POINTS) -> bool:
    """Whether a lattice of at least MIN_RESOLUTION steps fits in `max_points` (K <= 5 for the defaults)."""
    return lattice_size(latent_dim, MIN_RESOLUTION) <= max_points


def lattice_inference(inference: str, latent_dim: int) -> bool:
    """Whether the abundances come from the lattice: always for 'lattice', for 'auto' when K <= 5."""
    if inference == "auto":
        return lattice_fits(latent_dim)
    return inference == "lattice"


def simplex_lattice(latent_dim: int, resolution: int, *, device: torch.device | str | None = None,
                    dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(points, K): z = (n + 1/K) / (resolution + 1) for every n of K non-negative integers summing to
    `resolution`. The shift keeps every point strictly inside the simplex (finite log z for a learned
    prior); the points are evenly spread, so each carries the same mass of a flat prior."""
    axes = [torch.arange(resolution + 1, device=device)] * (latent_dim - 1)
    heads = torch.cartesian_prod(*axes).reshape(-1, latent_dim - 1)
    heads = heads[heads.sum(1) <= resolution]
    counts = torch.cat([heads, resolution - heads.sum(1, keepdim=True)], dim=1)
    return ((counts.to(dtype) + 1.0 / latent_dim) / (resolution + 1)).to(dtype)


def lattice_posterior(x: torch.Tensor, means: torch.Tensor, noise_variance: torch.Tensor, lattice: torch.Tensor,
                      log_prior: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Posterior mean and mode of z for each row of x (pixels, N) under Gaussian noise.

    means: the decoder at every lattice point, (points, N); noise_variance: (N,); log_prior: (points,)
    or None for a flat prior."""
    lattice = lattice.double()
    posterior_mean, posterior_mode = [], []
    for scores, _ in pairwise_log_likelihoods(x, means, noise_variance):  # the per-pixel offset cancels
        if log_prior is not None:
            scores += log_prior.double()
        posterior_mean.append(torch.softmax(scores, dim=1) @ lattice)
        posterior_mode.append(lattice[scores.argmax(1)])
    return {"mean": torch.cat(posterior_mean), "mode": torch.cat(posterior_mode)}


def lattice_log_likelihood(x: torch.Tensor, means: torch.Tensor, noise_variance: torch.Tensor,
                           dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """log p(x) per row of x (pixels,) under the flat prior: the log of the lattice average of the Gaussian
    likelihood N(x; mean_g, diag(noise_variance)). Comparable between decoders in the same data units:
    the exact marginal likelihood that the variational bounds approximate from below, and the training
    loss of `objective: lattice` (differentiable; float32 there, on a coarser lattice)."""
    return torch.cat([torch.logsumexp(scores, dim=1) + offsets - math.log(len(means))
                      for scores, offsets in pairwise_log_likelihoods(x, means, noise_variance, dtype)])


def pairwise_log_likelihoods(x: torch.Tensor, means: torch.Tensor, noise_variance: torch.Tensor,
                             dtype: torch.dtype = torch.float64) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """log N(x_i; mean_g, diag(noise_variance)) for a chunk of pixels i and every lattice point g, chunk by
    chunk so that memory stays at PAIR_BUDGET values, as (scores (pixels, points), offsets (pixels,)) with
    log N = scores + offsets[:, None]. The split keeps the (pixels x points) work to one fused matrix
    product, scores = x_i . (mean_g / s2) - |mean_g|^2 / (2 s2): the terms in x alone are the same for
    every g, so posterior weights need only the scores (the posterior 1.5-1.7x faster on 162 channels than
    expanding the square over every pair, docs/results.md). In float64 by default: at high SNR the values
    are large and differ by a few units."""
    x, means, noise_variance = x.to(dtype), means.to(dtype), noise_variance.to(dtype)
    precision = 1.0 / noise_variance
    weighted_means = means * precision  # (points, N)
    half_energy = -0.5 * (means * weighted_means).sum(1)  # (points,)
    constant = -0.5 * torch.log(2 * math.pi * noise_variance).sum()
    step = max(1, PAIR_BUDGET // max(1, len(means)))
    for start in range(0, len(x), step):
        chunk = x[start : start + step]
        with torch.autocast(device_type=x.device.type, enabled=False):  # no bf16 matmul under mixed precision
            scores = torch.addmm(half_energy, chunk, weighted_means.T)
        yield scores, constant - 0.5 * (chunk.pow(2) * precision).sum(1)
