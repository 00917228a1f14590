"""NISCA: the runner behind `nisca.fit("nisca", ...)` and `nisca fit nisca` (MODEL.md section 2).

`run` trains the variational model on the scene (without its truth), selects the checkpoint with the
lowest validation loss, and returns the posterior-mean abundances, `softmax([mu, 0])`, the endmembers
f(A e_k), the learned curves f_n, the reconstruction and the linear mixture A z, plus the purest-pixel
endmembers (`purest_pixel_endmembers`). VASCA reuses `run_variational` with f = identity.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from nisca.config import config_to_dict
from nisca.data.scene import Scene
from nisca.errors import ConfigError
from nisca.fit import FitContext, MethodOutput
from nisca.identifiability import warn_if_unidentifiable
from nisca.models.lattice import default_resolution, lattice_inference, lattice_log_likelihood, simplex_lattice
from nisca.models.noise import subspace_noise_variance
from nisca.models.training import (
    SceneDataModule,
    SimplexTrainingPlan,
    VariationalConfig,
    build_trainer,
    resolve_accelerator,
)

CURVE_POINTS = 200
PUREST_PIXELS = 20  # pixels averaged per component by purest_pixel_endmembers


@dataclasses.dataclass(frozen=True)
class NiscaConfig(VariationalConfig):
    """VariationalConfig plus the per-channel nonlinearity: `nonlinearity_hidden` ReLU units per channel
    (thesis: 128); `monotone` makes every f_n strictly increasing, with ReLU units whose output weights
    follow their input weights' signs (`monotone_units: relu`, the fast sorted-knot kernel) or with tanh
    units (`tanh`: smooth, dense, 30-35x slower on 156-162 channels; the form used before the
    fifth session); `residual` sets f(y) = y + g(y);
    `lr_nonlinearity` is f's learning rate (None: lr_decoder, as for A). `linear_first`: train with
    f = identity (VASCA) until early stopping, then free f and go on from there (needs a residual,
    non-monotone f); the checkpoint with the lowest validation loss over both phases is kept (metric
    `nonlinearity_kept`; `nonlinear_gain` is the drop in validation loss the free f bought, nats per pixel
    and channel). With `refine_epochs` too, both phases are refined and the exact held-out NLLs decide
    (`val_loss_linear_refined`, `val_loss_nonlinear_refined`). A fixed bar on that gain does not separate
    linear from nonlinear data: free f gains 0.004-0.35 on linear scenes and 0.06-1.0 on nonlinear ones
    (docs/results.md). `shared_nonlinearity`:
    one f for every channel up to a per-channel gain and offset (nisca.models.layers.
    SharedChannelNonlinearity), for data where physics says the nonlinearity is the same in every
    channel (fast-exchange DCE-MRI: one signal equation at every frame)."""

    nonlinearity_hidden: int = 128
    monotone: bool = False
    monotone_units: Literal["relu", "tanh"] = "relu"
    residual: bool = True
    lr_nonlinearity: float | None = None
    linear_first: bool = False
    shared_nonlinearity: bool = False

    def validate(self) -> None:
        super().validate()
        if self.nonlinearity_hidden < 1:
            raise ConfigError("NiscaConfig: nonlinearity_hidden must be >= 1")
        if self.lr_nonlinearity is not None and not self.lr_nonlinearity > 0:
            raise ConfigError("NiscaConfig: lr_nonlinearity must be > 0 (or null for lr_decoder)")
        if self.linear_first and self.shared_nonlinearity:
            raise ConfigError("NiscaConfig: linear_first and shared_nonlinearity cannot be combined yet")
        if self.linear_first and (self.monotone or not self.residual):
            raise ConfigError("NiscaConfig: linear_first needs residual = true and monotone = false "
                              "(the linear phase sets f(y) = y + g(y) with g = 0)")


CONFIG = NiscaConfig


def scaling(Y: np.ndarray, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """(offset, scale) per channel so that (Y - offset) / scale is the model's input."""
    offset = Y.mean(axis=0)
    if mode == "none":
        return np.zeros_like(offset), np.ones_like(offset)
    if mode == "channel":
        scale = Y.std(axis=0)
    else:
        scale = np.full_like(offset, float(np.sqrt(((Y - offset) ** 2).mean())))
    scale = np.where(scale > 0, scale, 1.0)
    return offset, scale


