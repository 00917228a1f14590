"""VCA + FCLS: exact on noiseless linear mixtures with pure pixels, close under noise."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nisca.baselines.vca import estimate_snr, vca, vca_max_volume
from nisca.data.scene import Scene, Truth
from nisca.data.synthetic import simulate_pnl
from nisca.fit import fit


def _pure_rows(scene: Scene) -> set[int]:
    return set(np.flatnonzero(scene.truth.abundances.max(axis=1) == 1.0).tolist())


@pytest.mark.parametrize(("channels", "K"), [(10, 3), (20, 4), (5, 2)])
def test_vca_is_exact_on_noiseless_pure_pixel_data(channels, K):
    scene = simulate_pnl(channels, K, 600, None, "linear", seed=1, pure_pixels=True)
    _, indices = vca(scene.Y, K, seed=0)
    assert set(indices.tolist()) == _pure_rows(scene)
    result = fit("vca", scene)
    assert result.metrics["abundance_rmse"] < 1e-3
    assert result.metrics["sad_deg"] < 0.1


def test_vca_takes_the_projective_branch_on_reflectance_like_data():
    rng = np.random.default_rng(5)
    E = rng.uniform(0.05, 1.0, size=(30, 3))
    Z = rng.dirichlet(np.ones(3), size=800)
    Z[:3] = np.eye(3)
    Y = Z @ E.T + rng.normal(0.0, 1e-4, size=(800, 30))  # ~ 60 dB: the high-SNR branch
    scene = Scene(Y, name="reflectances", truth=Truth(abundances=Z, endmembers=E))
    assert set(vca(scene.Y, 3, seed=0)[1].tolist()) == {0, 1, 2}
    assert fit("vca", scene).metrics["abundance_rmse"] < 1e-3


def test_vca_under_noise_is_close():
    scene = simulate_pnl(20, 4, 1000, 30.0, "linear", seed=0, pure_pixels=True)
    result = fit("vca", scene)
    assert result.metrics["abundance_rmse"] < 0.02  # measured 0.005
    assert result.metrics["sad_deg"] < 2.0  # measured 0.49


def test_snr_estimate_matches_the_generator():
    for snr in (10.0, 30.0):
        scene = simulate_pnl(20, 3, 1000, snr, "linear", seed=0)
        Y = scene.Y.T.astype(np.float64)
        mean = Y.mean(axis=1)
        centred = Y - mean[:, None]
        basis = np.linalg.svd(centred @ centred.T)[0][:, :3]
        assert abs(estimate_snr(Y, mean, basis.T @ centred) - snr) < 1.0
    clean = simulate_pnl(20, 3, 300, None, "linear", seed=0).Y.T.astype(np.float64)
    centred = clean - clean.mean(axis=1, keepdims=True)
    basis = np.linalg.svd(centred @ centred.T)[0][:, :3]
    assert estimate_snr(clean, clean.mean(axis=1), basis.T @ centred) == math.inf


def test_vca_seed_is_honoured():
    scene = simulate_pnl(10, 3, 400, 20.0, "linear", seed=2)
    first, second = vca(scene.Y, 3, seed=0), vca(scene.Y, 3, seed=0)
    np.testing.assert_array_equal(first[1], second[1])
    np.testing.assert_array_equal(first[0], second[0])


def _volume(Y: np.ndarray, endmembers: np.ndarray) -> float:
    mean = Y.mean(axis=0)
    basis = np.linalg.svd(Y - mean, full_matrices=False)[2][: endmembers.shape[1] - 1]
    vertices = (endmembers.T - mean) @ basis.T
    return abs(float(np.linalg.det(vertices[1:] - vertices[0])))


def test_vca_max_volume_keeps_the_largest_simplex_of_its_restarts():
    scene = simulate_pnl(12, 4, 800, 15.0, "linear", seed=3)
    Y = scene.Y.astype(np.float64)
    single = vca(Y, 4, seed=5)
    once = vca_max_volume(Y, 4, seed=5, restarts=1)
    np.testing.assert_array_equal(once[1], single[1])  # one restart is plain VCA with that seed
    best, _ = vca_max_volume(Y, 4, seed=5, restarts=6)
    volumes = [_volume(Y, vca(Y, 4, seed=s)[0]) for s in range(12)]
    assert _volume(Y, best) >= _volume(Y, single[0])
    assert _volume(Y, best) >= np.median(volumes)
