"""The Lightning callback that turns each training epoch into a Tune report with a checkpoint.

Lightning runs the validation loop before `on_train_epoch_end`, so at that point
`trainer.callback_metrics` holds this epoch's `val_loss` and `train_loss`. The callback saves a
full Lightning checkpoint (weights, optimiser, loop state) into a temporary folder and hands it to
`tune.report`, which persists it to the study's storage: ASHA can stop the trial after any epoch,
and a restored or rescheduled trial resumes from the last one (`tune.get_checkpoint()`).
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning.pytorch as pl

CHECKPOINT_FILE = "model.ckpt"
BEST_FILE = "best.ckpt"  # the method's best-so-far checkpoint (its ModelCheckpoint), restored on resume
BEST_PATH_FILE = "best_path.txt"


def epoch_metrics(callback_metrics: Mapping[str, Any]) -> dict[str, float]:
    """The scalar metrics Lightning logged this epoch, as plain floats."""
    out: dict[str, float] = {}
    for key, value in callback_metrics.items():
        try:
            out[key] = float(value)
        except (TypeError, ValueError):
            continue
    return out


class TuneReportCheckpoint(pl.Callback):
    """Report `val_loss`, `train_loss` (and every other logged scalar) with a checkpoint, each epoch.

    `base` is added to every report (e.g. the epoch budget and where the trial resumed from).
    """

    def __init__(self, base: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.base = dict(base or {})
        self.reported_epochs = 0

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        from ray import tune

        metrics = epoch_metrics(trainer.callback_metrics)
        if "val_loss" not in metrics or not math.isfinite(metrics["val_loss"]):
            # No finite validation loss this epoch: nothing for the scheduler to judge yet; a NaN
            # loss is the method's to raise (TrainingDivergedError), never reported as a score.
            return
        metrics.update(self.base)
        metrics.update(epoch=trainer.current_epoch + 1, completed=0)
        with tempfile.TemporaryDirectory(prefix="nisca-ckpt-") as folder:
            trainer.save_checkpoint(str(Path(folder) / CHECKPOINT_FILE))
            _keep_best(trainer, Path(folder))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
        self.reported_epochs += 1


def _keep_best(trainer: pl.Trainer, folder: Path) -> None:
    """Put the method's best-so-far checkpoint beside the resume point, with the path it lives at.

    A resumed Lightning run restores its ModelCheckpoint's `best_model_path`; on another node (or after
    the trial's scratch folder was lost) that file must be put back where the path says.
    """
    best = getattr(trainer.checkpoint_callback, "best_model_path", "") if trainer.checkpoint_callback else ""
    if best and Path(best).is_file():
        shutil.copyfile(best, folder / BEST_FILE)
        (folder / BEST_PATH_FILE).write_text(str(best))
