"""CNAE + MVES (nisca/models/cnae.py): recovery on a post-nonlinear mixture, the per-pixel multipliers,
divergence, callbacks and resuming. Kept here beside MVES, which it calls."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch

from nisca.config import build_config
from nisca.data.synthetic import simulate_pnl
from nisca.errors import TrainingDivergedError
from nisca.fit import fit
from nisca.models.cnae import CnaeConfig, CnaeModule, unmix
from nisca.models.layers import ChannelwiseDeepMLP
from nisca.models.training import split_indices

TINY = {"max_epochs": 3, "batch_size": 50, "device": "cpu", "multiplier_every": 1}


@pytest.fixture(scope="module")
def small_scene():
    return simulate_pnl(3, 3, 300, 30.0, "original", seed=0)


@pytest.mark.parametrize("layers", [1, 3])
def test_cnae_undoes_the_nonlinearity_that_defeats_linear_methods(layers):
    scene = simulate_pnl(3, 3, 1000, None, "original", seed=3)
    config = {"max_epochs": 40, "patience": 40, "device": "cpu", "layers": layers}
    cnae = fit("cnae", scene, config, progress_bar=False)
    vca = fit("vca", scene)
    mves = fit("mves", scene)
    # measured: CNAE 0.0009-0.0023 over training seeds 0-3 (1 epoch: 0.0195), 0.0005-0.0016 with 3 layers,
    # VCA 0.025, MVES 0.022
    assert cnae.metrics["abundance_mse"] < 0.005
    assert cnae.metrics["abundance_mse"] < 0.2 * min(vca.metrics["abundance_mse"], mves.metrics["abundance_mse"])
    assert cnae.metrics["constraint_rmse"] < 0.05
    assert cnae.curves["inputs"].shape == cnae.curves["outputs"].shape == (200, 3)


def test_one_multiplier_per_pixel_updated_on_training_pixels_only(small_scene, tmp_path):
    config = {**TINY, "rho_growth": 2.0, "rho_max": 300.0, "val_fraction": 0.2}
    result = fit("cnae", small_scene, config, workdir=tmp_path, progress_bar=False)
    module = CnaeModule.load_from_checkpoint(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu")
    assert module.multipliers.shape == (small_scene.n_pixels,)
    train, val = split_indices(small_scene.n_pixels, 0.2, 0)
    assert torch.all(module.multipliers[val] == 0)
    assert torch.count_nonzero(module.multipliers[train]) == len(train)
    assert float(module.rho) == 300.0  # 100 -> 200 -> min(400, 300) over the two dual steps
    assert result.epochs == 3


def test_nan_loss_raises_training_diverged_naming_the_epoch(small_scene):
    class Poison(L.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            if trainer.current_epoch == 1:
                with torch.no_grad():
                    pl_module.encoder.weight_out.fill_(float("nan"))

    with pytest.raises(TrainingDivergedError, match="epoch 1"):
        fit("cnae", small_scene, TINY, callbacks=[Poison()], progress_bar=False)


def test_callbacks_see_val_loss_and_training_resumes_from_a_checkpoint(small_scene, tmp_path):
    class Record(L.Callback):
        def __init__(self):
            self.seen = []

        def on_validation_end(self, trainer, pl_module):
            self.seen.append((trainer.current_epoch, float(trainer.callback_metrics["val_loss"])))

    first = Record()
    fit("cnae", small_scene, {**TINY, "max_epochs": 2}, callbacks=[first], workdir=tmp_path / "a", progress_bar=False)
    assert [epoch for epoch, _ in first.seen] == [0, 1]
    assert all(np.isfinite(value) for _, value in first.seen)

    second = Record()
    resumed = fit(
        "cnae",
        small_scene,
        {**TINY, "max_epochs": 4},
        callbacks=[second],
        workdir=tmp_path / "b",
        resume_from=str(tmp_path / "a" / "checkpoints" / "last.ckpt"),
        progress_bar=False,
    )
    assert [epoch for epoch, _ in second.seen] == [2, 3]
    assert resumed.epochs == 4


def test_deep_channel_networks_are_rebuilt_from_the_checkpoint(small_scene, tmp_path):
    result = fit("cnae", small_scene, {**TINY, "layers": 3}, workdir=tmp_path, progress_bar=False)
    module = CnaeModule.load_from_checkpoint(result.checkpoint_path, map_location="cpu")
    assert isinstance(module.encoder, ChannelwiseDeepMLP) and module.encoder.layers == 3
    assert isinstance(module.decoder, ChannelwiseDeepMLP) and module.decoder.weight_hidden.shape == (2, 3, 128, 128)
    config = build_config(CnaeConfig, {key: value for key, value in result.config.items() if key != "method"})
    reread = unmix(module, module.to_network(small_scene.Y), config)
    assert np.allclose(reread["abundances"], result.abundances, atol=1e-5)


def test_the_seed_is_honoured(small_scene):
    runs = [fit("cnae", small_scene, {**TINY, "seed": seed}, progress_bar=False).abundances for seed in (0, 1)]
    assert not np.allclose(runs[0], runs[1], atol=1e-3)


def test_input_map_gives_normal_scores_to_the_skewed_channel_only_and_inverts():
    """'auto': the thesis' 0.4 exp(y) channel (skewness far above SKEW_LIMIT) gets normal scores, the
    sigmoid and tanh channels are standardised; data -> network units -> data is the identity."""
    Y = simulate_pnl(3, 3, 2000, 30.0, "thesis", seed=0, noise_reference="channel").Y.astype(np.float64)
    module = CnaeModule({"rho": 100.0, "hidden": 8, "input_map": "auto"}, 3, len(Y))
    module.fit_input_map(Y)
    assert module.quantile_channels.tolist() == [False, False, True]
    x = module.to_network(Y)
    assert np.allclose(x[:, :2], (Y[:, :2] - Y[:, :2].mean(0)) / Y[:, :2].std(0), atol=1e-5)
    assert abs(float(np.mean(x[:, 2] ** 3))) < 0.2  # normal scores: no longer skewed
    assert np.allclose(module.to_data(x.astype(np.float64)), Y, rtol=1e-4, atol=1e-6 * np.abs(Y).max())
    beyond = np.array([[0.0, 0.0, Y[:, 2].max() * 2]])  # outside the knots: extrapolated, still increasing
    assert module.to_network(beyond)[0, 2] > x[:, 2].max()


def test_standardise_map_matches_plain_standardisation(small_scene):
    module = CnaeModule({"rho": 100.0, "hidden": 8, "input_map": "standardise"}, 3, small_scene.n_pixels)
    Y = small_scene.Y.astype(np.float64)
    module.fit_input_map(Y)
    assert not module.quantile_channels.any()
    assert np.allclose(module.to_network(Y), (Y - Y.mean(0)) / Y.std(0), atol=1e-5)


def _best_val_loss(folder) -> float:
    """The best val_loss that ModelCheckpoint recorded in a start's best checkpoint."""
    (path,) = folder.glob("checkpoints/best-*.ckpt")
    states = torch.load(path, map_location="cpu", weights_only=False)["callbacks"]
    (score,) = [state["best_model_score"] for key, state in states.items()
                if key.startswith("ModelCheckpoint") and "'monitor': 'val_loss'" in key]
    return float(score)


