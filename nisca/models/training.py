"""Training on Lightning: the shared config, a DataModule over a Scene, the training plan, the Trainer.

Following scvi-tools' split, `VariationalSimplexModule` computes the loss; `SimplexTrainingPlan` only
optimises it (Adam, one learning rate for the encoder and one for the decoder) and logs `train_loss` and
`val_loss` once per epoch; `build_trainer` adds early stopping and checkpoint selection on `val_loss`
(never on ground truth) and the caller's callbacks (e.g. the Ray Tune reporter).
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from nisca.config import BaseConfig
from nisca.errors import ConfigError, TrainingDivergedError
from nisca.models.lattice import TRAINING_LATTICE_POINTS, default_resolution, lattice_fits
from nisca.models.layers import ChannelwiseMLP, SharedChannelNonlinearity
from nisca.models.module import VariationalSimplexModule

QUIET_LOGGERS = (
    "lightning.pytorch.utilities.rank_zero",
    "lightning.pytorch.accelerators.cuda",
    "lightning.fabric.utilities.seed",
    "lightning.fabric.utilities.rank_zero",
)
QUIET_WARNINGS = (
    r".*does not have many workers.*",
    r".*The number of training batches .* is smaller than the logging interval.*",
    r".*Checkpoint directory .* exists and is not empty.*",
    r".*GPU available but not used.*",
    r".*litlogger.*",
    r".*isinstance\(treespec, LeafSpec\).*",
)


@dataclasses.dataclass(frozen=True)
class VariationalConfig(BaseConfig):
    """Settings shared by NISCA and VASCA (defaults chosen by the benchmark in docs/results.md).

    encoder_hidden: widths of the encoder MLP. mc_samples: R, Monte Carlo samples per pixel in the loss.
    objective: 'iwae' (the default: the importance-weighted bound with R = mc_samples samples, tighter than
      the ELBO, so the decoder is not bent towards logistic-normal posteriors; the abundances are then the
      importance-weighted posterior mean; R = 1 is the ELBO) or 'elbo' (the negative ELBO of MODEL.md). The
      IWAE default won on the thesis tables, 4 of 5 synthetic scene kinds, every DCE recipe and Samson's
      abundances (docs/results.md, "Choosing the defaults"). The validation loss is the training objective
      on held-out pixels: compare val_loss only between runs with the same objective and R. 'lattice'
      (K <= 5): A, f and s2 by exact maximum likelihood, z integrated out over a lattice of up to 12,000
      points on the simplex at every step (nisca.models.lattice); no encoder is trained, so the
      abundances come from the lattice (`inference` 'auto' or 'lattice'). On the 30 dB thesis cell it
      wins three seeds of five (up to 4x) and loses one by 9x (docs/results.md, A5); each step decodes
      the whole lattice, so it is 5-10x slower per epoch on N = 3 and slow for many channels.
    refine_epochs: after the training above, up to this many epochs of exact maximum-likelihood training
      of the decoder (A, f, s2) from where it stopped, z integrated out on the lattice as under
      objective 'lattice' (K <= 5, flat prior; the encoder is not trained further, so the abundances come
      from the lattice). The refined model is kept only if it lowers the exact held-out negative
      log-likelihood, and val_loss is then that exact NLL. 0 (the default): no refinement.
    inference_samples: samples for the posterior-mean abundances.
    inference: how the abundances are computed from the trained model. 'lattice': the exact posterior
      mean under the trained decoder, by summing over a lattice of up to 50,000 points on the simplex
      (nisca.models.lattice; K <= 5): no encoder approximation and no Monte Carlo noise. 'sampling': the
      posterior mean over `inference_samples` draws of the encoder (importance-weighted under 'iwae').
      'auto' (the default): lattice for K <= 5, sampling above. The lattice was better or level on all
      five scene kinds of the recipe benchmark, 3-10 % better on the thesis tables and level on the real
      scenes (docs/results.md, A5), for a slower readout (10 s instead of 2 s on Samson's 9,025 pixels).
    noise: how s2 is set. 'learn-channel': one s2 per channel, learned jointly (un-scaled negative ELBO)
      from the estimate; 'learn-shared': one s2 for all channels in the scaled units (the same SNR in
      every channel), learned; 'learn' (the default): learn-channel when N >= K + 2, i.e. when at least
      three directions carry only noise, otherwise learn-shared (per-channel variances are not
      identifiable on N = K data); 'estimate': white noise in data units, the residual of a rank-(K-1)
      affine fit (nisca.models.noise), kept fixed; 'given': noise_variance in data units (synthetic data).
    prior: 'flat' (Dirichlet(1), MODEL.md) or 'learn' (Dirichlet(alpha), alpha learned by the ELBO). The
      learned prior helps VASCA on scenes where most pixels are pure (the DCE phantom) but costs 1.3-7x in
      abundance MSE on Dirichlet(1) scenes (docs/results.md), so it is an option, not the default.
    standardize: 'channel' (centre and scale each channel to unit variance; the noise variance is scaled
      with it, so the likelihood is unchanged), 'global' (one scale for all channels) or 'none'.
    init: 'vca' (A starts at VCA's endmembers, nisca.baselines.vca; pairs with a residual nonlinearity),
      'mves' (MVES's endmembers, nisca.baselines.mves: no pure pixels needed, slower on big scenes),
      'nmf' (sum-to-one NMF's endmembers, nisca.baselines.nmf: a least-squares fit of the whole scene) or
      'random' (standard normal entries, the thesis' start). vca_restarts: VCA runs for the warm start;
      the largest simplex is kept (nisca.baselines.vca.vca_max_volume).
    restarts: whole trainings from different starts (seed, seed+1, ...; same validation split), the one
      with the lowest validation loss kept (against local optima of the non-convex ELBO; a modest gain
      on the thesis benchmark, docs/results.md). restart_choice: what picks that start. 'val_loss' (the
      default): the validation loss. 'likelihood' (K <= 5, flat prior): the exact log-likelihood of every
      pixel, training and held-out (z summed out on the lattice), under each start's final model. The
      starts are one model class fitted to the same data, so this is the optimiser's own objective on
      ten times the pixels of the held-out split: on a 30 dB thesis scene the 300 held-out pixels ranked
      three starts against their recovery, all 3,000 pixels with it (docs/results.md, A8).
      restart_inits: the init of each start in turn (start r takes restart_inits[r % length]; empty: every
      start takes `init`). On a 30 dB thesis scene six starts from VCA stayed in one basin and a start
      from random weights found the truth's (docs/results.md, A10).
    device: 'auto' (CUDA when present), 'cpu' or 'cuda'. precision: 'auto' (bf16-mixed on a CUDA device
      that supports it for scenes of 64+ channels, else 32-true), '32-true', 'bf16-mixed', '16-mixed'.
    """

    encoder_hidden: tuple[int, ...] = (128, 128)
    mc_samples: int = 8
    objective: Literal["elbo", "iwae", "lattice"] = "iwae"
    refine_epochs: int = 0
    inference_samples: int = 64
    inference: Literal["auto", "sampling", "lattice"] = "auto"
    noise: Literal["learn", "learn-channel", "learn-shared", "estimate", "given"] = "learn"
    noise_variance: float | None = None
    prior: Literal["flat", "learn"] = "flat"
    lr_encoder: float = 1e-2
    lr_decoder: float = 3e-3
    batch_size: int = 100
    max_epochs: int = 300
    patience: int = 30
    val_fraction: float = 0.1
    standardize: Literal["channel", "global", "none"] = "channel"
    init: Literal["vca", "mves", "nmf", "random"] = "vca"
    vca_restarts: int = 8
    restarts: int = 1
    restart_choice: Literal["val_loss", "likelihood"] = "val_loss"
    restart_inits: tuple[Literal["vca", "mves", "nmf", "random"], ...] = ()
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "32-true", "bf16-mixed", "16-mixed"] = "auto"
    num_workers: int = 0
    inference_batch_size: int = 8192

    def validate(self) -> None:
        """Range checks with one clear message per bad setting."""
        checks = [
            (self.lr_encoder > 0, "lr_encoder must be > 0"),
            (self.lr_decoder > 0, "lr_decoder must be > 0"),
            (0 < self.val_fraction < 0.5, "val_fraction must be in (0, 0.5)"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.max_epochs >= 1, "max_epochs must be >= 1"),
            (self.patience >= 1, "patience must be >= 1"),
            (self.mc_samples >= 1, "mc_samples must be >= 1"),
            (self.inference_samples >= 1, "inference_samples must be >= 1"),
            (self.inference_batch_size >= 1, "inference_batch_size must be >= 1"),
            (self.num_workers >= 0, "num_workers must be >= 0"),
            (self.vca_restarts >= 1, "vca_restarts must be >= 1"),
            (self.restarts >= 1, "restarts must be >= 1"),
            (self.refine_epochs >= 0, "refine_epochs must be >= 0"),
            (all(h >= 1 for h in self.encoder_hidden), "encoder_hidden sizes must be >= 1"),
            (self.noise != "given" or (self.noise_variance is not None and self.noise_variance > 0),
             "noise='given' needs noise_variance > 0 (in the data's units)"),
            (self.noise_variance is None or self.noise_variance > 0, "noise_variance must be > 0"),
        ]
        name = type(self).__name__
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"{name}: {message}")
        if self.objective == "lattice" and self.refine_epochs > 0:
            raise ConfigError(f"{name}: refine_epochs refines an 'iwae' or 'elbo' training by exact maximum "
                              "likelihood; objective 'lattice' already trains that way (set refine_epochs = 0)")
        on_lattice = None  # the setting that trains the decoder on the lattice, without the encoder
        if self.objective == "lattice":
            on_lattice = "objective 'lattice'"
        elif self.refine_epochs:
            on_lattice = "refine_epochs"
        if on_lattice and self.inference == "sampling":
            raise ConfigError(f"{name}: {on_lattice} trains the decoder without the encoder, so it needs "
                              "inference 'lattice' or 'auto' (the abundances from the exact posterior)")
        if on_lattice and self.prior != "flat":
            raise ConfigError(f"{name}: {on_lattice} supports the flat prior only")
        refine_too_big = self.latent_dim is not None and not lattice_fits(self.latent_dim, TRAINING_LATTICE_POINTS)
        if self.refine_epochs and refine_too_big:
            raise ConfigError(f"{name}: refine_epochs integrates z out on a simplex lattice, which works up to "
                              f"K = 5 (latent_dim is {self.latent_dim}); set refine_epochs = 0")
        if self.inference == "lattice" and self.latent_dim is not None:
            default_resolution(self.latent_dim)  # K <= 5, or a clear error now rather than after training
        if self.restart_choice == "likelihood":
            if self.prior != "flat":
                raise ConfigError(f"{name}: restart_choice 'likelihood' supports the flat prior only")
            if self.latent_dim is not None and not lattice_fits(self.latent_dim):
                raise ConfigError(f"{name}: restart_choice 'likelihood' sums z out on a simplex lattice, which "
                                  f"works up to K = 5 (latent_dim is {self.latent_dim}); use 'val_loss'")


# -- data -----------------------------------------------------------------------------------------------
class _Rows(Dataset):
    """Rows of a tensor, fetched a whole batch of indices at a time (no per-row collation)."""

    def __init__(self, data: torch.Tensor) -> None:
        self.data = data

    def __len__(self) -> int:
        return int(self.data.shape[0])

    def __getitem__(self, rows: list[int]) -> torch.Tensor:
        return self.data[rows]


def split_indices(n_pixels: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded disjoint (train, validation) pixel indices; the validation part has at least one pixel."""
    order = np.random.default_rng(seed).permutation(n_pixels)
    n_val = min(max(int(round(val_fraction * n_pixels)), 1), n_pixels - 1)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


class SceneDataModule(L.LightningDataModule):
    """Scaled observations split once (seeded) into training and held-out validation pixels."""

    def __init__(self, x: np.ndarray, batch_size: int, val_fraction: float, seed: int, num_workers: int = 0) -> None:
        super().__init__()
        self.x = torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32))
        self.batch_size, self.seed, self.num_workers = int(batch_size), int(seed), int(num_workers)
        self.train_index, self.val_index = split_indices(len(self.x), val_fraction, seed)

    def _loader(self, index: np.ndarray, shuffle: bool) -> DataLoader:
        rows = _Rows(self.x[torch.as_tensor(index)])
        if shuffle:
            generator = torch.Generator().manual_seed(self.seed)
            base = RandomSampler(rows, generator=generator)
        else:
            base = SequentialSampler(rows)
        sampler = BatchSampler(base, batch_size=min(self.batch_size, len(rows)), drop_last=False)
        return DataLoader(rows, sampler=sampler, batch_size=None, num_workers=self.num_workers)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_index, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_index, shuffle=False)


# -- model ----------------------------------------------------------------------------------------------
LEARNED_NOISE = ("learn", "learn-channel", "learn-shared")


def noise_per_channel(noise: str, n_channels: int, latent_dim: int) -> bool:
    """Whether the learned noise variance has one entry per channel (see VariationalConfig.noise)."""
    if noise == "learn":
        return n_channels >= latent_dim + 2
    return noise == "learn-channel"


def build_module(config: dict[str, Any], n_channels: int, noise_variance: Sequence[float]) -> VariationalSimplexModule:
    """The torch module described by a config dict (NISCA when it has nonlinearity settings)."""
    nonlinearity = None
    if "nonlinearity_hidden" in config:
        layer = SharedChannelNonlinearity if config.get("shared_nonlinearity", False) else ChannelwiseMLP
        nonlinearity = layer(
            n_channels,
            hidden=config["nonlinearity_hidden"],
            monotone=config["monotone"],
            residual=config["residual"],
            monotone_units=config.get("monotone_units", "tanh"),  # checkpoints written before the option: tanh
        )
    return VariationalSimplexModule(
        n_channels,
        config["latent_dim"],
        encoder_hidden=config["encoder_hidden"],
        nonlinearity=nonlinearity,
        noise_variance=torch.tensor(list(noise_variance), dtype=torch.float32),
        learn_noise=config["noise"] in LEARNED_NOISE,
        noise_per_channel=noise_per_channel(config["noise"], n_channels, config["latent_dim"]),
        learn_prior=config.get("prior", "flat") == "learn",
        objective=config.get("objective", "elbo"),  # checkpoints written before the option: the ELBO
    )


class SimplexTrainingPlan(L.LightningModule):
    """Optimises the module's loss (negative IWAE bound or ELBO); rebuilt from its hyperparameters by
    `load_from_checkpoint`."""

    def __init__(self, config: dict[str, Any], n_channels: int, noise_variance: list[float]) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.config = config
        self.module = build_module(config, n_channels, noise_variance)

    def set_objective(self, objective: str) -> None:
        """Train on `objective` from now on (the refinement after an IWAE training); the plan's config and
        hyperparameters say so too, so checkpoints written from here reload as what they are."""
        self.module.set_objective(objective)
        self.config = {**self.config, "objective": objective}
        self.hparams["config"] = self.config

    def _step(self, batch: torch.Tensor, stage: str) -> torch.Tensor:
        parts = self.module.loss(batch, self.config["mc_samples"])
        loss = parts["loss"]
        if not torch.isfinite(loss):
            raise TrainingDivergedError(
                f"the {stage} loss became {loss.item()} at epoch {self.current_epoch} "
                f"(step {self.global_step}); lower the learning rates (lr_encoder={self.config['lr_encoder']}, "
                f"lr_decoder={self.config['lr_decoder']}) or check the data scaling"
            )
        size = int(batch.shape[0])
        self.log(f"{stage}_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=size)
        if stage == "val":  # one log call per training step: Lightning's logging costs more than the model
            self.log("val_mse", parts["mse"], on_step=False, on_epoch=True, batch_size=size)
        return loss

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "val")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam: the encoder at lr_encoder, A and s2 at lr_decoder, f at lr_nonlinearity (NISCA; default
        lr_decoder); the prior's concentration, one scalar per component, at lr_encoder so that it keeps
        pace with the posterior it summarises."""
        encoder = list(self.module.encoder.parameters())
        prior = [self.module.log_concentration] if self.module.learn_prior else []
        nonlinearity = list(self.module.nonlinearity.parameters())
        grouped = {id(p) for p in encoder + prior + nonlinearity}
        decoder = [p for p in self.module.parameters() if id(p) not in grouped]
        lr_nonlinearity = self.config.get("lr_nonlinearity") or self.config["lr_decoder"]
        groups = [
            {"params": encoder + prior, "lr": self.config["lr_encoder"]},
            {"params": decoder, "lr": self.config["lr_decoder"]},
        ]
        if nonlinearity:
            groups.append({"params": nonlinearity, "lr": lr_nonlinearity})
        return torch.optim.Adam(groups)


# -- trainer --------------------------------------------------------------------------------------------
def resolve_accelerator(device: str) -> str:
    """'auto' -> 'cuda' when a GPU is visible, else 'cpu'; 'cuda' without a GPU is a ConfigError."""
    has_cuda = torch.cuda.is_available()
    if device == "cuda" and not has_cuda:
        raise ConfigError("device='cuda' was asked for but no CUDA device is visible (use 'auto' or 'cpu')")
    if device == "auto":
        return "cuda" if has_cuda else "cpu"
    return device


def resolve_precision(precision: str, accelerator: str, n_channels: int) -> str:
    """Mixed precision only where it pays: on CUDA, for wide decoders (64+ channels), if bf16 is supported."""
    if precision != "auto":
        if precision != "32-true" and accelerator != "cuda":
            raise ConfigError(f"precision={precision!r} needs a CUDA device; use '32-true' or 'auto' on CPU")
        return precision
    if accelerator == "cuda" and n_channels >= 64 and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"


def quiet_lightning() -> None:
    """No 'GPU available' banners or seed lines; real warnings and errors still show."""
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)


def build_trainer(
    config: VariationalConfig,
    n_channels: int,
    workdir: Path,
    callbacks: Sequence[Any] = (),
    progress_bar: bool = True,
) -> tuple[L.Trainer, ModelCheckpoint]:
    """A Trainer with early stopping and best-checkpoint selection on val_loss, plus the caller's callbacks."""
    quiet_lightning()
    accelerator = resolve_accelerator(config.device)
    checkpoint = ModelCheckpoint(
        dirpath=workdir / "checkpoints",
        filename="best-{epoch}",
        monitor="val_loss",
        mode="min",
        save_top_k=1,
        save_last=True,
    )
    stopping = EarlyStopping(monitor="val_loss", mode="min", patience=config.patience, check_finite=False)
    trainer = L.Trainer(
        accelerator=accelerator,
        devices=1,
        precision=resolve_precision(config.precision, accelerator, n_channels),
        max_epochs=config.max_epochs,
        callbacks=[checkpoint, stopping, *callbacks],
        logger=False,
        enable_progress_bar=progress_bar,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=str(workdir),
        log_every_n_steps=1,
    )
    return trainer, checkpoint
