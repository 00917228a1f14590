"""NISCA and VASCA through `nisca.fit`: recovery against sabotaged variants, errors, determinism, resume."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch

from nisca import fit
from nisca.data.scene import Scene
from nisca.data.synthetic import simulate_pnl
from nisca.errors import ConfigError, DataError, TrainingDivergedError
from nisca.models.nisca import load_checkpoint
from nisca.models.training import split_indices

torch.set_num_threads(2)

# A post-nonlinear scene (random monotone f per channel) that the default recipe solves in seconds.
RECOVERY = {"max_epochs": 15, "patience": 15}
# abundance MSE; predicting the mean scores ~0.056 on Dirichlet(1), K = 3. On this scene the IWAE default
# reaches 0.0017 and the ELBO 0.0032; channel-scrambled training 0.012, a frozen encoder under the ELBO 0.05.
RECOVERY_THRESHOLD = {"iwae": 0.005, "elbo": 0.01}
TINY = {"max_epochs": 2, "batch_size": 100, "inference_samples": 8}


@pytest.fixture(scope="module")
def pnl_scene() -> Scene:
    return simulate_pnl(6, 3, 1000, 30.0, nonlinearity="random_monotone", seed=0)


@pytest.fixture(scope="module")
def small_scene() -> Scene:
    return simulate_pnl(3, 3, 400, 25.0, nonlinearity="original", seed=1)


class FrozenEncoder(L.Callback):
    """Sabotage: the encoder never trains (its parameters get no gradient)."""

    def on_fit_start(self, trainer, plan):
        for parameter in plan.module.encoder.parameters():
            parameter.requires_grad_(False)


class FrozenDecoder(L.Callback):
    """Sabotage: A and f never train (they stay at VCA's start and f's initial weights)."""

    def on_fit_start(self, trainer, plan):
        plan.module.mixing.requires_grad_(False)
        plan.module.nonlinearity.requires_grad_(False)


class ScrambledChannels(L.Callback):
    """Sabotage: every training batch arrives with its channels in a new random order."""

    def on_train_batch_start(self, trainer, plan, batch, batch_idx):
        batch.copy_(batch[:, torch.randperm(batch.shape[1])])


class MisalignedEncoder(L.Callback):
    """Sabotage: during training the encoder reads the neighbouring pixel of each target pixel."""

    def on_fit_start(self, trainer, plan):
        def shift(module, args):
            return (args[0].roll(1, dims=0),) if module.training else None

        self.handle = plan.module.encoder.register_forward_pre_hook(shift)

    def on_fit_end(self, trainer, plan):
        self.handle.remove()


@pytest.mark.filterwarnings("ignore::nisca.identifiability.IdentifiabilityWarning")
@pytest.mark.parametrize(("sabotage", "objective"), [
    (None, "iwae"), (ScrambledChannels, "iwae"), (None, "elbo"), (FrozenEncoder, "elbo"), (MisalignedEncoder, "elbo"),
])
def test_recovery_beats_a_threshold_that_broken_models_cannot_reach(pnl_scene, tmp_path, sabotage, objective):
    """Under the IWAE bound the encoder is only a proposal: the importance weights of a trained decoder give
    the posterior mean even from a frozen or misaligned encoder, so those two sabotages are ELBO ones."""
    callbacks = [] if sabotage is None else [sabotage()]
    config = {**RECOVERY, "objective": objective, "mc_samples": 8 if objective == "iwae" else 1}
    result = fit("nisca", pnl_scene, config, callbacks, workdir=tmp_path, progress_bar=False)
    mse = result.metrics["abundance_mse"]
    if sabotage is None:
        assert mse < RECOVERY_THRESHOLD[objective]
        assert result.metrics["r2_nonlinearity"] > 0.8
        assert np.allclose(result.abundances.sum(1), 1.0, atol=1e-5) and (result.abundances >= 0).all()
    else:
        assert mse > RECOVERY_THRESHOLD[objective]


@pytest.mark.filterwarnings("ignore::nisca.identifiability.IdentifiabilityWarning")
def test_training_the_decoder_beats_its_warm_start(pnl_scene, tmp_path):
    """VCA's start with IWAE inference is already fair on this scene (MSE 0.0034): learning A and f must cut
    that error by at least 40 % (it reaches 0.0017)."""
    trained = fit("nisca", pnl_scene, RECOVERY, workdir=tmp_path / "trained", progress_bar=False)
    frozen = fit("nisca", pnl_scene, RECOVERY, [FrozenDecoder()], workdir=tmp_path / "frozen", progress_bar=False)
    assert trained.metrics["abundance_mse"] < 0.6 * frozen.metrics["abundance_mse"]


def test_fit_returns_every_estimate_with_the_right_shapes(small_scene, tmp_path):
    result = fit("nisca", small_scene, TINY, workdir=tmp_path, progress_bar=False)
    P, N, K = small_scene.n_pixels, small_scene.n_channels, 3
    assert result.abundances.shape == (P, K) and result.abundances.dtype == np.float32
    assert result.extras["abundances_mode"].shape == (P, K)
    assert np.allclose(result.extras["abundances_mode"].sum(1), 1.0, atol=1e-5)
    assert result.endmembers.shape == (N, K)
    assert result.extras["endmembers_purest"].shape == (N, K)
    assert result.reconstruction.shape == (P, N)
    assert result.curves["inputs"].shape == result.curves["outputs"].shape == (200, N)
    assert result.epochs == 2 and result.checkpoint_path.endswith(".ckpt")
    for key in ("val_loss", "noise_variance", "abundance_mse", "subspace_distance", "wall_time_s"):
        assert np.isfinite(result.metrics[key]), key
    assert result.config["method"] == "nisca" and result.config["max_epochs"] == 2

    plan = load_checkpoint(result.checkpoint_path)
    x = (torch.as_tensor(small_scene.Y) - plan.module.offset) / plan.module.scale
    mode = plan.module.posterior(x, 4)["abundances_mode"].numpy()
    assert np.allclose(mode, result.extras["abundances_mode"], atol=1e-5)


def test_vasca_has_no_nonlinearity_and_linear_endmembers(small_scene, tmp_path):
    result = fit("vasca", small_scene, TINY, workdir=tmp_path, progress_bar=False)
    assert result.curves is None
    plan = load_checkpoint(result.checkpoint_path)
    assert not any("nonlinearity" in name for name, _ in plan.named_parameters())
    assert np.allclose(result.endmembers @ result.abundances.T, result.reconstruction.T, atol=1e-3)


@pytest.mark.parametrize("units", ["relu", "tanh"])
def test_monotone_mode_learns_increasing_curves(small_scene, tmp_path, units):
    config = {**TINY, "monotone": True, "monotone_units": units}
    result = fit("nisca", small_scene, config, workdir=tmp_path, progress_bar=False)
    assert (np.diff(result.curves["outputs"], axis=0) > 0).all()
    assert load_checkpoint(result.checkpoint_path).module.nonlinearity.monotone_units == units


def test_a_monotone_checkpoint_from_before_the_units_option_loads_with_tanh_units(small_scene, tmp_path):
    """Checkpoints written before `monotone_units` existed had tanh units; their config lacks the key."""
    result = fit("nisca", small_scene, {**TINY, "monotone": True, "monotone_units": "tanh"}, workdir=tmp_path,
                 progress_bar=False)
    state = torch.load(result.checkpoint_path, map_location="cpu", weights_only=False)
    del state["hyper_parameters"]["config"]["monotone_units"]
    old = tmp_path / "old.ckpt"
    torch.save(state, old)
    before = load_checkpoint(result.checkpoint_path).module
    after = load_checkpoint(old).module
    assert after.nonlinearity.monotone_units == "tanh"
    y = torch.randn(50, small_scene.n_channels)
    assert torch.allclose(before.nonlinearity(y), after.nonlinearity(y))


def test_seeds_make_cpu_runs_deterministic(small_scene, tmp_path):
    """Bitwise on the CPU; on CUDA two runs agree to float rounding only (H100: 1 ulp), so the device is set."""
    runs = [fit("nisca", small_scene, {**TINY, "seed": seed, "device": "cpu"}, workdir=tmp_path / str(i),
                progress_bar=False) for i, seed in enumerate((0, 0, 1))]
    assert np.array_equal(runs[0].abundances, runs[1].abundances)
    assert runs[0].metrics["val_loss"] == runs[1].metrics["val_loss"]
    assert not np.allclose(runs[0].abundances, runs[2].abundances)


def test_validation_split_is_seeded_and_disjoint():
    train, val = split_indices(1000, 0.1, seed=0)
    assert len(val) == 100 and len(train) == 900
    assert not set(train) & set(val) and set(train) | set(val) == set(range(1000))
    again, _ = split_indices(1000, 0.1, seed=0)
    other, _ = split_indices(1000, 0.1, seed=1)
    assert np.array_equal(train, again) and not np.array_equal(train, other)


def test_a_diverging_run_names_the_epoch(small_scene, tmp_path):
    with pytest.raises(TrainingDivergedError, match=r"at epoch \d+"):
        fit("nisca", small_scene, {**TINY, "lr_encoder": 1e8, "lr_decoder": 1e8, "max_epochs": 5},
            workdir=tmp_path, progress_bar=False)


def test_a_nan_scene_is_refused():
    Y = np.random.default_rng(0).random((50, 4)).astype(np.float32)
    Y[7, 2] = np.nan
    with pytest.raises(DataError, match="NaN"):
        fit("nisca", Scene(Y, name="broken"), {"latent_dim": 3})


@pytest.mark.parametrize("settings,message", [
    ({"learning_rate": 0.1}, "valid keys are"),
    ({"val_fraction": 0.7}, "val_fraction"),
    ({"lr_decoder": 0.0}, "lr_decoder"),
    ({"noise": "given"}, "noise_variance"),
    ({"noise": "oracle"}, "noise"),
    ({"restarts": 0}, "restarts"),
    ({"prior": "sparse"}, "prior"),
    ({"lr_nonlinearity": -1.0}, "lr_nonlinearity"),
    ({"linear_first": True, "monotone": True}, "linear_first needs"),
    ({"linear_first": True, "shared_nonlinearity": True}, "cannot be combined"),
    ({"init": "nfindr"}, "init"),
    ({"restart_choice": "best"}, "restart_choice"),
    ({"restarts": 2, "restart_choice": "likelihood", "prior": "learn"}, "flat prior only"),
])
def test_bad_settings_are_config_errors(small_scene, settings, message):
    with pytest.raises(ConfigError, match=message):
        fit("nisca", small_scene, settings)


def test_resume_and_callbacks_see_epoch_metrics(small_scene, tmp_path):
    class Recorder(L.Callback):
        def __init__(self):
            self.seen = []

        def on_validation_end(self, trainer, plan):
            self.seen.append((trainer.current_epoch, sorted(trainer.callback_metrics)))

    first = Recorder()
    fit("nisca", small_scene, TINY, [first], workdir=tmp_path, progress_bar=False)
    assert [epoch for epoch, _ in first.seen] == [0, 1]
    assert {"train_loss", "val_loss"} <= set(first.seen[-1][1])
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert last.is_file()
    second = Recorder()
    resumed = fit("nisca", small_scene, {**TINY, "max_epochs": 4}, [second], workdir=tmp_path,
                  resume_from=str(last), progress_bar=False)
    assert resumed.epochs == 4 and [epoch for epoch, _ in second.seen] == [2, 3]


def test_restarts_keep_the_start_with_the_lowest_validation_loss(small_scene, tmp_path):
    """Two whole trainings on the same held-out split; the reported fit is the better one by val_loss."""
    single = fit("nisca", small_scene, TINY, workdir=tmp_path / "one", progress_bar=False)
    double = fit("nisca", small_scene, {**TINY, "restarts": 2}, workdir=tmp_path / "two", progress_bar=False)
    assert double.metrics["restart_chosen"] in (0.0, 1.0)
    assert double.metrics["val_loss"] <= double.metrics["val_loss_worst_restart"]
    assert double.metrics["val_loss"] <= single.metrics["val_loss"] + 1e-6  # start 0 is the single fit
    assert (tmp_path / "two" / "start-1" / "checkpoints").is_dir()
    with pytest.raises(ConfigError, match="restarts = 1"):
        fit("nisca", small_scene, {**TINY, "restarts": 2}, resume_from=single.checkpoint_path)


def test_restart_inits_give_each_start_its_own_init(small_scene, tmp_path, monkeypatch):
    """Start r takes restart_inits[r % length] (start 0 = the single fit with that init); unknown inits are
    config errors."""
    import nisca.models.nisca as nisca_model

    used = []
    initial_mixing = nisca_model._initial_mixing
    monkeypatch.setattr(nisca_model, "_initial_mixing",
                        lambda Y, config, *args: used.append(config.init) or initial_mixing(Y, config, *args))
    settings = {**TINY, "restarts": 3, "restart_inits": ["random", "vca"]}
    three = fit("nisca", small_scene, settings, workdir=tmp_path / "three", progress_bar=False)
    assert used == ["random", "vca", "random"]
    single = fit("nisca", small_scene, {**TINY, "init": "random"}, workdir=tmp_path / "one", progress_bar=False)
    start0 = load_checkpoint(str(next((tmp_path / "three" / "start-0" / "checkpoints").glob("best-*.ckpt"))))
    np.testing.assert_allclose(start0.module.mixing.weight.detach().numpy(),
                               load_checkpoint(single.checkpoint_path).module.mixing.weight.detach().numpy())
    assert three.metrics["restart_chosen"] in (0.0, 1.0, 2.0)
    with pytest.raises(ConfigError, match="restart_inits"):
        fit("nisca", small_scene, {**TINY, "restart_inits": ["vca", "pca"]})


def _exact_nll(checkpoint_path: str, Y: np.ndarray) -> float:
    """-log p(x) per pixel of every pixel under a saved model, in its scaled units (z summed out)."""
    from nisca.models.lattice import default_resolution, lattice_log_likelihood, simplex_lattice

    module = load_checkpoint(checkpoint_path).module
    x = (torch.as_tensor(Y, dtype=torch.float32) - module.offset) / module.scale
    lattice = simplex_lattice(module.latent_dim, default_resolution(module.latent_dim))
    with torch.no_grad():
        return float(-lattice_log_likelihood(x, module.lattice_means(lattice), module.noise_variance()).mean())


def test_restart_choice_by_likelihood_keeps_the_start_that_explains_every_pixel_best(small_scene, tmp_path):
    """The kept start has the lowest exact NLL over all pixels: no worse than start 0 (the single fit),
    and the reported figure is the returned model's."""
    single = fit("nisca", small_scene, TINY, workdir=tmp_path / "one", progress_bar=False)
    double = fit("nisca", small_scene, {**TINY, "restarts": 2, "restart_choice": "likelihood"},
                 workdir=tmp_path / "two", progress_bar=False)
    chosen = double.metrics["exact_nll_chosen"]
    assert chosen <= double.metrics["exact_nll_worst_restart"]
    assert chosen == pytest.approx(_exact_nll(double.checkpoint_path, small_scene.Y), abs=1e-4)
    assert chosen <= _exact_nll(single.checkpoint_path, small_scene.Y) + 1e-4