def _noise_variance(Y: np.ndarray, config: VariationalConfig) -> float:
    if config.noise == "given":
        return float(config.noise_variance)
    return subspace_noise_variance(Y, config.latent_dim, seed=config.seed)


def _initial_mixing(Y: np.ndarray, config: VariationalConfig, offset: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """A (N, K) in scaled units: VCA's endmembers (largest simplex of `vca_restarts` runs), MVES's
    (the minimum-volume enclosing simplex), sum-to-one NMF's, or standard normal entries."""
    if config.init == "random":
        return np.random.default_rng(config.seed).standard_normal((Y.shape[1], config.latent_dim))
    if config.init == "vca":
        from nisca.baselines.vca import vca_max_volume

        endmembers, _ = vca_max_volume(Y, config.latent_dim, seed=config.seed, restarts=config.vca_restarts)
    elif config.init == "nmf":
        from nisca.baselines.nmf import nmf

        endmembers, _, _ = nmf(Y, config.latent_dim, seed=config.seed)
    else:
        from nisca.baselines.mves import mves

        endmembers, _ = mves(Y, config.latent_dim, seed=config.seed)
    return (np.asarray(endmembers, dtype=np.float64) - offset[:, None]) / scale[:, None]


def _infer(plan: SimplexTrainingPlan, x: np.ndarray, config: VariationalConfig) -> dict[str, np.ndarray]:
    """Posterior estimates over all pixels, chunk by chunk so memory stays bounded on large scenes.

    Runs on the fit's device: Lightning hands the trained model back on the CPU, so it is moved back
    first (on the GPU the lattice readout of a 94,249-pixel scene is the bulk of the fit's time)."""
    device = torch.device(resolve_accelerator(config.device))
    module = plan.module.to(device).eval()
    generator = torch.Generator(device=device).manual_seed(config.seed)
    on_lattice = lattice_inference(config.inference, module.latent_dim)
    if on_lattice:
        lattice = simplex_lattice(module.latent_dim, default_resolution(module.latent_dim), device=device)
        lattice_means = module.lattice_means(lattice)
    parts: dict[str, list[np.ndarray]] = {}
    low = high = None
    for start in range(0, len(x), config.inference_batch_size):
        chunk = torch.as_tensor(x[start : start + config.inference_batch_size], device=device)
        if on_lattice:
            out = module.posterior_on_lattice(chunk, lattice, lattice_means)
        else:
            out = module.posterior(chunk, config.inference_samples, generator=generator)
        linear = out["linear_mixture"]
        low = linear.amin(0) if low is None else torch.minimum(low, linear.amin(0))
        high = linear.amax(0) if high is None else torch.maximum(high, linear.amax(0))
        for key, value in out.items():
            parts.setdefault(key, []).append(value.cpu().numpy())
    result = {key: np.concatenate(value).astype(np.float32) for key, value in parts.items()}
    curves = module.curves(low, high, CURVE_POINTS)
    result["curve_inputs"] = curves["inputs"].cpu().numpy()
    result["curve_outputs"] = curves["outputs"].cpu().numpy()
    result["endmembers"] = module.endmembers().cpu().numpy()
    return result


def purest_pixel_endmembers(Y: np.ndarray, abundances: np.ndarray, n_pixels: int = PUREST_PIXELS) -> np.ndarray:
    """(channels, K): for each component, the mean observed spectrum of the `n_pixels` pixels with the
    largest estimated fraction of it.

    The model's own endmember f(A e_k) is the decoder at a simplex vertex. When a component is dark or
    rarely pure, that vertex lies just outside the data, where f is extrapolated, and the spectrum can
    dip below zero (Samson's water: 91 degrees SAD against 4 degrees for this estimate,
    docs/real_scenes.md). The purest pixels are observations, so this estimate stays on the data; it is
    biased towards the interior when no pixel is nearly pure (Dirichlet(1) scenes)."""
    n = max(1, min(int(n_pixels), len(Y)))
    purest = np.argsort(-abundances, axis=0, kind="stable")[:n]  # (n, K) pixel indices
    return np.stack([Y[purest[:, k]].mean(axis=0) for k in range(abundances.shape[1])], axis=1)


@dataclasses.dataclass
class _Training:
    """One finished training: the plan at its best state, that state's validation loss and checkpoint
    file, and the epochs run."""

    plan: SimplexTrainingPlan
    score: float
    path: str | None
    epochs: int
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)


