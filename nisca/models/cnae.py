"""CNAE + MVES (Lyu and Fu, IEEE TSP 2021): a per-channel autoencoder, then a linear simplex method.

    encoder  g = [g_1, ..., g_N]   per-channel scalar networks (the inverse nonlinearity, up to scale)
    decoder  f = [f_1, ..., f_N]   per-channel scalar networks, x ~ f(g(x))
    loss     mean_i ||x_i - f(g(x_i))||^2 + mean_i lambda_i c_i + (rho/2) mean_i c_i^2,
             c_i = 1^T g(x_i) - 1   (the augmented Lagrangian of the constraint 1^T g(x) = 1)

Both g and f are one `ChannelwiseMLP` each (all channels in one batched op), or with `layers` > 1 a
`ChannelwiseDeepMLP` (the original code's 3 hidden layers of 128 per channel; no better on the thesis
benchmark over ten draws, docs/results.md A12, and slower, hence not the default). One multiplier per pixel
is kept for the whole dataset (a buffer of size `pixels`, saved in checkpoints); the data loader
yields pixel indices with the rows. Multipliers start at 0. The method of multipliers alternates an
inner loop of `multiplier_every` epochs of Adam on the loss with a dual step over all training pixels
at the current g: lambda_i += rho * c_i, after which rho is multiplied by `rho_growth` up to `rho_max`
(`rho_growth` = 1 keeps the thesis' constant rho = 100). Updating the multipliers after every batch
instead (one stale dual step per pixel per epoch) made training oscillate: measured on a noiseless
N = K = 3 scene, the constraint error grew from 0.4 to 8 within 200 epochs, against 0.008 with the
inner loop of 10 epochs.

The validation loss, used for early stopping and checkpoint selection (never the ground truth), is
the reconstruction MSE plus (rho_0 / 2) mean c_i^2 on a seeded held-out split; it uses the initial rho
so that epochs stay comparable when rho grows (held-out pixels have no multipliers).
After training, g(x) is (up to per-channel scale) a linear mixture on the plane 1^T y = 1, and MVES
(`nisca.baselines.mves`) unmixes it: abundances are the MVES barycentric coordinates, the linear
mixture is the MVES model V z in g-space, endmembers are f(v_k) in data units, curves are f_n.
Before the networks every channel goes through a fixed increasing map, and f's outputs are mapped back
through its inverse (`input_map`). A per-channel increasing map keeps the model post-nonlinear (it is
absorbed into g_n and f_n), so the method is unchanged; only what the networks have to represent is.
"standardise": zero mean and unit variance. "quantile": the channel's normal scores, i.e. its empirical
CDF (interpolated between QUANTILE_KNOTS quantiles) followed by the standard normal quantile function.
"auto" (the default): normal scores for the channels whose |skewness| exceeds SKEW_LIMIT, standardised
otherwise. Normal scores matter when a channel's nonlinearity squeezes most pixels into a tiny range, as
the thesis' 0.4 exp(y) does (with A = 10 N(0, 1) its values span up to 10 orders of magnitude, skewness
2.6-6.8 on seeds 0-4 at 10 and 30 dB, every other channel of the thesis, "original" and "linear" generators within
|1.4|): standardised, a ReLU g_3 cannot invert it, and through the constraint g_1 and g_2 bend as well
(noiseless data, seeds 0-1: R^2 of g_3 on y_3 0.29-0.53, latent MSE 5.4e-2). They cost accuracy on
channels that are already well spread (linear data, 30 dB: latent MSE 3.4e-3 standardised, 9.3e-3 with
normal scores on every channel), hence "auto". Latent MSE (R^2) on the thesis generator with every
channel at the stated SNR (simulate_pnl(3, 3, 3000, snr, "thesis", seed, noise_reference="channel"),
default config otherwise, seeds 0-4, mean; CPU):

    input_map     10 dB            20 dB            30 dB
    standardise   4.38e-2 (0.66)   5.70e-2 (0.68)   6.53e-2 (0.69)   (docs/results.md, table A)
    quantile      3.42e-2 (0.62)   2.58e-2 (0.80)   2.05e-2 (0.87)   (fitted on the normal scores of Y)
    auto          3.30e-2 (0.66)   2.21e-2 (0.79)   1.84e-2 (0.85)   (docs/results.md, A2)

On the "original" and "linear" generators no channel passes SKEW_LIMIT, so "auto" is "standardise".
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from scipy.stats import norm
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from nisca.baselines.mves import mves
from nisca.config import BaseConfig, config_to_dict
from nisca.data.scene import Scene
from nisca.errors import ConfigError, TrainingDivergedError
from nisca.fit import FitContext, MethodOutput
from nisca.models.layers import ChannelwiseDeepMLP, ChannelwiseMLP
from nisca.models.nisca import scaling
from nisca.models.training import quiet_lightning, resolve_accelerator, split_indices

CURVE_POINTS = 200
QUANTILE_KNOTS = 1001  # quantile levels (j + 0.5) / QUANTILE_KNOTS of the "quantile" input map
EXTRAPOLATION_SHARE = 0.05  # beyond the outer knots, the slope over this share of the knots at that end
SKEW_LIMIT = 2.0  # input_map "auto": channels with |skewness| above this get normal scores


@dataclasses.dataclass(frozen=True)
class CnaeConfig(BaseConfig):
    """hidden: units per channel in g and f (thesis 128); layers: hidden layers of each channel's network
    (1: the piecewise-linear kernel; the original code used 3); lr: Adam's learning rate; rho, rho_growth,
    rho_max: the augmented-Lagrangian penalty and its growth per dual step; multiplier_every: epochs
    between dual steps (the inner loop); batch_size, max_epochs, patience,
    val_fraction: training and early stopping on a held-out split; mves_tol / mves_max_sweeps: MVES's
    stopping rule; device: 'auto' (CUDA when present), 'cpu' or 'cuda'; input_map: the fixed per-channel
    increasing map applied before the networks, "auto", "quantile" (normal scores) or "standardise"
    (see the module docstring); restarts: whole trainings of g and f from different starts (seed, seed+1,
    ...; same validation split), the one with the lowest validation loss kept before MVES."""

    hidden: int = 128
    layers: int = 1
    lr: float = 1e-3
    rho: float = 100.0
    rho_growth: float = 1.0
    rho_max: float = 1e4
    multiplier_every: int = 10
    batch_size: int = 100
    max_epochs: int = 300
    patience: int = 30
    val_fraction: float = 0.1
    mves_tol: float = 1e-8
    mves_max_sweeps: int = 200
    device: Literal["auto", "cpu", "cuda"] = "auto"
    inference_batch_size: int = 8192
    input_map: Literal["auto", "quantile", "standardise"] = "auto"
    restarts: int = 1

    def validate(self) -> None:
        checks = [
            (self.hidden >= 1, "hidden must be >= 1"),
            (self.layers >= 1, "layers must be >= 1"),
            (self.lr > 0, "lr must be > 0"),
            (self.rho > 0, "rho must be > 0"),
            (self.rho_growth >= 1, "rho_growth must be >= 1"),
            (self.rho_max >= self.rho, "rho_max must be >= rho"),
            (self.multiplier_every >= 1, "multiplier_every must be >= 1"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.max_epochs >= 1, "max_epochs must be >= 1"),
            (self.patience >= 1, "patience must be >= 1"),
            (0 < self.val_fraction < 0.5, "val_fraction must be in (0, 0.5)"),
            (self.mves_tol > 0, "mves_tol must be > 0"),
            (self.mves_max_sweeps >= 1, "mves_max_sweeps must be >= 1"),
            (self.inference_batch_size >= 1, "inference_batch_size must be >= 1"),
            (self.restarts >= 1, "restarts must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"config for 'cnae': {message}")


CONFIG = CnaeConfig


class _IndexedRows(Dataset):
    """(pixel indices, rows) for a whole batch of indices at once; indices are into the full scene."""

    def __init__(self, data: torch.Tensor, index: np.ndarray) -> None:
        self.data, self.index = data, torch.as_tensor(index, dtype=torch.long)

    def __len__(self) -> int:
        return int(self.index.shape[0])

    def __getitem__(self, positions: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = self.index[positions]
        return rows, self.data[rows]


def channel_network(n_channels: int, config: dict[str, Any]) -> torch.nn.Module:
    """g or f: one hidden layer per channel (the batched piecewise-linear kernel), or a deeper stack."""
    layers = int(config.get("layers", 1))  # checkpoints from before `layers` had one
    if layers == 1:
        return ChannelwiseMLP(n_channels, hidden=config["hidden"])
    return ChannelwiseDeepMLP(n_channels, hidden=config["hidden"], layers=layers)


class CnaeModule(L.LightningModule):
    """g, f, the per-pixel multipliers and rho; rebuilt from its hyperparameters by load_from_checkpoint."""

    def __init__(self, config: dict[str, Any], n_channels: int, n_pixels: int) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.config = config
        self.encoder = channel_network(n_channels, config)
        self.decoder = channel_network(n_channels, config)
        self.register_buffer("multipliers", torch.zeros(n_pixels))  # one lambda_i per pixel, any size
        self.register_buffer("rho", torch.tensor(float(config["rho"])))
        self.register_buffer("offset", torch.zeros(n_channels))
        self.register_buffer("scale", torch.ones(n_channels))
        # the normal-score map: which channels use it, data-unit quantiles (N, Q), their normal scores (Q,)
        self.register_buffer("quantile_channels", torch.zeros(n_channels, dtype=torch.bool))
        self.register_buffer("knots_data", torch.zeros(n_channels, QUANTILE_KNOTS, dtype=torch.float64))
        self.register_buffer("knots_score", torch.zeros(QUANTILE_KNOTS, dtype=torch.float64))

    def fit_input_map(self, Y: np.ndarray) -> None:
        """Set the per-channel map from the data Y (pixels, N): standardisation, quantile knots, and which
        channels get normal scores (config "input_map")."""
        offset, scale = scaling(Y, "channel")
        self.offset.copy_(torch.as_tensor(offset))
        self.scale.copy_(torch.as_tensor(scale))
        levels = (np.arange(QUANTILE_KNOTS) + 0.5) / QUANTILE_KNOTS
        self.knots_data.copy_(torch.as_tensor(np.quantile(Y, levels, axis=0).T))
        self.knots_score.copy_(torch.as_tensor(norm.ppf(levels)))
        mode = self.config.get("input_map", "standardise")
        if mode == "auto":
            chosen = np.abs((((Y - offset) / scale) ** 3).mean(axis=0)) > SKEW_LIMIT  # |skewness|
        else:
            chosen = np.full(Y.shape[1], mode == "quantile")
        self.quantile_channels.copy_(torch.as_tensor(chosen))

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Checkpoints from before `input_map` lack the normal-score buffers: they load as standardised."""
        state = checkpoint["state_dict"]
        for name in ("quantile_channels", "knots_data", "knots_score"):
            state.setdefault(name, getattr(self, name).detach().clone())

    def to_network(self, Y: np.ndarray) -> np.ndarray:
        """Data units (pixels, N) -> the networks' input units (float32)."""
        Y = np.asarray(Y, dtype=np.float64)
        out = (Y - self.offset.cpu().numpy()) / self.scale.cpu().numpy()
        knots, score = self.knots_data.cpu().numpy(), self.knots_score.cpu().numpy()
        for n in np.flatnonzero(self.quantile_channels.cpu().numpy()):
            out[:, n] = _interp(Y[:, n], knots[n], score)
        return out.astype(np.float32)

    def to_data(self, T: np.ndarray) -> np.ndarray:
        """The networks' units (pixels, N) -> data units (float64): the inverse of `to_network`."""
        T = np.asarray(T, dtype=np.float64)
        out = T * self.scale.cpu().numpy() + self.offset.cpu().numpy()
        knots, score = self.knots_data.cpu().numpy(), self.knots_score.cpu().numpy()
        for n in np.flatnonzero(self.quantile_channels.cpu().numpy()):
            out[:, n] = _interp(T[:, n], score, knots[n])
        return out

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(g(x), f(g(x))) for x in the networks' units (batch, N), see `to_network`."""
        latent = self.encoder(x)
        return latent, self.decoder(latent)

    def _losses(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        latent, decoded = self(x)
        mse = ((x - decoded) ** 2).sum(dim=1).mean()
        constraint = latent.sum(dim=1) - 1.0
        return mse, constraint, latent

    def _check(self, loss: torch.Tensor, stage: str) -> None:
        if not torch.isfinite(loss):
            raise TrainingDivergedError(
                f"cnae: the {stage} loss became {loss.item()} at epoch {self.current_epoch} "
                f"(step {self.global_step}); lower lr (now {self.config['lr']}) or rho (now {float(self.rho):g})"
            )

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        rows, x = batch
        mse, c, _ = self._losses(x)
        loss = mse + (self.multipliers[rows] * c).mean() + 0.5 * self.rho * (c**2).mean()
        self._check(loss, "training")
        size = int(x.shape[0])
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=size)
        self.log("train_mse", mse, on_step=False, on_epoch=True, batch_size=size)
        return loss

    def on_train_epoch_start(self) -> None:
        """After every `multiplier_every` epochs (the inner loop), the dual step of the method of
        multipliers: lambda_i += rho * c_i for every training pixel at the current g, then
        rho *= rho_growth. Done at the start of the next epoch, so that a checkpoint written at the
        end of an epoch resumes exactly (Lightning saves it before epoch-end hooks run)."""
        epoch, every = self.current_epoch, int(self.config["multiplier_every"])
        if epoch == 0 or epoch % every:
            return
        rows_seen = self.trainer.train_dataloader.dataset
        batch = int(self.config["inference_batch_size"])
        with torch.no_grad():
            for start in range(0, len(rows_seen.index), batch):
                rows = rows_seen.index[start : start + batch]
                x = rows_seen.data[rows].to(self.device)
                rows = rows.to(self.device)
                self.multipliers[rows] += self.rho * (self.encoder(x).sum(dim=1) - 1.0)
        growth, ceiling = float(self.config["rho_growth"]), float(self.config["rho_max"])
        self.rho.fill_(min(float(self.rho) * growth, ceiling))

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        _, x = batch
        mse, c, _ = self._losses(x)
        loss = mse + 0.5 * float(self.config["rho"]) * (c**2).mean()
        self._check(loss, "validation")
        size = int(x.shape[0])
        self.log("val_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=size)
        self.log("val_mse", mse, on_step=False, on_epoch=True, batch_size=size)
        self.log("val_constraint", (c**2).mean().sqrt(), on_step=False, on_epoch=True, batch_size=size)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=float(self.config["lr"]))

    @torch.no_grad()
    def latent(self, x: np.ndarray, batch_size: int = 8192) -> np.ndarray:
        """g(x) (pixels, N) for x in the networks' units, chunk by chunk."""
        self.eval()
        out = [
            self.encoder(torch.as_tensor(x[start : start + batch_size], device=self.device)).cpu().numpy()
            for start in range(0, len(x), batch_size)
        ]
        return np.concatenate(out).astype(np.float64)

    @torch.no_grad()
    def decode_to_data(self, latent: np.ndarray) -> np.ndarray:
        """f(latent) in data units (pixels, N)."""
        self.eval()
        y = torch.as_tensor(np.asarray(latent, dtype=np.float32), device=self.device)
        return self.to_data(self.decoder(y).cpu().numpy())