def _max_curvature(curves: dict[str, np.ndarray]) -> float:
    """Largest deviation of any learned curve from the straight line through its two ends, relative to
    the curve's range (0 for the identity f, whatever the data scaling)."""
    x, y = curves["inputs"], curves["outputs"]
    line = y[:1] + (x - x[:1]) / (x[-1:] - x[:1]) * (y[-1:] - y[:1])
    return float((np.abs(y - line) / np.ptp(y, axis=0)).max())


class BreakFreeNonlinearity(L.Callback):
    """Sabotage: whenever f is free (the nonlinear phase), it is shifted by 5 scaled units before validation."""

    def on_validation_start(self, trainer, plan):
        nonlinearity = plan.module.nonlinearity
        if nonlinearity.bias_out.requires_grad:
            with torch.no_grad():
                nonlinearity.bias_out.fill_(5.0)


@pytest.mark.filterwarnings("ignore::nisca.identifiability.IdentifiabilityWarning")
def test_linear_first_keeps_the_phase_with_the_lower_validation_loss(pnl_scene, tmp_path):
    """The linear phase is VASCA (f = identity, frozen); the nonlinear phase then frees f. On a
    post-nonlinear scene the free f wins on held-out pixels; when the free phase is broken, the linear
    phase's result (identity curves) is reported instead."""
    settings = {"linear_first": True, "max_epochs": 8, "patience": 8, "inference_samples": 8}
    free = fit("nisca", pnl_scene, settings, workdir=tmp_path / "free", progress_bar=False)
    assert (tmp_path / "free" / "linear-phase" / "checkpoints").is_dir()
    assert free.metrics["nonlinearity_kept"] == 1.0 and free.metrics["nonlinear_gain"] > 0.1
    assert free.metrics["val_loss"] < free.metrics["val_loss_linear_phase"]
    assert free.epochs > free.metrics["epochs_linear_phase"]
    assert _max_curvature(free.curves) > 0.02
    broken = fit("nisca", pnl_scene, settings, [BreakFreeNonlinearity()], workdir=tmp_path / "broken",
                 progress_bar=False)
    assert broken.metrics["nonlinearity_kept"] == 0.0 and broken.metrics["nonlinear_gain"] < 0
    assert broken.metrics["val_loss"] == pytest.approx(free.metrics["val_loss_linear_phase"])
    assert _max_curvature(broken.curves) < 1e-4
    with pytest.raises(ConfigError, match="linear_first = false"):
        fit("nisca", pnl_scene, settings, resume_from=free.checkpoint_path)


