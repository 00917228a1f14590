"""ICA and PCA: the documented maps onto the simplex, and the floor they set."""

from __future__ import annotations

import numpy as np
import pytest

from nisca.baselines.common import sources_to_simplex
from nisca.data.scene import Scene
from nisca.data.synthetic import simulate_pnl
from nisca.fit import fit
from nisca.metrics import match_components


def _constant_estimate_rmse(scene: Scene) -> float:
    """aRMSE of the trivial estimate z = 1/K everywhere: a floor that carries no information."""
    Z = scene.truth.abundances
    return float(np.sqrt(np.mean((Z - 1.0 / Z.shape[1]) ** 2)))


def test_ica_recovers_independent_skewed_sources_through_the_map():
    rng = np.random.default_rng(0)
    sources = rng.exponential(size=(3000, 3))  # independent, positively skewed: ICA's own model
    Y = sources @ rng.normal(size=(6, 3)).T
    result = fit("ica", Scene(Y, name="ica-model"), {"latent_dim": 3, "seed": 0})
    expected = sources_to_simplex(sources)
    perm = match_components(expected, result.abundances)
    for k in range(3):
        assert np.corrcoef(expected[:, k], result.abundances[:, perm[k]])[0, 1] > 0.99
    assert result.metrics["converged"] == 1.0


def test_pca_abundances_are_an_affine_map_of_the_data():
    scene = simulate_pnl(10, 4, 500, 20.0, "linear", seed=0)
    Z = fit("pca", scene).abundances.astype(np.float64)
    design = np.concatenate([scene.Y.astype(np.float64), np.ones((scene.n_pixels, 1))], axis=1)
    coef, *_ = np.linalg.lstsq(design, Z, rcond=None)
    np.testing.assert_allclose(design @ coef, Z, atol=1e-5)
    assert Z.min() == pytest.approx(0.0, abs=1e-7)  # each coordinate touches 0 somewhere


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pca_and_ica_are_floors_that_beat_the_constant_estimate(seed):
    scene = simulate_pnl(10, 3, 500, None, "linear", seed=seed, pure_pixels=True)
    floor = _constant_estimate_rmse(scene)  # about 0.236 for K = 3
    pca = fit("pca", scene).metrics["abundance_rmse"]
    ica = fit("ica", scene).metrics["abundance_rmse"]
    vca = fit("vca", scene).metrics["abundance_rmse"]
    # measured: PCA 0.11-0.17, ICA 0.16-0.23 (constant estimate 0.236-0.240), VCA 0.0. ICA sits near the
    # constant estimate: sum-to-one abundances are not independent, so only a loose bound holds for it
    # (its wrapper and map are checked on ICA's own model above); a random estimate scores ~0.33.
    assert pca < 0.8 * floor
    assert ica < 1.1 * floor
    assert vca < 0.1 * min(pca, ica)
