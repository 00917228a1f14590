"""FCLS: vectorised solver against scipy's NNLS, pixel by pixel, on the sum-to-one augmented system."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import nnls

from nisca.baselines.fcls import fcls
from nisca.errors import DataError


def _reference_fcls(Y: np.ndarray, E: np.ndarray, delta: float = 1e4) -> np.ndarray:
    """The textbook FCLS: NNLS on [delta 1^T; E] a = [delta; y] for each pixel (a loop, for testing)."""
    augmented = np.vstack([np.full((1, E.shape[1]), delta), E])
    return np.array([nnls(augmented, np.concatenate([[delta], y]))[0] for y in Y])


def _objective(Y: np.ndarray, E: np.ndarray, A: np.ndarray) -> np.ndarray:
    return ((Y - A @ E.T) ** 2).sum(axis=1)


@pytest.mark.parametrize("similarity", [0.0, 0.98])
def test_fcls_matches_per_pixel_nnls(similarity):
    rng = np.random.default_rng(0)
    E = rng.random((30, 4))
    E[:, 1] = similarity * E[:, 0] + (1 - similarity) * E[:, 1]  # near-collinear endmembers when 0.98
    Y = rng.dirichlet(np.ones(4), size=300) @ E.T + 0.05 * rng.standard_normal((300, 30))
    A = fcls(Y, E)
    reference = _reference_fcls(Y, E)
    reference /= reference.sum(axis=1, keepdims=True)
    assert A.min() >= 0.0
    np.testing.assert_allclose(A.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(A, reference, atol=2e-5)
    # never worse than the reference (which only approximates the equality constraint)
    assert (_objective(Y, E, A) <= _objective(Y, E, reference) + 1e-10).all()


def test_fcls_is_exact_on_noiseless_mixtures():
    rng = np.random.default_rng(1)
    E = rng.normal(size=(12, 5))
    Z = rng.dirichlet(np.ones(5) * 0.5, size=1000)
    np.testing.assert_allclose(fcls(Z @ E.T, E), Z, atol=1e-8)


def test_fcls_refuses_mismatched_shapes():
    with pytest.raises(DataError, match="do not match"):
        fcls(np.zeros((10, 5)), np.zeros((4, 3)))