def _finished(plan: SimplexTrainingPlan, checkpoint: ModelCheckpoint, epochs: int,
              metrics: dict[str, float] | None = None) -> _Training:
    return _Training(plan, _score(checkpoint), _best_path(checkpoint) or None, epochs, metrics or {})


def _fit_phase(plan: SimplexTrainingPlan, data: SceneDataModule, config: VariationalConfig, context: FitContext,
               workdir: Path, resume_from: str | None) -> tuple[ModelCheckpoint, int]:
    """Train `plan` to early stopping and load its best checkpoint (lowest validation loss)."""
    trainer, checkpoint = build_trainer(config, plan.module.n_channels, workdir, context.callbacks,
                                        context.progress_bar)
    trainer.fit(plan, datamodule=data, ckpt_path=resume_from)
    _load_best(plan, checkpoint)
    return checkpoint, int(trainer.current_epoch)


def _best_path(checkpoint: ModelCheckpoint) -> str:
    """The file of the checkpoint with the lowest validation loss (the last one if none was scored)."""
    return checkpoint.best_model_path or checkpoint.last_model_path


def _load_best(plan: SimplexTrainingPlan, checkpoint: ModelCheckpoint) -> None:
    best = _best_path(checkpoint)
    if best:
        plan.load_state_dict(torch.load(best, map_location=plan.device, weights_only=False)["state_dict"])


def _train_once(
    Y: np.ndarray, x: np.ndarray, config: VariationalConfig, context: FitContext, s2: float,
    offset: np.ndarray, scale: np.ndarray, init_seed: int, workdir: Path,
) -> _Training:
    """One training run from the start drawn with `init_seed` (network weights, VCA's directions); the
    validation split and the batch order always follow `config.seed`, so runs are compared on the same
    held-out pixels. With `linear_first`, a linear phase (g = 0, frozen) precedes the nonlinear one; with
    `refine_epochs`, an exact maximum-likelihood phase follows."""
    L.seed_everything(init_seed, verbose=False)
    plan = SimplexTrainingPlan(config_to_dict(config), Y.shape[1], (s2 / scale**2).tolist())
    plan.module.offset.copy_(torch.as_tensor(offset))
    plan.module.scale.copy_(torch.as_tensor(scale))
    start = dataclasses.replace(config, seed=init_seed)
    with torch.no_grad():
        plan.module.mixing.weight.copy_(torch.as_tensor(_initial_mixing(Y, start, offset, scale)))
    data = SceneDataModule(x, config.batch_size, config.val_fraction, config.seed, config.num_workers)
    if getattr(config, "linear_first", False):
        return _linear_then_nonlinear(plan, data, config, context, workdir)
    checkpoint, epochs = _fit_phase(plan, data, config, context, workdir, context.resume_from)
    training = _finished(plan, checkpoint, epochs)
    if config.refine_epochs > 0:
        training = _refine(training, data, config, context, workdir / "refine")
    return training


@contextlib.contextmanager
def _frozen(layer: torch.nn.Module) -> Iterator[None]:
    """`layer` takes no gradient steps inside the block (f held at the identity for the linear phase)."""
    layer.requires_grad_(False)
    try:
        yield
    finally:
        layer.requires_grad_(True)


def _linear_then_nonlinear(plan: SimplexTrainingPlan, data: SceneDataModule, config: VariationalConfig,
                           context: FitContext, workdir: Path) -> _Training:
    """`linear_first`: f frozen at the identity until early stopping, then free; the better phase kept.

    With `refine_epochs`, both phases are refined (the linear one with f still the identity, i.e. the
    exact maximum-likelihood linear model) and compared on the exact held-out NLL, so linear data can
    keep the linear decoder, which the IWAE comparison never did (docs/results.md, A7)."""
    nonlinearity = plan.module.nonlinearity
    with torch.no_grad():  # f(y) = y + g(y) with g = 0: the identity, so this phase is VASCA
        nonlinearity.weight_out.zero_()
        nonlinearity.bias_out.zero_()
    with _frozen(nonlinearity):
        linear, linear_epochs = _fit_phase(plan, data, config, context, workdir / "linear-phase", None)
    linear_state = copy.deepcopy(plan.state_dict()) if config.refine_epochs > 0 else None
    checkpoint, epochs = _fit_phase(plan, data, config, context, workdir, None)
    gain = (_score(linear) - _score(checkpoint)) / plan.module.n_channels  # nats per pixel and channel
    metrics = {"val_loss_linear_phase": _score(linear), "epochs_linear_phase": float(linear_epochs),
               "nonlinear_gain": gain}
    if linear_state is not None:
        return _refine_both_phases(plan, linear_state, _finished(plan, linear, linear_epochs),
                                   _finished(plan, checkpoint, linear_epochs + epochs, metrics),
                                   data, config, context, workdir)
    keep_nonlinear = _score(checkpoint) < _score(linear)
    metrics["nonlinearity_kept"] = float(keep_nonlinear)
    if not keep_nonlinear:
        _load_best(plan, linear)
        checkpoint = linear
    return _finished(plan, checkpoint, linear_epochs + epochs, metrics)