@pytest.mark.filterwarnings("ignore::nisca.identifiability.IdentifiabilityWarning")
def test_linear_first_with_refinement_keeps_the_phase_with_the_lower_exact_likelihood(pnl_scene, tmp_path):
    """With `refine_epochs`, both phases are refined (the linear one with f still the identity) and the
    exact held-out NLLs decide: the free f wins on a post-nonlinear scene, the linear model when the free
    phase is broken."""
    settings = {"linear_first": True, "max_epochs": 6, "patience": 6, "refine_epochs": 3}
    free = fit("nisca", pnl_scene, settings, workdir=tmp_path / "free", progress_bar=False)
    metrics = free.metrics
    assert metrics["nonlinearity_kept"] == 1.0
    assert metrics["val_loss_nonlinear_refined"] < metrics["val_loss_linear_refined"]
    assert metrics["val_loss"] == pytest.approx(metrics["val_loss_nonlinear_refined"])
    assert _max_curvature(free.curves) > 0.02
    assert (tmp_path / "free" / "linear-phase" / "refine" / "checkpoints").is_dir()
    broken = fit("nisca", pnl_scene, settings, [BreakFreeNonlinearity()], workdir=tmp_path / "broken",
                 progress_bar=False)
    metrics = broken.metrics
    assert metrics["nonlinearity_kept"] == 0.0
    assert metrics["val_loss"] == pytest.approx(metrics["val_loss_linear_refined"])
    assert metrics["val_loss_linear_refined"] < metrics["val_loss_nonlinear_refined"]
    assert _max_curvature(broken.curves) < 1e-4


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given when no GPU is present")
def test_asking_for_cuda_without_a_gpu_is_a_config_error(small_scene):
    with pytest.raises(ConfigError, match="no CUDA device"):
        fit("nisca", small_scene, {**TINY, "device": "cuda"}, progress_bar=False)


