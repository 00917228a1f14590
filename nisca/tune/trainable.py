"""The function trainable: one Tune trial = one `nisca.fit()` call.

Trained methods (Lightning) report `val_loss`/`train_loss` with a checkpoint after every epoch
(nisca/tune/callbacks.py), so ASHA can stop them early and a restored trial resumes from its last
checkpoint. Classic methods run once, and so do fits that train more than once (`linear_first`,
`refine_epochs`, `restarts`: nisca.tune.spec.trains_in_phases): they report only at the end, and an
interrupted one restarts from its beginning. Every trial ends with one final report carrying the full
FitResult metrics (truth metrics too when the scene has a matching truth; they are never used for
selection unless the study says so), `reconstruction_rmse` (computed from Y alone: the blind metric
every method reports, so methods of both families can be compared without ground truth), and the
completion marker `completed=1` with `epochs` and `epoch_budget`. The final checkpoint holds the
estimates (abundances.npy, endmembers.npy, curves.npz, and abundances_mode.npy and endmembers_purest.npy
where the method has them), metrics.json, config.json and the model.

Scenes arrive through `tune.with_parameters` (Ray's object store), never inside the config.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from nisca.tune.callbacks import BEST_FILE, BEST_PATH_FILE, CHECKPOINT_FILE
from nisca.tune.spec import trains_in_phases


@dataclass(frozen=True)
class TrialSettings:
    """What every trial of a study shares (sent once through the object store)."""

    max_epochs: int
    trained: Mapping[str, bool]  # method -> reports per epoch
    budget_field: Mapping[str, str | None]  # method -> its config field for the epoch budget
    threads: int = 1


def method_config(config: Mapping[str, Any], settings: TrialSettings) -> dict[str, Any]:
    """The method's config mapping for this trial: its hyperparameters, seed, K and epoch budget."""
    from nisca.tune.search import decode_value

    method = config["method"]
    params = {key: decode_value(value) for key, value in (config.get(method) or {}).items()}
    params["seed"] = int(config["seed"])
    if config.get("latent_dim") is not None:
        params["latent_dim"] = int(config["latent_dim"])
    field = settings.budget_field.get(method)
    if field and settings.trained.get(method):
        params.setdefault(field, settings.max_epochs)
    return params


def nisca_trial(config: dict[str, Any], scenes: Mapping[str, Any], settings: TrialSettings) -> None:
    """Ray Tune function trainable: fit config["method"] to scenes[config["scene"]] and report."""
    import ray
    import torch
    from ray import tune

    from nisca.fit import fit
    from nisca.tune.environment import quiet_loggers

    quiet_loggers()
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*")  # a torch/Lightning deprecation notice, every trial
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    torch.set_num_threads(max(1, settings.threads))
    method = config["method"]
    params = method_config(config, settings)
    scene = scenes[config["scene"]]
    scene = replace(scene, Y=np.array(scene.Y))  # a private, writable copy (object-store arrays are read-only)
    truth_k = scene.truth.n_components if scene.truth is not None else None
    if truth_k is not None and params.get("latent_dim") not in (None, truth_k):
        scene = scene.with_truth(None)  # K differs from the truth's: no truth metrics for this trial
    budget = int(params.get(settings.budget_field.get(method) or "", 0) or 0) if settings.trained[method] else 1
    base = {"epoch_budget": budget, "restored_from_epoch": 0}

    started_at = time.time()
    checkpoint = tune.get_checkpoint()
    workdir = trial_workdir(fresh=checkpoint is None)
    try:
        resume_from = _restore(checkpoint, workdir, base)
        callbacks = []
        if settings.trained[method] and not trains_in_phases(params):
            from nisca.tune.callbacks import TuneReportCheckpoint

            callbacks.append(TuneReportCheckpoint(base))
        result = fit(method, scene, params, callbacks, workdir=workdir, resume_from=resume_from, progress_bar=False)
        final = dict(result.metrics)
        if "reconstruction_rmse" not in final:
            final["reconstruction_rmse"] = linear_reconstruction_rmse(scene.Y, result.abundances, result.endmembers)
        final.update(base)
        final.update(
            completed=1,
            epoch=result.epochs if settings.trained[method] else 1,
            epochs=result.epochs,
            truth_k=truth_k if scene.truth is not None else -1,
        )
        final = {k: v for k, v in final.items() if v is not None and np.isfinite(v)}
        # Where and when this (last) run of the trial happened: the report's node column.
        final.update(node_id=ray.get_runtime_context().get_node_id(), started_at=started_at, ended_at=time.time())
        folder = workdir / "final"
        write_final_checkpoint(folder, result, scene.Y)
        tune.report(final, checkpoint=tune.Checkpoint.from_directory(str(folder)))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def trial_workdir(*, fresh: bool) -> Path:
    """A scratch folder whose path is the same every time this trial (re)starts on any node.

    Lightning keeps the path of the best checkpoint in its state; a stable path lets a restored
    trial find it again once `_restore` has put the file back.
    """
    from ray import tune

    context = tune.get_context()
    name = f"{context.get_experiment_name()}-{context.get_trial_id()}"
    folder = Path(tempfile.gettempdir()) / "nisca-trials" / name
    if fresh:
        shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _restore(checkpoint: Any, workdir: Path, base: dict[str, Any]) -> str | None:
    """Copy the trial's last checkpoint (if Tune restored one) to local disk; note its epoch."""
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as folder:
        source = Path(folder) / CHECKPOINT_FILE
        if not source.is_file():
            return None  # a final checkpoint: nothing to resume (the trial had finished)
        target = workdir / "resume.ckpt"
        shutil.copyfile(source, target)
        best, best_path = Path(folder) / BEST_FILE, Path(folder) / BEST_PATH_FILE
        if best.is_file() and best_path.is_file():
            original = Path(best_path.read_text().strip())
            original.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(best, original)
    try:
        import torch

        state = torch.load(target, map_location="cpu", weights_only=False)
        base["restored_from_epoch"] = int(state.get("epoch", -1)) + 1
    except Exception:  # noqa: BLE001 - the epoch is informative only; Lightning will report a bad file
        base["restored_from_epoch"] = -1
    return str(target)


