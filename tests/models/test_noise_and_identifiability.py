"""The noise-variance estimate against the generator's s2, and the identifiability warning."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from nisca.data.synthetic import simulate_pnl
from nisca.identifiability import IdentifiabilityWarning, identifiability_problem, warn_if_unidentifiable
from nisca.models.noise import subspace_noise_variance


@pytest.mark.parametrize("channels,latent_dim,snr", [(3, 3, 20.0), (12, 4, 30.0), (40, 5, 10.0)])
def test_subspace_noise_estimate_matches_the_generator_on_linear_data(channels, latent_dim, snr):
    scene = simulate_pnl(channels, latent_dim, 4000, snr, nonlinearity="linear", seed=3)
    estimate = subspace_noise_variance(scene.Y, latent_dim)
    assert estimate == pytest.approx(scene.truth.noise_variance, rel=0.1)
    # with K one too small a signal direction is counted as noise: the estimate errs high
    assert subspace_noise_variance(scene.Y, latent_dim - 1) > 1.5 * scene.truth.noise_variance


def test_subspace_noise_estimate_is_scale_equivariant():
    scene = simulate_pnl(8, 3, 2000, 20.0, nonlinearity="linear", seed=4)
    base = subspace_noise_variance(scene.Y, 3)
    assert subspace_noise_variance(scene.Y * 1000.0, 3) == pytest.approx(base * 1e6, rel=1e-6)


@pytest.mark.parametrize("K,N,holds", [(3, 3, True), (4, 6, True), (5, 10, True), (4, 7, False),
                                       (4, 162, False), (2, 2, False), (5, 4, False)])
def test_identifiability_condition(K, N, holds):
    assert (identifiability_problem(K, N) is None) is holds


def test_warning_names_the_condition():
    with pytest.warns(IdentifiabilityWarning, match=r"3 <= K <= N <= K\(K-1\)/2.*162.*6"):
        warn_if_unidentifiable(4, 162)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert warn_if_unidentifiable(3, 3) is None
