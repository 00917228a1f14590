"""The purest-pixel endmember estimate: the mean spectrum of each component's purest pixels."""

from __future__ import annotations

import numpy as np

from nisca.models.nisca import purest_pixel_endmembers


def _linear_scene(seed: int = 0, pure_per_component: int = 20):
    """Noiseless linear mixtures of 3 endmembers over 30 channels with `pure_per_component` pure pixels each."""
    rng = np.random.default_rng(seed)
    E = rng.uniform(0.1, 1.0, size=(30, 3))
    mixed = rng.dirichlet(np.ones(3) * 2.0, size=500) * 0.9 + 0.1 / 3  # rows sum to one, none above 0.94
    pure = np.repeat(np.eye(3), pure_per_component, axis=0)
    Z = np.vstack([mixed, pure])
    return Z @ E.T, Z, E


def test_the_purest_pixels_of_a_linear_scene_give_its_endmembers():
    Y, Z, E = _linear_scene()
    assert np.allclose(purest_pixel_endmembers(Y, Z, n_pixels=20), E, atol=1e-12)
    # columns follow the estimate's components
    assert np.allclose(purest_pixel_endmembers(Y, Z[:, [2, 0, 1]], n_pixels=20), E[:, [2, 0, 1]], atol=1e-12)


def test_averaging_mixed_pixels_in_moves_the_estimate_inside_the_simplex():
    """More pixels than are pure: the mean includes mixed pixels, so it is no longer the endmember."""
    Y, Z, E = _linear_scene(pure_per_component=2)
    wide = purest_pixel_endmembers(Y, Z, n_pixels=50)
    assert np.abs(wide - E).max() > 0.01
    assert wide.shape == E.shape


def test_fewer_pixels_than_asked_uses_them_all():
    Y, Z, _ = _linear_scene()
    small = purest_pixel_endmembers(Y[:5], Z[:5], n_pixels=20)
    assert np.allclose(small, np.stack([Y[:5].mean(0)] * 3, axis=1))
