"""One contract for every registered method (NISCA, VASCA, CNAE and the classic baselines).

Same small scene, same checks: shapes and dtypes, rows on the simplex, determinism under a seed,
metrics present (truth metrics only when the scene has truth), K out of range refused, NaN input
refused, unknown config keys refused. Trained methods run a couple of epochs only: this checks the
contract, not quality (per-method recovery checks live in tests/baselines and tests/models).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from nisca.data.scene import Scene
from nisca.data.synthetic import simulate_pnl
from nisca.errors import ConfigError, DataError
from nisca.fit import FitResult, fit
from nisca.methods import METHODS

CHANNELS, K, PIXELS = 3, 3, 240
TINY = {  # just enough training to exercise the whole path
    "nisca": {"max_epochs": 2, "batch_size": 60, "inference_samples": 4, "device": "cpu"},
    "vasca": {"max_epochs": 2, "batch_size": 60, "inference_samples": 4, "device": "cpu"},
    "cnae": {"max_epochs": 2, "batch_size": 60, "multiplier_every": 1, "device": "cpu"},
}
TRUTH_METRICS = ("abundance_mse", "abundance_rmse", "subspace_distance")


@pytest.fixture(scope="module")
def scene() -> Scene:
    return simulate_pnl(CHANNELS, K, PIXELS, 30.0, "original", seed=0)


@pytest.fixture(scope="module")
def fits(scene, tmp_path_factory) -> Callable[[str], tuple[FitResult, FitResult]]:
    """Each method fitted twice with seed 0: once with truth, once on the same data without it."""
    cache: dict[str, tuple[FitResult, FitResult]] = {}

    def get(method: str) -> tuple[FitResult, FitResult]:
        if method not in cache:
            config = {**TINY.get(method, {}), "seed": 0}
            first = fit(method, scene, config, workdir=tmp_path_factory.mktemp(method), progress_bar=False)
            blind = scene.with_truth(None)
            second = fit(
                method, blind, {**config, "latent_dim": K}, workdir=tmp_path_factory.mktemp(method), progress_bar=False
            )
            cache[method] = (first, second)
        return cache[method]

    return get


@pytest.mark.parametrize("method", sorted(METHODS))
def test_outputs_have_the_contract_shapes_and_lie_on_the_simplex(method, fits):
    result, _ = fits(method)
    Z = result.abundances
    assert Z.shape == (PIXELS, K) and Z.dtype == np.float32
    assert np.isfinite(Z).all()
    assert Z.min() >= 0.0
    np.testing.assert_allclose(Z.sum(axis=1), 1.0, atol=1e-5)
    if result.endmembers is not None:
        assert result.endmembers.shape == (CHANNELS, K) and result.endmembers.dtype == np.float32
        assert np.isfinite(result.endmembers).all()
    if result.reconstruction is not None:
        assert result.reconstruction.shape == (PIXELS, CHANNELS)
    assert result.method == method and result.config["latent_dim"] == K and result.config["seed"] == 0


@pytest.mark.parametrize("method", sorted(METHODS))
def test_same_seed_gives_the_same_abundances(method, fits):
    first, second = fits(method)
    np.testing.assert_allclose(first.abundances, second.abundances, rtol=0, atol=1e-6)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_metrics_are_floats_and_truth_metrics_need_truth(method, fits):
    with_truth, without = fits(method)
    for name in (*TRUTH_METRICS, "wall_time_s"):
        assert isinstance(with_truth.metrics[name], float) and np.isfinite(with_truth.metrics[name])
    assert 0.0 <= with_truth.metrics["abundance_rmse"] <= 1.0
    if with_truth.endmembers is not None:
        assert np.isfinite(with_truth.metrics["sad_deg"])
    if with_truth.reconstruction is not None:
        assert np.isfinite(with_truth.metrics["reconstruction_rmse"])
    assert not set(TRUTH_METRICS) & set(without.metrics)
    assert "wall_time_s" in without.metrics


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("bad_k", [1, CHANNELS + 1])
def test_latent_dim_out_of_range_is_refused(method, scene, bad_k):
    with pytest.raises(DataError, match="latent dimension K"):
        fit(method, scene, {**TINY.get(method, {}), "latent_dim": bad_k}, progress_bar=False)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_nan_input_is_refused_before_the_method_runs(method, scene):
    Y = scene.Y.copy()
    Y[5, 1] = np.nan
    with pytest.raises(DataError, match="NaN"):
        fit(method, Scene(Y, name="with-nan"), {"latent_dim": K}, progress_bar=False)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_unknown_config_key_is_refused(method, scene):
    with pytest.raises(ConfigError, match="unknown key.*'learning_rat'"):
        fit(method, scene, {"learning_rat": 0.1}, progress_bar=False)


def test_every_registered_method_is_in_the_matrix():
    assert {"nisca", "vasca", "cnae", "mves", "vca", "nmf", "ica", "pca"} <= set(METHODS)
