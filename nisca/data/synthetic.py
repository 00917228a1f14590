"""Synthetic post-nonlinear simplex mixtures with their ground truth (MODEL.md sections 1 and 5).

    z ~ Dirichlet(1_K),  y = A z,  x = f(y) + v,  v ~ N(0, s2 I),  s2 = mean_i ||x_i||^2 / N / 10^(SNR/10)

where x in the noise formula is the noiseless f(A z). Generators (the `nonlinearity` name):

- "thesis": A = mixing_scale * N(0, 1) (mixing_scale 10), f cycles over the channels:
  f_0 = 5*sigmoid(y) + 0.3*y, f_1 = -3*tanh(y) - 0.2*y, f_2 = 0.4*exp(y), f_3 = f_0, ...
- "original": the original research code's variant: A0 ~ N(0, 1) and the linear mixture scaled by 5,
  y = 5 * A0 z, i.e. mixing_scale 5 and the stored mixing matrix is A = 5 * A0; f = 5*sigmoid(y) + 0.3*y
  on every channel.
- "linear": f = identity (A = 10 * N(0, 1)).
- "random_monotone": per channel a random strictly increasing smooth function drawn from the rng,
  f_n(y) = b_n * y + sum_j w_nj * sigmoid((y - c_nj) / s_nj) with b_n, w_nj, s_nj > 0 and the knots c_nj
  spread over the channel's range of y (A = 10 * N(0, 1)).

Random draws, all from `np.random.default_rng(seed)` in this order: A, z, the pure-pixel rows (if asked),
the nonlinearity's parameters, the noise. Seed 0 is a seed like any other.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import expit

from nisca.data.scene import Scene, Truth, check_latent_dim
from nisca.errors import DataError

ChannelFunction = Callable[[np.ndarray], np.ndarray]

DEFAULT_MIXING_SCALE = 10.0
ORIGINAL_MIXING_SCALE = 5.0  # the original code scaled A z by 5 (A ~ N(0, 1))
RANDOM_MONOTONE_TERMS = 4  # sigmoid steps per channel in "random_monotone"


@dataclass(frozen=True)
class Nonlinearity:
    """A named generator of per-channel functions f = [f_1, ..., f_N].

    `make(reference, rng)` returns a vectorised function mapping an (M, N) array channel-wise.
    `reference` is linear data (M, N) whose per-channel range places the random knots of
    "random_monotone"; fixed nonlinearities ignore it and the rng.
    """

    name: str
    description: str
    make: Callable[[np.ndarray, np.random.Generator], ChannelFunction]
    mixing_scale: float = DEFAULT_MIXING_SCALE  # default scale of A for this generator


def _thesis_function(y: np.ndarray) -> np.ndarray:
    out = np.empty_like(y)
    cycle = np.arange(y.shape[1]) % 3
    a, b, c = (y[:, cycle == i] for i in range(3))
    out[:, cycle == 0] = 5.0 * expit(a) + 0.3 * a
    out[:, cycle == 1] = -3.0 * np.tanh(b) - 0.2 * b
    with np.errstate(over="ignore"):
        out[:, cycle == 2] = 0.4 * np.exp(c)
    return out


def _identity(y: np.ndarray) -> np.ndarray:
    return np.array(y, dtype=np.float64)


def _original_function(y: np.ndarray) -> np.ndarray:
    return 5.0 * expit(y) + 0.3 * y


def _make_random_monotone(reference: np.ndarray, rng: np.random.Generator) -> ChannelFunction:
    """Draw f_n(y) = b_n y + sum_j w_nj sigmoid((y - c_nj) / s_nj), strictly increasing (b_n > 0)."""
    n_channels = reference.shape[1]
    low, high = reference.min(axis=0), reference.max(axis=0)
    width = np.maximum(high - low, 1e-6)
    J = RANDOM_MONOTONE_TERMS
    slope = rng.uniform(0.05, 0.5, size=n_channels)
    centres = low[:, None] + width[:, None] * rng.uniform(0.0, 1.0, size=(n_channels, J))
    scales = width[:, None] * rng.uniform(0.03, 0.25, size=(n_channels, J))
    weights = width[:, None] * rng.uniform(0.2, 1.0, size=(n_channels, J)) / J

    def f(y: np.ndarray) -> np.ndarray:
        out = slope * y
        for j in range(J):  # J terms, each one op over all pixels and channels
            out = out + weights[:, j] * expit((y - centres[:, j]) / scales[:, j])
        return out

    return f


NONLINEARITIES: dict[str, Nonlinearity] = {
    spec.name: spec
    for spec in (
        Nonlinearity(
            "thesis",
            "per channel cycle of 5*sigmoid(y)+0.3y, -3*tanh(y)-0.2y, 0.4*exp(y); A = 10*N(0,1)",
            lambda reference, rng: _thesis_function,
        ),
        Nonlinearity(
            "original",
            "5*sigmoid(y)+0.3y on every channel; y = 5*A0 z with A0 ~ N(0,1) (the original code)",
            lambda reference, rng: _original_function,
            mixing_scale=ORIGINAL_MIXING_SCALE,
        ),
        Nonlinearity("linear", "identity: a linear mixture; A = 10*N(0,1)", lambda reference, rng: _identity),
        Nonlinearity(
            "random_monotone",
            "per channel a random strictly increasing sum of sigmoid steps plus a positive slope",
            _make_random_monotone,
        ),
    )
}


def _nonlinearity(name: str) -> Nonlinearity:
    try:
        return NONLINEARITIES[name]
    except (KeyError, TypeError):
        raise DataError(
            f"unknown nonlinearity {name!r}; choose one of: {', '.join(NONLINEARITIES)}"
        ) from None


def make_nonlinearity(name: str, reference: np.ndarray, rng: np.random.Generator) -> ChannelFunction:
    """The per-channel function `name`, drawn once (random kinds use `rng` and `reference`'s ranges)."""
    reference = _as_2d(reference, "linear mixture")
    return _nonlinearity(name).make(reference, rng)


def apply_nonlinearity(name: str, linear: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """f(linear) channel-wise for linear (P, N). To apply one random draw of f to extra points
    (e.g. the endmembers A e_k), stack them into `linear` so that a single call sees them all."""
    linear = _as_2d(linear, "linear mixture")
    return np.asarray(make_nonlinearity(name, linear, rng)(linear), dtype=np.float64)


NOISE_REFERENCES = ("total", "channel")


def add_noise(
    clean: np.ndarray, snr_db: float | None, rng: np.random.Generator, reference: str = "total"
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian noise at `snr_db`; returns the noisy data and the per-channel noise variances (N,).

    reference "total" (MODEL.md): one white variance from the whole signal power,
    s2 = mean_i ||x_i||^2 / N / 10^(SNR/10). reference "channel": each channel at the SNR of its own
    signal variance, s2_n = var_i(x_in) / 10^(SNR/10), so that no channel is drowned by a louder one.
    `snr_db` None or +inf means noiseless (s2 = 0, the input returned as a copy).
    """
    clean = _as_2d(clean, "clean signal")
    snr = _check_snr(snr_db)
    if reference not in NOISE_REFERENCES:
        raise DataError(f"noise reference must be one of {', '.join(NOISE_REFERENCES)}, got {reference!r}")
    n_channels = clean.shape[1]
    if snr is None:
        return clean.copy(), np.zeros(n_channels)
    if reference == "total":
        signal_power = float(np.mean(np.sum(clean**2, axis=1)))
        s2 = np.full(n_channels, signal_power / n_channels / 10.0 ** (snr / 10.0))
    else:
        s2 = clean.var(axis=0) / 10.0 ** (snr / 10.0)
    if not np.isfinite(s2).all():
        raise DataError("signal power too large for a finite noise variance")
    return clean + rng.normal(0.0, 1.0, size=clean.shape) * np.sqrt(s2), s2


def simulate_pnl(
    channels: int,
    latent_dim: int,
    samples: int,
    snr_db: float | None,
    nonlinearity: str = "thesis",
    seed: int = 0,
    mixing_scale: float | None = None,
    *,
    pure_pixels: bool = False,
    noise_reference: str = "total",
) -> Scene:
    """A post-nonlinear simplex mixture scene with its full truth.

    channels N, latent_dim K (2 <= K <= N, so that A can have full column rank), samples T pixels.
    mixing_scale None takes the generator's own (5 for "original", else 10). pure_pixels=True
    replaces K randomly chosen samples by the simplex vertices e_k (for pure-pixel baselines).
    noise_reference "total" sets one noise variance from the total signal power (MODEL.md); "channel"
    gives every channel the SNR of its own signal variance (see `add_noise`).
    Truth: abundances z (T, K), endmembers f(A e_k) (N, K), linear_mixture A z (T, N), mixing A
    (N, K), the nonlinearity's name and the noise variance s2 (the mean over channels; the per-channel
    values are in the provenance's "noise_variance_per_channel").
    """
    spec = _nonlinearity(nonlinearity)
    for label, value, minimum in (("channels", channels, 1), ("latent_dim", latent_dim, 2), ("samples", samples, 2)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
            raise DataError(f"simulate_pnl: {label} must be an integer >= {minimum}, got {value!r}")
    check_latent_dim(int(latent_dim), int(channels), "simulate_pnl")
    if pure_pixels and samples < latent_dim:
        raise DataError(f"simulate_pnl: pure_pixels needs samples >= latent_dim ({samples} < {latent_dim})")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise DataError(f"simulate_pnl: seed must be a non-negative integer, got {seed!r}")
    scale = spec.mixing_scale if mixing_scale is None else float(mixing_scale)
    if not (math.isfinite(scale) and scale > 0):
        raise DataError(f"simulate_pnl: mixing_scale must be a positive number, got {mixing_scale!r}")
    snr = _check_snr(snr_db)

    rng = np.random.default_rng(int(seed))
    A = scale * rng.standard_normal((channels, latent_dim))
    Z = rng.dirichlet(np.ones(latent_dim), size=samples)
    if pure_pixels:
        rows = rng.choice(samples, size=latent_dim, replace=False)
        Z[rows] = np.eye(latent_dim)
    linear = Z @ A.T
    # One draw of f for the vertices and the samples together (random_monotone stays one function).
    mapped = apply_nonlinearity(nonlinearity, np.vstack([A.T, linear]), rng)
    endmembers, clean = mapped[:latent_dim].T, mapped[latent_dim:]
    if not np.isfinite(mapped).all():
        raise DataError(
            f"simulate_pnl: f(A z) overflowed for nonlinearity {nonlinearity!r} at mixing_scale {scale:g}; "
            "use a smaller mixing_scale"
        )
    Y, s2_channels = add_noise(clean, snr, rng, noise_reference)
    s2 = float(s2_channels.mean())

    provenance: dict[str, Any] = {
        "generator": "nisca.data.synthetic.simulate_pnl",
        "channels": int(channels),
        "latent_dim": int(latent_dim),
        "samples": int(samples),
        "snr_db": snr,
        "nonlinearity": nonlinearity,
        "nonlinearity_description": spec.description,
        "seed": int(seed),
        "mixing_scale": scale,
        "pure_pixels": bool(pure_pixels),
        "noise_variance": s2,
        "noise_reference": noise_reference,
        "noise_variance_per_channel": s2_channels.tolist(),
    }
    snr_label = ("inf" if snr is None else f"{snr:g}") + ("" if noise_reference == "total" else "ch")
    return Scene(
        Y=Y,
        name=f"pnl-{nonlinearity}-N{channels}-K{latent_dim}-T{samples}-snr{snr_label}-seed{seed}",
        truth=Truth(
            abundances=Z,
            endmembers=endmembers,
            linear_mixture=linear,
            mixing=A,
            nonlinearity=nonlinearity,
            noise_variance=s2,
            label=f"generator:{nonlinearity}",
        ),
        provenance=provenance,
    )


def _check_snr(snr_db: float | None) -> float | None:
    """None or +inf -> None (noiseless); otherwise a finite float."""
    if snr_db is None:
        return None
    try:
        snr = float(snr_db)
    except (TypeError, ValueError):
        raise DataError(f"SNR must be a number of dB, 'inf' or None, got {snr_db!r}") from None
    if math.isnan(snr) or snr == -math.inf:
        raise DataError(f"SNR must be a number of dB, 'inf' or None, got {snr_db!r}")
    return None if snr == math.inf else snr


def _as_2d(array: np.ndarray, label: str) -> np.ndarray:
    values = np.asarray(array, dtype=np.float64)
    if values.ndim != 2:
        raise DataError(f"{label} must be 2-D (samples x channels), got shape {values.shape}")
    return values