def test_restarts_keep_the_start_with_the_lowest_validation_loss(small_scene, tmp_path):
    """Starts use seeds seed, seed+1, ... on one validation split; the best val_loss is kept, before MVES."""
    single = fit("cnae", small_scene, {**TINY, "seed": 0}, progress_bar=False)
    both = fit("cnae", small_scene, {**TINY, "seed": 0, "restarts": 2}, workdir=tmp_path, progress_bar=False)
    per_start = [_best_val_loss(tmp_path / f"start-{i}") for i in (0, 1)]
    assert per_start[0] == pytest.approx(single.metrics["val_loss"])  # start 0 is the single fit
    assert per_start[0] != pytest.approx(per_start[1])  # start 1 is another training
    chosen = int(both.metrics["restart_chosen"])
    assert chosen == int(np.argmin(per_start))
    assert both.metrics["val_loss"] == pytest.approx(min(per_start))
    assert both.metrics["val_loss_worst_restart"] == pytest.approx(max(per_start))
    if chosen == 0:
        np.testing.assert_array_equal(both.abundances, single.abundances)
    else:
        assert not np.allclose(both.abundances, single.abundances, atol=1e-3)
    assert "restart_chosen" not in single.metrics


def test_restarts_are_checked_and_cannot_resume(small_scene, tmp_path):
    from nisca.errors import ConfigError

    with pytest.raises(ConfigError, match="restarts must be >= 1"):
        fit("cnae", small_scene, {**TINY, "restarts": 0}, progress_bar=False)
    first = fit("cnae", small_scene, {**TINY, "max_epochs": 1}, workdir=tmp_path / "a", progress_bar=False)
    assert first.checkpoint_path
    with pytest.raises(ConfigError, match="resuming needs restarts = 1"):
        fit("cnae", small_scene, {**TINY, "restarts": 2}, workdir=tmp_path / "b",
            resume_from=str(tmp_path / "a" / "checkpoints" / "last.ckpt"), progress_bar=False)
