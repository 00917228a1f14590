"""Semi-real Urban: Urban's ground truth through a post-nonlinear mixture, with the full truth kept."""

from __future__ import annotations

import numpy as np
import pytest

from nisca.data import io
from nisca.data.semireal import build_semireal_urban
from nisca.data.synthetic import apply_nonlinearity
from nisca.errors import DataError


@pytest.fixture()
def urban_gt(shared_data):
    return shared_data / "hyperspectral" / "Urban_groundtruth.npz"


@pytest.mark.parametrize("K", [4, 5, 6])
def test_crop_truth_is_consistent(urban_gt, K):
    scene = build_semireal_urban(K, None, "thesis", seed=0, crop=(20, 30), offset=(100, 50), ground_truth=urban_gt)
    truth = scene.truth
    assert scene.Y.shape == (600, 162) and (scene.geometry.rows, scene.geometry.cols) == (20, 30)
    assert truth.label == f"urban-semireal-K{K}" and truth.nonlinearity == "thesis" and truth.noise_variance == 0
    full = io.load_ground_truth(urban_gt, str(K))
    expected = full.abundances.reshape(307, 307, K)[100:120, 50:80].reshape(-1, K)
    np.testing.assert_allclose(truth.abundances, expected, atol=1e-6)
    np.testing.assert_allclose(truth.linear_mixture, truth.abundances @ truth.mixing.T, atol=1e-4)
    # mixing is E standardised per band: E = mixing * sd + mu
    mu, sd = np.array(scene.provenance["band_mean"]), np.array(scene.provenance["band_std"])
    np.testing.assert_allclose(truth.mixing * sd[:, None] + mu[:, None], full.endmembers, atol=1e-5)
    np.testing.assert_allclose(truth.linear_mixture.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(truth.linear_mixture.std(axis=0), 1.0, atol=1e-3)
    # noiseless: Y = f(linear mixture) exactly, and the endmembers are f(mixing columns)
    f = lambda x: apply_nonlinearity("thesis", x, np.random.default_rng(0))  # noqa: E731
    np.testing.assert_allclose(scene.Y, f(truth.linear_mixture), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(truth.endmembers, f(truth.mixing.T).T, rtol=1e-4, atol=1e-4)
    assert len(scene.provenance["endmember_names"]) == K


def test_full_scene_at_snr(urban_gt):
    scene = build_semireal_urban(4, 20.0, "thesis", seed=3, ground_truth=urban_gt)
    assert scene.Y.shape == (307 * 307, 162) and (scene.geometry.rows, scene.geometry.cols) == (307, 307)
    assert scene.provenance["ground_truth_sha256"] == io.sha256sum(urban_gt)
    # noise power s2 = clean power / 10^(SNR/10); the noisy power is clean + s2 per band
    s2 = scene.truth.noise_variance
    clean_power = np.mean(np.sum(scene.Y.astype(np.float64) ** 2, axis=1)) / 162 - s2
    assert 10 * np.log10(clean_power / s2) == pytest.approx(20.0, abs=0.1)


def test_noise_level_and_seeds(urban_gt):
    crop = dict(crop=(30, 30), ground_truth=urban_gt)
    noiseless = build_semireal_urban(5, None, "random_monotone", seed=1, **crop)
    noisy = build_semireal_urban(5, 10.0, "random_monotone", seed=1, **crop)
    again = build_semireal_urban(5, 10.0, "random_monotone", seed=1, **crop)
    other = build_semireal_urban(5, 10.0, "random_monotone", seed=2, **crop)
    residual = noisy.Y.astype(np.float64) - noiseless.Y
    assert residual.var() == pytest.approx(noisy.truth.noise_variance, rel=0.05)
    np.testing.assert_array_equal(noisy.Y, again.Y)
    assert not np.allclose(noisy.Y, other.Y)


def test_bad_requests(urban_gt, tmp_path):
    with pytest.raises(DataError, match=r"latent_dim must be one of \(4, 5, 6\)"):
        build_semireal_urban(3, ground_truth=urban_gt)
    with pytest.raises(DataError, match="does not fit"):
        build_semireal_urban(4, crop=(300, 300), offset=(10, 10), ground_truth=urban_gt)
    with pytest.raises(DataError, match="unknown nonlinearity"):
        build_semireal_urban(4, crop=(5, 5), nonlinearity="cubic", ground_truth=urban_gt)


def test_missing_ground_truth_says_where_to_get_it(tmp_path):
    with pytest.raises(DataError) as error:
        build_semireal_urban(4, ground_truth=tmp_path / "absent.npz")
    message = str(error.value)
    assert "absent.npz" in message and "nisca data fetch urban" in message and "Urban_groundtruth.npz" in message


def test_default_ground_truth_from_the_shared_folder(shared_data, monkeypatch):
    monkeypatch.setenv("NISCA_SHARED_DATA", str(shared_data))
    scene = build_semireal_urban(6, 30.0, "linear", seed=0, crop=(8, 9))
    expected = shared_data / "hyperspectral" / "Urban_groundtruth.npz"
    assert scene.provenance["ground_truth_file"] == str(expected.resolve())
    assert scene.truth.n_components == 6