def _refine_both_phases(plan: SimplexTrainingPlan, linear_state: dict[str, torch.Tensor], linear: _Training,
                        nonlinear: _Training, data: SceneDataModule, config: VariationalConfig,
                        context: FitContext, workdir: Path) -> _Training:
    """Refine the nonlinear phase's model, then the linear phase's with f frozen at the identity, and keep
    the one with the lower exact held-out NLL (both scores are exact NLLs on the same pixels)."""
    nonlinear = _refine(nonlinear, data, config, context, workdir / "refine")
    nonlinear_state, nonlinear_objective = copy.deepcopy(plan.state_dict()), plan.config["objective"]
    plan.load_state_dict(linear_state)
    plan.set_objective(config.objective)
    with _frozen(plan.module.nonlinearity):
        linear = _refine(linear, data, config, context, workdir / "linear-phase" / "refine")
    keep_nonlinear = nonlinear.score <= linear.score
    metrics = {**nonlinear.metrics, "nonlinearity_kept": float(keep_nonlinear),
               "val_loss_linear_refined": linear.score, "val_loss_nonlinear_refined": nonlinear.score}
    epochs = nonlinear.epochs + int(linear.metrics["epochs_refine"])
    if keep_nonlinear:
        plan.load_state_dict(nonlinear_state)
        plan.set_objective(nonlinear_objective)
        return _Training(plan, nonlinear.score, nonlinear.path, epochs, metrics)
    return _Training(plan, linear.score, linear.path, epochs, metrics)


def _refine(training: _Training, data: SceneDataModule, config: VariationalConfig, context: FitContext,
            workdir: Path) -> _Training:
    """`refine_epochs`: go on from the trained model by exact maximum likelihood (objective 'lattice':
    A, f and s2; z summed out on the lattice), because the IWAE training stops short of the likelihood's
    maximum (docs/results.md, A5). Kept only if the exact held-out NLL drops; either way the returned
    score is that exact NLL, so restarts are compared on it."""
    plan = training.plan
    first_objective = plan.config["objective"]
    plan.set_objective("lattice")
    trainer, checkpoint = build_trainer(dataclasses.replace(config, max_epochs=config.refine_epochs),
                                        plan.module.n_channels, workdir, context.callbacks, context.progress_bar)
    before = float(trainer.validate(plan, datamodule=data, verbose=False)[0]["val_loss"])
    start = copy.deepcopy(plan.state_dict())
    trainer.fit(plan, datamodule=data)
    _load_best(plan, checkpoint)
    after = _score(checkpoint)
    metrics = {**training.metrics, "val_loss_before_refine": before, "val_loss_refined": after,
               "epochs_refine": float(trainer.current_epoch), "refinement_kept": float(after < before)}
    if after < before:
        return _finished(plan, checkpoint, training.epochs + trainer.current_epoch, metrics)
    plan.load_state_dict(start)
    plan.set_objective(first_objective)
    return _Training(plan, before, training.path, training.epochs + trainer.current_epoch, metrics)


def _score(checkpoint: ModelCheckpoint) -> float:
    value = checkpoint.best_model_score
    return float(value) if value is not None and torch.isfinite(value) else float("inf")


