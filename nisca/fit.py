"""fit(method, scene, config) -> FitResult: the one entry point used by the CLI, studies and Ray Tune.

A method's runner returns a `MethodOutput` (abundances and what else it estimates); `fit` resolves the
typed config, times the run, and scores the output against the scene's truth when there is one.
Model selection inside a runner never sees the truth: runners receive the scene without it.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from nisca.config import config_to_dict
from nisca.data.scene import Scene, check_latent_dim
from nisca.errors import ConfigError
from nisca.methods import get_method


@dataclass
class MethodOutput:
    """What a method's runner estimates. Shapes: abundances (pixels, K), endmembers (channels, K)."""

    abundances: np.ndarray
    endmembers: np.ndarray | None = None
    reconstruction: np.ndarray | None = None  # (pixels, channels): decoded estimate of Y
    linear_mixture: np.ndarray | None = None  # (pixels, channels): estimated A z before f
    mixing: np.ndarray | None = None  # (channels, K): the estimated linear mixing matrix A
    curves: dict[str, np.ndarray] | None = None  # learned f_n: {"inputs": (M, N), "outputs": (M, N)}
    metrics: dict[str, float] = field(default_factory=dict)  # e.g. val_loss, elbo, noise_variance
    epochs: int = 0
    checkpoint_path: str | None = None
    extras: dict[str, np.ndarray] = field(default_factory=dict)  # e.g. abundances_mode


@dataclass
class FitContext:
    """How to run (not what to estimate): Lightning callbacks, output folder, resume point."""

    callbacks: Sequence[Any] = ()
    workdir: Path | None = None  # checkpoints and logs go here; None uses a temporary folder
    resume_from: str | None = None  # a checkpoint written by an earlier run of the same config
    progress_bar: bool = True

    def training_folder(self, prefix: str, restarts: int = 1) -> Path:
        """The folder a trained method writes to (`workdir`, or a fresh temporary one named `prefix`...),
        after checking the resume point: it must exist and belong to a single start."""
        if self.resume_from is not None and not Path(self.resume_from).is_file():
            raise ConfigError(f"resume checkpoint not found: {self.resume_from}")
        if self.resume_from is not None and restarts > 1:
            raise ConfigError("resuming needs restarts = 1 (a checkpoint belongs to one start)")
        folder = Path(self.workdir) if self.workdir is not None else Path(tempfile.mkdtemp(prefix=prefix))
        folder.mkdir(parents=True, exist_ok=True)
        return folder


@dataclass
class FitResult:
    """Everything a fit produced, ready for the CLI, a Tune trial or a notebook."""

    method: str
    abundances: np.ndarray
    endmembers: np.ndarray | None
    metrics: dict[str, float]
    config: dict[str, Any]
    wall_time_s: float
    epochs: int
    checkpoint_path: str | None
    curves: dict[str, np.ndarray] | None = None
    reconstruction: np.ndarray | None = None
    extras: dict[str, np.ndarray] = field(default_factory=dict)


def resolve_config(method: str, scene: Scene, config: Mapping[str, Any] | Any | None = None) -> Any:
    """The method's typed config, with latent_dim taken from the truth when unset, checked against Y."""
    from nisca.config import build_config

    module = get_method(method).load()
    if config is None or isinstance(config, Mapping):
        typed = build_config(module.CONFIG, config, method=method)
    elif isinstance(config, module.CONFIG):
        typed = config
    else:
        raise ConfigError(f"config for {method!r} must be a mapping or {module.CONFIG.__name__}")
    if typed.latent_dim is None:
        K = scene.truth.n_components if scene.truth is not None else None
        if K is None:
            raise ConfigError(f"{scene.name}: set latent_dim (K); the scene has no ground truth to take it from")
        typed = replace(typed, latent_dim=K)
        if callable(getattr(typed, "validate", None)):
            typed.validate()  # checks that depend on K, now that it is known
    check_latent_dim(typed.latent_dim, scene.n_channels, scene.name)
    return typed


def fit(
    method: str,
    scene: Scene,
    config: Mapping[str, Any] | Any | None = None,
    callbacks: Sequence[Any] = (),
    *,
    workdir: str | Path | None = None,
    resume_from: str | None = None,
    progress_bar: bool = True,
) -> FitResult:
    """Fit `method` to `scene`. Truth metrics are added when the scene has ground truth."""
    from nisca.metrics import score

    module = get_method(method).load()
    typed = resolve_config(method, scene, config)
    context = FitContext(
        callbacks=tuple(callbacks),
        workdir=Path(workdir) if workdir is not None else None,
        resume_from=resume_from,
        progress_bar=progress_bar,
    )
    blind = scene.with_truth(None)  # the runner never sees ground truth
    start = time.perf_counter()
    output: MethodOutput = module.run(blind, typed, context)
    wall = time.perf_counter() - start

    metrics = {key: float(value) for key, value in output.metrics.items()}
    metrics.update(
        score(
            scene,
            abundances=output.abundances,
            endmembers=output.endmembers,
            linear_mixture=output.linear_mixture,
            reconstruction=output.reconstruction,
            mixing=output.mixing,
        )
    )
    purest = output.extras.get("endmembers_purest")
    if purest is not None and scene.truth is not None and scene.truth.endmembers is not None:
        metrics["sad_purest_deg"] = score(scene, abundances=output.abundances, endmembers=purest)["sad_deg"]
    metrics["wall_time_s"] = wall
    return FitResult(
        method=method,
        abundances=np.asarray(output.abundances, dtype=np.float32),
        endmembers=None if output.endmembers is None else np.asarray(output.endmembers, dtype=np.float32),
        metrics=metrics,
        config={"method": method, **config_to_dict(typed)},
        wall_time_s=wall,
        epochs=output.epochs,
        checkpoint_path=output.checkpoint_path,
        curves=output.curves,
        reconstruction=output.reconstruction,
        extras=output.extras,
    )
