"""Metrics on cases whose answer is known by hand (MODEL.md section 4)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nisca.data.scene import Scene, Truth
from nisca.data.synthetic import simulate_pnl
from nisca.errors import DataError
from nisca.metrics import (
    abundance_errors,
    amari_distance,
    match_components,
    r2_nonlinearity,
    reconstruction_errors,
    sad,
    score,
    spectral_angles_deg,
    subspace_distance,
)


@pytest.fixture(scope="module")
def scene() -> Scene:
    return simulate_pnl(6, 4, 500, 30.0, "thesis", seed=0, mixing_scale=2.0)


def test_permuted_copy_scores_zero_and_recovers_the_permutation(scene):
    truth = scene.truth
    order = np.array([2, 0, 3, 1])  # estimated column j is true component order[j]
    metrics = score(
        scene,
        abundances=truth.abundances[:, order],
        endmembers=truth.endmembers[:, order],
        linear_mixture=truth.linear_mixture,
        reconstruction=scene.Y,
        mixing=truth.mixing[:, order] * np.array([2.0, -1.0, 0.5, 3.0]),
    )
    perm = match_components(truth.abundances, truth.abundances[:, order])
    np.testing.assert_array_equal(order[perm], np.arange(4))
    for key in ("abundance_mse", "abundance_rmse", "sad_deg", "reconstruction_rmse"):
        assert metrics[key] == 0.0, key
    for i in range(4):
        assert metrics[f"abundance_rmse_k{i}"] == 0.0 and metrics[f"sad_deg_k{i}"] == 0.0
    assert metrics["subspace_distance"] < 1e-6
    assert metrics["r2_nonlinearity"] == pytest.approx(1.0, abs=1e-9)
    assert metrics["amari_distance"] < 1e-9
    assert metrics["psnr_db"] == math.inf
    assert all(isinstance(value, float) for value in metrics.values())


def test_matching_uses_abundances_and_the_same_permutation_for_endmembers():
    true_z = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [0.9, 0.1]])
    est_z = true_z[:, ::-1]
    true_e = np.array([[1.0, 0.0], [0.0, 1.0]])
    est_e = np.array([[0.0, 1.0], [1.0, 0.0]])  # column 0 of est matches true 1: consistent with est_z
    perm = match_components(true_z, est_z)
    np.testing.assert_array_equal(perm, [1, 0])
    assert sad(true_e, est_e, perm)["sad_deg"] == 0.0
    assert sad(true_e, est_e, np.array([0, 1]))["sad_deg"] == pytest.approx(90.0)


def test_known_angles_give_that_sad():
    theta = np.radians([30.0, 60.0])
    true = np.array([[1.0, 1.0], [0.0, 0.0], [0.0, 0.0]])
    est = np.stack([[np.cos(t), np.sin(t), 0.0] for t in theta], axis=1) * [3.0, 0.2]  # scale-free
    np.testing.assert_allclose(spectral_angles_deg(true, est), [30.0, 60.0], rtol=1e-12)
    metrics = sad(true, est, np.array([0, 1]))
    assert metrics["sad_deg"] == pytest.approx(45.0)
    assert metrics["sad_deg_k0"] == pytest.approx(30.0) and metrics["sad_deg_k1"] == pytest.approx(60.0)
    tiny = spectral_angles_deg(np.array([[1.0], [0.0]]), np.array([[1.0], [1e-9]]))
    assert tiny[0] == pytest.approx(np.degrees(1e-9), rel=1e-6)  # accurate near zero (no arccos)
    assert np.isnan(spectral_angles_deg(np.ones((3, 1)), np.zeros((3, 1))))[0]  # undefined, never a fake 0


def test_rmse_is_the_root_of_the_mean_not_a_mean_of_roots():
    true = np.array([[1.0, 0.0], [1.0, 0.0]])
    est = np.array([[1.0, 0.0], [0.0, 1.0]])  # pixel 0 exact, pixel 1 all wrong
    metrics = abundance_errors(true, est, np.array([0, 1]))
    assert metrics["abundance_mse"] == pytest.approx(0.5)
    assert metrics["abundance_rmse"] == pytest.approx(math.sqrt(0.5))  # mean of per-pixel RMSEs would be 0.5
    assert metrics["abundance_rmse_k0"] == pytest.approx(math.sqrt(0.5))
    Y = np.array([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [4.0, 4.0]])
    R = Y.copy()
    R[3] = [0.0, 0.0]  # one pixel off by 4 in both channels
    rec = reconstruction_errors(Y, R)
    assert rec["reconstruction_rmse"] == pytest.approx(2.0)  # sqrt(32 / 8), not mean of row RMSEs (1.0)


def test_psnr_uses_the_true_peak_of_the_data():
    Y = np.full((10, 3), 0.5)
    Y[0, 0] = -2.0  # peak |Y| = 2
    R = Y + 0.02
    rec = reconstruction_errors(Y, R)
    assert rec["psnr_db"] == pytest.approx(20 * math.log10(2.0 / 0.02))  # 40 dB; a 255 peak would give 82 dB


def test_a_linear_residual_gives_r2_one_and_a_nonlinear_one_less():
    rng = np.random.default_rng(0)
    true = rng.normal(size=(400, 5))
    affine = true * np.array([2.0, -0.5, 3.0, 1.0, -7.0]) + np.array([1.0, 0.0, -4.0, 2.0, 0.3])
    assert r2_nonlinearity(true, affine) == pytest.approx(1.0, abs=1e-12)
    assert r2_nonlinearity(true, np.tanh(3 * true)) < 0.8
    assert r2_nonlinearity(true, rng.normal(size=(400, 5))) < 0.05
    constant = affine.copy()
    constant[:, 0] = 3.0  # a collapsed channel explains nothing
    assert r2_nonlinearity(true, constant) == pytest.approx(0.8, abs=1e-9)


def test_a_random_dirichlet_estimate_scores_badly(scene):
    rng = np.random.default_rng(1)
    estimate = rng.dirichlet(np.ones(4), size=scene.n_pixels)
    metrics = score(scene, abundances=estimate)
    assert metrics["abundance_rmse"] > 0.25  # a recovery method must get far below this
    assert metrics["subspace_distance"] > 0.9
    assert set(metrics) == {"abundance_mse", "abundance_rmse", "subspace_distance"} | {
        f"abundance_rmse_k{i}" for i in range(4)
    }


def test_subspace_distance_zero_for_same_row_space_and_one_for_orthogonal():
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(200, 3))
    mixed = Z @ rng.normal(size=(3, 3))  # same row space, different basis
    assert subspace_distance(Z, mixed) < 1e-10
    Q, _ = np.linalg.qr(rng.normal(size=(200, 6)))
    assert subspace_distance(Q[:, :3], Q[:, 3:]) == pytest.approx(1.0, abs=1e-10)
    tilted = Q[:, :3].copy()
    tilted[:, 0] = np.cos(0.3) * Q[:, 0] + np.sin(0.3) * Q[:, 3]  # one principal angle of 0.3 rad
    assert subspace_distance(Q[:, :3], tilted) == pytest.approx(np.sin(0.3), rel=1e-9)


def test_amari_zero_for_scaled_permutation_and_positive_otherwise():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(8, 4))
    P = np.eye(4)[[3, 1, 0, 2]]
    assert amari_distance(A, A @ P @ np.diag([2.0, -3.0, 0.1, 5.0])) < 1e-12
    assert amari_distance(A, A @ rng.normal(size=(4, 4))) > 0.2
    C = np.array([[1.0, 1.0], [0.0, 1.0]])  # rows 1 + 0, columns 0 + 1: d = 2 / (2 * 2 * 1) = 0.5
    assert amari_distance(np.eye(2), C) == pytest.approx(0.5)


def test_score_without_truth_gives_only_reconstruction_metrics(scene):
    blind = scene.with_truth(None)
    metrics = score(blind, abundances=scene.truth.abundances, reconstruction=scene.Y * 0.9)
    assert set(metrics) == {"reconstruction_rmse", "psnr_db"}
    assert metrics["reconstruction_rmse"] > 0


def test_endmember_only_truth_is_matched_on_angles(scene):
    truth = Truth(endmembers=scene.truth.endmembers)
    e_only = Scene(Y=scene.Y, name="e-only", truth=truth)
    order = [1, 3, 0, 2]
    metrics = score(e_only, abundances=scene.truth.abundances[:, order], endmembers=scene.truth.endmembers[:, order])
    assert metrics["sad_deg"] == 0.0 and "abundance_rmse" not in metrics


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(abundances=np.ones((10, 4)) / 4), r"estimated abundances must be \(pixels, K\) = 500 x K"),
        (dict(abundances=np.ones((500, 3)) / 3), "K = 3 components but the truth has K = 4"),
        (dict(abundances=np.ones(500)), "got shape"),
        (dict(abundances=np.full((500, 4), np.nan)), "NaN or Inf"),
        (dict(abundances=np.ones((500, 4)) / 4, endmembers=np.ones((5, 4))), "estimated endmembers must be"),
        (dict(abundances=np.ones((500, 4)) / 4, reconstruction=np.ones((500, 2))), "reconstruction must be"),
    ],
)
def test_bad_shapes_raise_data_errors(scene, kwargs, message):
    with pytest.raises(DataError, match=message):
        score(scene, **kwargs)


def test_match_components_refuses_different_k():
    with pytest.raises(DataError, match="K = 2 components but the truth has K = 3"):
        match_components(np.ones((5, 3)) / 3, np.ones((5, 2)) / 2)
