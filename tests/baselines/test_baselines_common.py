"""Shared baseline pieces: simplex projection, Helmert basis, affine set fitting, source-to-simplex map."""

from __future__ import annotations

import numpy as np

from nisca.baselines.common import (
    affine_set_fit,
    clip_to_simplex,
    helmert_basis,
    least_squares_endmembers,
    project_simplex,
    sources_to_simplex,
)


def test_projection_lands_on_the_simplex_and_satisfies_the_optimality_condition():
    rng = np.random.default_rng(0)
    V = rng.normal(0.0, 2.0, size=(500, 5))
    W = project_simplex(V)
    assert W.min() >= 0.0
    np.testing.assert_allclose(W.sum(axis=1), 1.0, atol=1e-12)
    # w = P(v) iff (v - w) . (u - w) <= 0 for every u in the simplex; linear in u, so vertices suffice.
    for k in range(5):
        vertex = np.eye(5)[k]
        assert (np.einsum("pk,pk->p", V - W, vertex - W) <= 1e-12).all()


def test_projection_leaves_simplex_points_alone():
    Z = np.random.default_rng(1).dirichlet(np.ones(4), size=100)
    np.testing.assert_allclose(project_simplex(Z), Z, atol=1e-12)


def test_clip_to_simplex_renormalises_and_makes_all_zero_rows_uniform():
    Z = clip_to_simplex(np.array([[0.5, 0.5, -1e-9], [0.0, 0.0, 0.0], [2.0, 1.0, 1.0]]))
    np.testing.assert_allclose(Z, [[0.5, 0.5, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.5, 0.25, 0.25]])


def test_helmert_basis_is_orthonormal_and_orthogonal_to_ones():
    for K in (2, 3, 6):
        B = helmert_basis(K)
        np.testing.assert_allclose(B.T @ B, np.eye(K - 1), atol=1e-12)
        np.testing.assert_allclose(B.sum(axis=0), 0.0, atol=1e-12)


def test_affine_set_fit_reproduces_points_on_an_affine_set():
    rng = np.random.default_rng(2)
    E = rng.normal(size=(12, 4))
    Y = rng.dirichlet(np.ones(4), size=300) @ E.T
    d, C, X = affine_set_fit(Y, 3)
    np.testing.assert_allclose(C.T @ C, np.eye(3), atol=1e-10)
    np.testing.assert_allclose(X @ C.T + d, Y, atol=1e-10)


def test_sources_to_simplex_flips_negative_skew_and_is_affine_for_zero_sum_rows():
    rng = np.random.default_rng(3)
    skewed = rng.exponential(size=(1000, 3))
    flipped = skewed * np.array([1.0, -1.0, 1.0])
    np.testing.assert_allclose(sources_to_simplex(flipped), sources_to_simplex(skewed), atol=1e-12)

    scores = rng.normal(size=(400, 2))
    Z = sources_to_simplex(scores @ helmert_basis(3).T, fix_sign=False)
    design = np.concatenate([scores, np.ones((400, 1))], axis=1)
    coef, *_ = np.linalg.lstsq(design, Z, rcond=None)
    np.testing.assert_allclose(design @ coef, Z, atol=1e-10)  # one affine map of the scores
    assert Z.min() >= 0.0
    np.testing.assert_allclose(Z.sum(axis=1), 1.0, atol=1e-12)


def test_least_squares_endmembers_recovers_the_mixing_spectra():
    rng = np.random.default_rng(4)
    E = rng.random((8, 3))
    Z = rng.dirichlet(np.ones(3), size=200)
    np.testing.assert_allclose(least_squares_endmembers(Z @ E.T, Z), E, atol=1e-10)