def linear_reconstruction_rmse(Y: np.ndarray, abundances: np.ndarray, endmembers: np.ndarray | None) -> float | None:
    """RMSE of Y against the linear reconstruction abundances @ endmembers.T (None without endmembers)."""
    if endmembers is None:
        return None
    residual = np.asarray(Y, dtype=np.float64) - np.asarray(abundances, dtype=np.float64) @ np.asarray(endmembers, dtype=np.float64).T
    return float(np.sqrt(np.mean(residual**2)))


def write_final_checkpoint(folder: Path, result: Any, Y: np.ndarray) -> None:
    """The trial's estimates and model in one folder (Tune persists it as the final checkpoint).

    The per-pixel residual RMSE of the method's own reconstruction (when it has one) is kept too, so the
    report can draw a residual map without re-running the model.
    """
    folder.mkdir(parents=True, exist_ok=True)
    if result.reconstruction is not None:
        residual = np.sqrt(np.mean((np.asarray(Y) - result.reconstruction) ** 2, axis=1))
        np.save(folder / "residual_rmse.npy", residual.astype(np.float32))
    np.save(folder / "abundances.npy", np.asarray(result.abundances, dtype=np.float32))
    if result.endmembers is not None:
        np.save(folder / "endmembers.npy", np.asarray(result.endmembers, dtype=np.float32))
    for name, array in result.extras.items():  # abundances_mode, endmembers_purest: as `nisca fit` writes them
        np.save(folder / f"{name}.npy", np.asarray(array, dtype=np.float32))
    if result.curves:
        np.savez_compressed(folder / "curves.npz", **{k: np.asarray(v) for k, v in result.curves.items()})
    (folder / "metrics.json").write_text(json.dumps(result.metrics, indent=2, default=float))
    (folder / "config.json").write_text(json.dumps(result.config, indent=2, default=str))
    if result.checkpoint_path and Path(result.checkpoint_path).is_file():
        shutil.copyfile(result.checkpoint_path, folder / "selected.ckpt")


def make_trainable(scenes: Mapping[str, Any], settings: TrialSettings, resources: Mapping[str, float]) -> Any:
    """The trainable Tuner gets: scenes in the object store, resources per trial (fractional GPUs allowed)."""
    from ray import tune

    request = {"cpu": float(resources.get("cpu", 1)), "gpu": float(resources.get("gpu", 0))}
    request.update({k: float(v) for k, v in resources.items() if k not in ("cpu", "gpu")})
    return tune.with_resources(tune.with_parameters(nisca_trial, scenes=dict(scenes), settings=settings), request)