def _choose_start(runs: list[_Training], x: np.ndarray, config: VariationalConfig) -> tuple[int, dict[str, float]]:
    """The index of the start to keep, by `restart_choice`, and what decided it: the lowest validation loss,
    or the lowest exact negative log-likelihood per pixel over every pixel (scaled units, the same for all
    starts), reported as `exact_nll_chosen` / `exact_nll_worst_restart`."""
    if config.restart_choice == "val_loss" or len(runs) == 1:
        return min(range(len(runs)), key=lambda i: runs[i].score), {}
    device = torch.device(resolve_accelerator(config.device))
    data = torch.as_tensor(x, device=device)
    latent_dim = runs[0].plan.module.latent_dim
    lattice = simplex_lattice(latent_dim, default_resolution(latent_dim), device=device)
    nll = []
    for run in runs:
        module = run.plan.module.to(device).eval()
        with torch.no_grad():
            log_likelihood = lattice_log_likelihood(data, module.lattice_means(lattice), module.noise_variance())
        nll.append(float(-log_likelihood.mean()))
    chosen = min(range(len(runs)), key=lambda i: nll[i] if np.isfinite(nll[i]) else float("inf"))
    return chosen, {"exact_nll_chosen": nll[chosen], "exact_nll_worst_restart": max(nll)}


def start_of(config: VariationalConfig, restart: int) -> tuple[VariationalConfig, int]:
    """Start `restart`'s config (its entry of `restart_inits`, when given) and the seed that draws it
    (seed + restart). The config keeps `seed`, which fixes the validation split of every start."""
    inits = config.restart_inits
    start = dataclasses.replace(config, init=inits[restart % len(inits)]) if inits else config
    return start, config.seed + restart


def run_variational(scene: Scene, config: VariationalConfig, context: FitContext) -> MethodOutput:
    """Train NISCA or VASCA (by the config's type) on `scene` and return its estimates. With
    `restarts` > 1 the model is trained from that many starts and one is kept by `restart_choice`: the
    lowest validation loss, or the highest exact likelihood of every pixel (blind either way: the data
    decide, never the truth)."""
    Y = scene.Y.astype(np.float64)
    offset, scale = scaling(Y, config.standardize)
    x = ((Y - offset) / scale).astype(np.float32)
    s2 = _noise_variance(Y, config)

    workdir = context.training_folder("nisca-", config.restarts)
    if context.resume_from is not None and getattr(config, "linear_first", False):
        raise ConfigError("resuming needs linear_first = false (a checkpoint belongs to one phase)")
    runs = []
    for restart in range(config.restarts):
        folder = workdir if config.restarts == 1 else workdir / f"start-{restart}"
        start, init_seed = start_of(config, restart)
        runs.append(_train_once(Y, x, start, context, s2, offset, scale, init_seed, folder))
    chosen, choice_metrics = _choose_start(runs, x, config)
    plan, best = runs[chosen].plan, runs[chosen].path

    estimates = _infer(plan, x, config)
    noise = plan.module.noise_variance().detach().cpu().numpy() * scale**2
    metrics = {
        "val_loss": runs[chosen].score if np.isfinite(runs[chosen].score) else float("nan"),
        "noise_variance": float(np.mean(noise)),
        "epochs": float(runs[chosen].epochs),
        **runs[chosen].metrics,
    }
    if config.restarts > 1:
        metrics["restart_chosen"] = float(chosen)
        metrics["val_loss_worst_restart"] = max(run.score for run in runs)
        metrics.update(choice_metrics)
    if plan.module.learn_prior:  # the learned Dirichlet concentration, mean over components (below 1: sparse)
        metrics["prior_concentration"] = float(plan.module.concentration().detach().mean())
    nonlinear = isinstance(config, NiscaConfig)
    return MethodOutput(
        abundances=estimates["abundances"],
        endmembers=estimates["endmembers"],
        reconstruction=estimates["reconstruction"],
        linear_mixture=estimates["linear_mixture"],
        curves={"inputs": estimates["curve_inputs"], "outputs": estimates["curve_outputs"]} if nonlinear else None,
        metrics=metrics,
        epochs=runs[chosen].epochs,
        checkpoint_path=best,
        extras={"abundances_mode": estimates["abundances_mode"],
                "endmembers_purest": purest_pixel_endmembers(Y, estimates["abundances"]).astype(np.float32)},
    )


def run(scene: Scene, config: NiscaConfig, context: FitContext) -> MethodOutput:
    """NISCA on `scene`; warns when K and N fall outside the identifiability range."""
    warn_if_unidentifiable(config.latent_dim, scene.n_channels, "nisca")
    return run_variational(scene, config, context)


def load_checkpoint(path: str | Path) -> SimplexTrainingPlan:
    """The trained training plan saved at `path` (its `.module` samples the posterior), on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"checkpoint not found: {path}")
    plan = SimplexTrainingPlan.load_from_checkpoint(str(path), map_location="cpu")
    return plan.eval()