def _interp(values: np.ndarray, xp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """Piecewise-linear map through the knots (xp, fp), xp non-decreasing; outside them, linear with the
    slope over the outer EXTRAPOLATION_SHARE of the knots at that end (0 where those xp are all equal)."""
    out = np.interp(values, xp, fp)
    k = max(1, int(EXTRAPOLATION_SHARE * len(xp)))
    for inside, edge, far in ((values < xp[0], 0, k), (values > xp[-1], -1, -1 - k)):
        run = xp[far] - xp[edge]
        slope = (fp[far] - fp[edge]) / run if run != 0 else 0.0
        out[inside] = fp[edge] + slope * (values[inside] - xp[edge])
    return out


def _loaders(
    x: torch.Tensor, config: CnaeConfig, train_index: np.ndarray, val_index: np.ndarray, seed: int
) -> tuple[DataLoader, DataLoader]:
    generator = torch.Generator().manual_seed(seed)
    train = _IndexedRows(x, train_index)
    val = _IndexedRows(x, val_index)
    train_sampler = BatchSampler(
        RandomSampler(train, generator=generator), batch_size=min(config.batch_size, len(train)), drop_last=False
    )
    val_sampler = BatchSampler(SequentialSampler(val), batch_size=min(config.inference_batch_size, len(val)), drop_last=False)
    return (
        DataLoader(train, sampler=train_sampler, batch_size=None),
        DataLoader(val, sampler=val_sampler, batch_size=None),
    )


def unmix(module: CnaeModule, x: np.ndarray, config: CnaeConfig) -> dict[str, np.ndarray]:
    """MVES on g(x): abundances, linear mixture in g-space, endmembers f(v_k), reconstruction, curves."""
    K = int(config.latent_dim)
    latent = module.latent(x, config.inference_batch_size)
    vertices, abundances = mves(latent, K, seed=config.seed, tol=config.mves_tol, max_sweeps=config.mves_max_sweeps)
    linear = abundances @ vertices.T
    low, high = latent.min(axis=0), latent.max(axis=0)
    grid = low + np.linspace(0.0, 1.0, CURVE_POINTS)[:, None] * (high - low)
    return {
        "abundances": abundances.astype(np.float32),
        "linear_mixture": linear.astype(np.float32),
        "endmembers": module.decode_to_data(vertices.T).T.astype(np.float32),
        "reconstruction": module.decode_to_data(linear).astype(np.float32),
        "curve_inputs": grid.astype(np.float32),
        "curve_outputs": module.decode_to_data(grid).astype(np.float32),
    }


def build_trainer(config: CnaeConfig, workdir: Path, context: FitContext) -> tuple[L.Trainer, ModelCheckpoint]:
    """Early stopping and best-checkpoint selection on val_loss, last.ckpt every epoch, the caller's callbacks."""
    quiet_lightning()
    checkpoint = ModelCheckpoint(
        dirpath=workdir / "checkpoints", filename="best-{epoch}", monitor="val_loss", mode="min", save_top_k=1
    )
    # The most recent epoch, every epoch (last.ckpt), for resuming: the best one may be older.
    latest = ModelCheckpoint(dirpath=workdir / "checkpoints", filename="latest-{epoch}", save_top_k=1, save_last=True)
    stopping = EarlyStopping(monitor="val_loss", mode="min", patience=config.patience, check_finite=False)
    trainer = L.Trainer(
        accelerator=resolve_accelerator(config.device),
        devices=1,
        precision="32-true",
        max_epochs=config.max_epochs,
        callbacks=[checkpoint, latest, stopping, *context.callbacks],
        logger=False,
        enable_progress_bar=context.progress_bar,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=str(workdir),
        log_every_n_steps=1,
    )
    return trainer, checkpoint


@dataclasses.dataclass
class _Start:
    """One training of g and f: the module at its best checkpoint, its score and where it stopped."""

    module: CnaeModule
    val_loss: float
    epochs: int
    checkpoint_path: str | None


def _train_once(scene: Scene, Y: np.ndarray, config: CnaeConfig, context: FitContext, seed: int,
                split: tuple[np.ndarray, np.ndarray], workdir: Path) -> _Start:
    """Train g and f from the start drawn with `seed` and reload the checkpoint with the best val_loss."""
    L.seed_everything(seed, verbose=False)
    module = CnaeModule(config_to_dict(config), scene.n_channels, scene.n_pixels)
    module.fit_input_map(Y)
    x = torch.as_tensor(module.to_network(Y))
    train_loader, val_loader = _loaders(x, config, *split, seed)
    trainer, checkpoint = build_trainer(config, workdir, context)
    trainer.fit(module, train_dataloaders=train_loader, val_dataloaders=val_loader, ckpt_path=context.resume_from)
    best = checkpoint.best_model_path
    if best:
        state = torch.load(best, map_location=module.device, weights_only=False)["state_dict"]
        module.load_state_dict(state)
    score = float(checkpoint.best_model_score) if checkpoint.best_model_score is not None else float("nan")
    return _Start(module, score, int(trainer.current_epoch), str(best) if best else None)


def run(scene: Scene, config: CnaeConfig, context: FitContext) -> MethodOutput:
    """Train g and f with the augmented Lagrangian (from `restarts` starts), select on val_loss, then MVES
    on g(x)."""
    Y = scene.Y.astype(np.float64)
    split = split_indices(scene.n_pixels, config.val_fraction, config.seed)
    workdir = context.training_folder("cnae-", config.restarts)
    starts = [_train_once(scene, Y, config, context, config.seed + restart, split,
                          workdir if config.restarts == 1 else workdir / f"start-{restart}")
              for restart in range(config.restarts)]
    scores = [start.val_loss for start in starts]
    chosen = min(range(len(starts)), key=lambda i: scores[i] if np.isfinite(scores[i]) else np.inf)
    module, best = starts[chosen].module, starts[chosen].checkpoint_path
    x = module.to_network(Y)
    module.to(resolve_accelerator(config.device))  # Lightning hands the model back on the CPU
    estimates = unmix(module, x, config)
    metrics = {
        "val_loss": scores[chosen],
        "epochs": float(starts[chosen].epochs),
        "constraint_rmse": float(np.sqrt(np.mean((module.latent(x).sum(axis=1) - 1.0) ** 2))),
    }
    if config.restarts > 1:
        metrics["restart_chosen"] = float(chosen)
        metrics["val_loss_worst_restart"] = max(scores)
    return MethodOutput(
        abundances=estimates["abundances"],
        endmembers=estimates["endmembers"],
        reconstruction=estimates["reconstruction"],
        linear_mixture=estimates["linear_mixture"],
        curves={"inputs": estimates["curve_inputs"], "outputs": estimates["curve_outputs"]},
        metrics=metrics,
        epochs=starts[chosen].epochs,
        checkpoint_path=best,
    )
