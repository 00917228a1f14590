"""NMF with sum-to-one abundances (scikit-learn's NMF on the augmented data, then FCLS)."""

from __future__ import annotations

import numpy as np
import pytest

from nisca.baselines.nmf import nmf
from nisca.data.scene import Scene, Truth
from nisca.data.synthetic import simulate_pnl
from nisca.errors import ConfigError
from nisca.fit import fit


def _reflectance_scene(channels: int, K: int, seed: int) -> Scene:
    rng = np.random.default_rng(seed)
    E = rng.uniform(0.05, 1.0, size=(channels, K))
    Z = rng.dirichlet(np.ones(K), size=1000)
    Z[:K] = np.eye(K)
    return Scene(Z @ E.T, name="reflectances", truth=Truth(abundances=Z, endmembers=E))


@pytest.mark.parametrize(("channels", "K", "seed"), [(10, 3, 0), (10, 3, 1), (20, 4, 2)])
def test_nmf_recovers_noiseless_non_negative_mixtures(channels, K, seed):
    result = fit("nmf", _reflectance_scene(channels, K, seed))
    # measured <= 3e-4 (without the per-channel shift: 3-22 %)
    assert result.metrics["abundance_rmse"] < 2e-3
    assert result.metrics["sad_deg"] < 0.5


def test_nmf_handles_negative_values_through_the_exact_channel_shift():
    scene = simulate_pnl(10, 3, 500, None, "linear", seed=0, pure_pixels=True)
    assert scene.Y.min() < 0
    endmembers, abundances, _ = nmf(scene.Y, 3, seed=0)
    result = fit("nmf", scene)
    assert result.metrics["abundance_rmse"] < 2e-3  # measured 2e-5
    np.testing.assert_allclose(abundances @ endmembers.T, scene.Y, atol=1e-3 * np.abs(scene.Y).max())


def test_nmf_abundances_are_exactly_on_the_simplex_under_noise():
    scene = simulate_pnl(8, 3, 400, 20.0, "linear", seed=1)
    _, abundances, _ = nmf(scene.Y, 3, seed=0)
    assert abundances.min() >= 0.0
    np.testing.assert_allclose(abundances.sum(axis=1), 1.0, atol=1e-12)


def test_nmf_settings_are_checked():
    scene = simulate_pnl(8, 3, 100, 20.0, "linear", seed=1)
    with pytest.raises(ConfigError, match="sum_to_one_weight"):
        fit("nmf", scene, {"sum_to_one_weight": 0.0})
    with pytest.raises(ConfigError, match="init"):
        fit("nmf", scene, {"init": "svd"})