@pytest.mark.parametrize(
    ("init", "channels", "samples", "seed", "pure_pixels"),
    [("mves", 5, 800, 2, False),  # the enclosing simplex: found without pure pixels
     ("nmf", 10, 500, 0, True)],  # sum-to-one NMF: unique with pure pixels (nisca.baselines.nmf)
)
def test_warm_start_puts_a_at_the_true_endmembers(init, channels, samples, seed, pure_pixels):
    """init='mves' / 'nmf': A starts at that method's endmembers (in the model's scaled units); on
    noiseless linear data they are the true endmembers."""
    from nisca.models.nisca import NiscaConfig, _initial_mixing, scaling

    scene = simulate_pnl(channels, 3, samples, None, nonlinearity="linear", seed=seed, pure_pixels=pure_pixels)
    Y = scene.Y.astype(np.float64)
    offset, scale = scaling(Y, "channel")
    A = _initial_mixing(Y, NiscaConfig(latent_dim=3, init=init), offset, scale)
    truth = (scene.truth.endmembers - offset[:, None]) / scale[:, None]
    distances = np.linalg.norm(A[:, :, None] - truth[:, None, :], axis=0)  # (estimated, true)
    assert distances.min(axis=0).max() < 0.05 * np.linalg.norm(truth, axis=0).min()
