"""Synthetic post-nonlinear mixtures: shapes, simplex, seeds, SNR, and each generator's f (MODEL.md 1, 5)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit

from nisca.data.synthetic import (
    NONLINEARITIES,
    add_noise,
    apply_nonlinearity,
    make_nonlinearity,
    simulate_pnl,
)
from nisca.errors import DataError


def _thesis_reference(y: np.ndarray) -> np.ndarray:
    """MODEL.md's per-channel cycle written out channel by channel (independent of the implementation)."""
    out = np.empty_like(y)
    for n in range(y.shape[1]):
        v = y[:, n]
        out[:, n] = (5 * expit(v) + 0.3 * v, -3 * np.tanh(v) - 0.2 * v, 0.4 * np.exp(v))[n % 3]
    return out


@pytest.mark.parametrize("name", sorted(NONLINEARITIES))
def test_shapes_simplex_and_truth(name):
    scene = simulate_pnl(6, 4, 300, 25.0, name, seed=3)
    truth = scene.truth
    assert scene.Y.shape == (300, 6) and scene.Y.dtype == np.float32
    assert truth.abundances.shape == (300, 4) and truth.endmembers.shape == (6, 4)
    assert truth.linear_mixture.shape == (300, 6) and truth.mixing.shape == (6, 4)
    assert (truth.abundances >= 0).all()
    np.testing.assert_allclose(truth.abundances.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(truth.linear_mixture, truth.abundances @ truth.mixing.T, rtol=1e-5, atol=1e-4)
    assert truth.nonlinearity == name and truth.noise_variance > 0
    for key in ("channels", "latent_dim", "samples", "snr_db", "nonlinearity", "seed", "mixing_scale", "pure_pixels"):
        assert key in scene.provenance
    assert scene.provenance["seed"] == 3 and scene.provenance["nonlinearity"] == name


def test_thesis_nonlinearity_cycles_over_channels_and_endmembers_are_f_of_columns():
    scene = simulate_pnl(7, 3, 200, None, "thesis", seed=0, mixing_scale=2.0)
    truth = scene.truth
    assert truth.noise_variance == 0.0
    expected = _thesis_reference(truth.linear_mixture.astype(np.float64))
    np.testing.assert_allclose(scene.Y, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(truth.endmembers, _thesis_reference(truth.mixing.T.astype(np.float64)).T, rtol=1e-5)


def test_original_generator_uses_one_sigmoid_and_scale_five():
    scene = simulate_pnl(40, 5, 100, None, "original", seed=1)
    y = scene.truth.linear_mixture.astype(np.float64)
    np.testing.assert_allclose(scene.Y, 5 * expit(y) + 0.3 * y, rtol=1e-5, atol=1e-5)
    assert scene.provenance["mixing_scale"] == 5.0
    assert 4.0 < scene.truth.mixing.std() < 6.0  # A = 5 * N(0, 1) over 200 entries
    thesis = simulate_pnl(40, 5, 100, None, "thesis", seed=1, mixing_scale=None)
    assert 8.0 < thesis.truth.mixing.std() < 12.0  # A = 10 * N(0, 1)


def test_linear_generator_is_identity():
    scene = simulate_pnl(5, 3, 100, None, "linear", seed=2)
    np.testing.assert_array_equal(scene.Y, scene.truth.linear_mixture)
    np.testing.assert_array_equal(scene.truth.endmembers, scene.truth.mixing)


def test_random_monotone_is_strictly_increasing_and_nonlinear():
    rng = np.random.default_rng(0)
    reference = rng.normal(scale=10.0, size=(500, 8))
    f = make_nonlinearity("random_monotone", reference, np.random.default_rng(5))
    grid = np.linspace(reference.min() - 5, reference.max() + 5, 4001)[:, None].repeat(8, axis=1)
    values = f(grid)
    assert (np.diff(values, axis=0) > 0).all()
    # not an affine map in disguise: a straight line leaves a visible residual in every channel
    for n in range(8):
        coef = np.polyfit(grid[:, n], values[:, n], 1)
        residual = values[:, n] - np.polyval(coef, grid[:, n])
        assert residual.std() > 1e-2 * values[:, n].std()
    # the scene keeps the ordering of every channel (float32 rounding is monotone too)
    scene = simulate_pnl(8, 4, 400, None, "random_monotone", seed=4)
    for n in range(8):
        order = np.argsort(scene.truth.linear_mixture[:, n])
        assert (np.diff(scene.Y[order, n]) >= 0).all()


def test_noise_variance_follows_the_snr_formula():
    clean = simulate_pnl(4, 3, 20000, None, "original", seed=7)
    noisy = simulate_pnl(4, 3, 20000, 15.0, "original", seed=7)
    x = clean.Y.astype(np.float64)
    expected = np.mean(np.sum(x**2, axis=1)) / 4 / 10 ** 1.5
    assert noisy.truth.noise_variance == pytest.approx(expected, rel=1e-5)
    noise = noisy.Y.astype(np.float64) - x
    assert noise.var() == pytest.approx(expected, rel=0.03)
    assert abs(noise.mean()) < 0.02 * np.sqrt(expected)


def test_add_noise_none_and_inf_are_noiseless():
    clean = np.ones((10, 3))
    for snr in (None, float("inf")):
        out, s2 = add_noise(clean, snr, np.random.default_rng(0))
        np.testing.assert_array_equal(s2, np.zeros(3))
        np.testing.assert_array_equal(out, clean)
    out, s2 = add_noise(clean, 0.0, np.random.default_rng(0))
    np.testing.assert_allclose(s2, np.ones(3))
    assert not np.array_equal(out, clean)


def test_channel_noise_reference_gives_every_channel_its_own_snr():
    """The thesis generator drowns the tanh/sigmoid channels under the exp channel's power with one white
    variance; the 'channel' reference puts every channel at the stated SNR of its own signal variance."""
    clean = simulate_pnl(3, 3, 20000, None, "thesis", seed=0)
    total = simulate_pnl(3, 3, 20000, 20.0, "thesis", seed=0)
    channel = simulate_pnl(3, 3, 20000, 20.0, "thesis", seed=0, noise_reference="channel")
    signal_var = clean.Y.astype(np.float64).var(axis=0)

    def per_channel_snr(scene):
        noise = scene.Y.astype(np.float64) - clean.Y.astype(np.float64)
        return 10 * np.log10(signal_var / noise.var(axis=0))

    np.testing.assert_allclose(per_channel_snr(channel), 20.0, atol=0.2)
    assert per_channel_snr(total).min() < 0.0  # the drowned channels of the verbatim generator
    np.testing.assert_allclose(channel.provenance["noise_variance_per_channel"], signal_var / 100, rtol=1e-6)
    with pytest.raises(DataError, match="noise reference"):
        simulate_pnl(3, 3, 100, 20.0, "thesis", seed=0, noise_reference="band")


def test_seeds_are_honoured_including_zero():
    a = simulate_pnl(4, 3, 50, 20.0, "thesis", seed=0)
    b = simulate_pnl(4, 3, 50, 20.0, "thesis", seed=0)
    c = simulate_pnl(4, 3, 50, 20.0, "thesis", seed=1)
    np.testing.assert_array_equal(a.Y, b.Y)
    np.testing.assert_array_equal(a.truth.abundances, b.truth.abundances)
    assert not np.allclose(a.Y, c.Y)
    assert not np.allclose(a.truth.mixing, c.truth.mixing)
    r1 = simulate_pnl(4, 3, 50, 20.0, "random_monotone", seed=0)
    r2 = simulate_pnl(4, 3, 50, 20.0, "random_monotone", seed=0)
    np.testing.assert_array_equal(r1.Y, r2.Y)


def test_apply_nonlinearity_matches_the_scene():
    scene = simulate_pnl(5, 3, 60, None, "original", seed=0)
    out = apply_nonlinearity("original", scene.truth.linear_mixture, np.random.default_rng(0))
    np.testing.assert_allclose(out, scene.Y, rtol=1e-5, atol=1e-5)


def test_pure_pixels_puts_the_vertices_among_the_samples():
    scene = simulate_pnl(6, 4, 100, None, "random_monotone", seed=9, pure_pixels=True)
    Z = scene.truth.abundances
    rows = [int(np.flatnonzero(np.isclose(Z[:, k], 1.0))[0]) for k in range(4)]
    for k, row in enumerate(rows):
        np.testing.assert_allclose(scene.Y[row], scene.truth.endmembers[:, k], rtol=1e-5)
    plain = simulate_pnl(6, 4, 100, None, "random_monotone", seed=9)
    assert plain.truth.abundances.max() < 0.999


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(channels=3, latent_dim=4), "larger than the 3 channels"),
        (dict(channels=3, latent_dim=1), "latent_dim must be an integer >= 2"),
        (dict(samples=1), "samples must be an integer >= 2"),
        (dict(channels=0), "channels must be an integer >= 1"),
        (dict(nonlinearity="cubic"), "thesis, original, linear, random_monotone"),
        (dict(seed=-1), "seed must be a non-negative integer"),
        (dict(snr_db=float("nan")), "SNR must be a number"),
        (dict(mixing_scale=0.0), "mixing_scale must be a positive number"),
        (dict(samples=3, latent_dim=3, channels=3, pure_pixels=True, nonlinearity="linear"), None),
        (dict(samples=2, latent_dim=3, channels=3, pure_pixels=True), "pure_pixels needs samples >= latent_dim"),
    ],
)
def test_bad_settings_raise_one_clear_error(kwargs, message):
    settings = dict(channels=3, latent_dim=3, samples=10, snr_db=20.0) | kwargs
    if message is None:  # the boundary case is accepted
        assert simulate_pnl(**settings).n_pixels == settings["samples"]
        return
    with pytest.raises(DataError, match=message):
        simulate_pnl(**settings)


def test_overflow_is_refused_with_a_hint():
    with pytest.raises(DataError, match="smaller mixing_scale"):
        simulate_pnl(3, 3, 50, 20.0, "thesis", seed=0, mixing_scale=1000.0)
