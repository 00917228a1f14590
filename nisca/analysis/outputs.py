"""What a trial estimated (abundances, endmembers, learned curves) and the scene it was fitted to.

The trainable saves its estimates with its final checkpoint, as plain arrays that need no model code
to read (re-running nothing):

    abundances.npy      (pixels, K) float32, rows on the simplex          required
    endmembers.npy      (channels, K) float32                             when the method has them
    curves.npz          inputs, outputs: (points, channels) learned f_n   trained nonlinear methods
    reconstruction.npy  (pixels, channels) decoded estimate of Y          optional (residual map)
    residual_rmse.npy   (pixels,) per-pixel RMSE of Y - reconstruction    optional, smaller alternative

The files are looked for in the trial's checkpoints (newest first), then in an `outputs/` folder of
the trial. The scene (for ground truth, geometry and wavelengths) is rebuilt from the description the
study runner recorded in `nisca_study/data.json` (kept only when its SHA-256 matches the recorded
one), else read from a scene file in the experiment folder (`scene.npz` / `scene.h5`), or is whatever
`scene_loader` returns. Ground truth is only ever used to display and score, never to choose.
"""

from __future__ import annotations

import io
import posixpath
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from nisca.analysis.load import Study
from nisca.errors import DataError

ARRAY_FILES = ("abundances.npy", "endmembers.npy", "reconstruction.npy", "residual_rmse.npy")
CURVES_FILE = "curves.npz"
SCENE_FILES = ("scene.npz", "scene.h5")
MODEL_FILES = ("selected.ckpt", "model.ckpt")  # Lightning checkpoints, in order of preference

SceneLoader = Callable[[Study, Mapping[str, Any]], Any]


@dataclass
class TrialOutputs:
    """Estimates of one trial, and the scene (with truth when it has one) for display and scoring."""

    trial_id: str
    source: str  # the folder the arrays were read from
    abundances: np.ndarray  # (pixels, K)
    endmembers: np.ndarray | None = None  # (channels, K)
    curves: dict[str, np.ndarray] | None = None  # {"inputs": (M, N), "outputs": (M, N)}
    reconstruction: np.ndarray | None = None  # (pixels, channels)
    residual_rmse: np.ndarray | None = None  # (pixels,)
    scene: Any = None  # nisca.data.scene.Scene or None

    @property
    def truth(self) -> Any:
        return None if self.scene is None else self.scene.truth

    def residual(self) -> tuple[np.ndarray, str] | None:
        """Per-pixel RMSE of Y minus the reconstruction, and what reconstruction it is.

        The saved map, else recomputed from a saved reconstruction, else (for a linear method: no
        learned curves) from abundances @ endmembers.T; None for a nonlinear method that saved neither.
        """
        if self.residual_rmse is not None:
            return np.asarray(self.residual_rmse).reshape(-1), "the reconstruction"
        if self.scene is None:
            return None
        Y = np.asarray(self.scene.Y, dtype=np.float64)
        if self.reconstruction is not None:
            reconstruction, what = np.asarray(self.reconstruction, dtype=np.float64), "the reconstruction"
        elif self.endmembers is not None and not self.curves:
            reconstruction = np.asarray(self.abundances, dtype=np.float64) @ np.asarray(self.endmembers, dtype=np.float64).T
            what = "abundances x endmembers (linear)"
        else:
            return None
        if reconstruction.shape != Y.shape:
            return None
        return np.sqrt(np.mean((Y - reconstruction) ** 2, axis=1)), what


def result_for(study: Study, trial_id: str) -> Any:
    """The ray.tune.Result of one trial of a study."""
    for result in study.result_grid:
        if str((result.metrics or {}).get("trial_id")) == trial_id or posixpath.basename(str(result.path)).find(
            f"_{trial_id}_"
        ) >= 0:
            return result
    raise DataError(f"{study.path}: no trial {trial_id!r} in this experiment")


def load_trial_outputs(
    study: Study, trial_id: str, *, scene_loader: SceneLoader | None = None
) -> TrialOutputs | None:
    """Read a trial's saved estimates (None when it saved none) and its scene when one can be found."""
    result = result_for(study, trial_id)
    fs = result.filesystem
    for folder in _candidate_folders(fs, str(result.path)):
        if not _exists(fs, posixpath.join(folder, "abundances.npy")):
            continue
        arrays = {name[:-4]: _read_npy(fs, posixpath.join(folder, name)) for name in ARRAY_FILES
                  if _exists(fs, posixpath.join(folder, name))}
        curves = None
        if _exists(fs, posixpath.join(folder, CURVES_FILE)):
            with np.load(io.BytesIO(_read_bytes(fs, posixpath.join(folder, CURVES_FILE)))) as data:
                curves = {key: np.asarray(data[key]) for key in data.files}
        loader = scene_loader or default_scene_loader
        scene = loader(study, {**(result.config or {}), "_trial_output_folder": folder})
        return TrialOutputs(
            trial_id=trial_id,
            source=folder,
            abundances=np.asarray(arrays["abundances"]),
            endmembers=arrays.get("endmembers"),
            curves=curves,
            reconstruction=arrays.get("reconstruction"),
            residual_rmse=arrays.get("residual_rmse"),
            scene=scene if _scene_matches(scene, arrays["abundances"]) else None,
        )
    return None


def load_trial_scene(study: Study, trial_id: str, *, scene_loader: SceneLoader | None = None) -> Any:
    """The scene a trial was fitted to (with its truth when known), or None if it cannot be had here."""
    result = result_for(study, trial_id)
    return (scene_loader or default_scene_loader)(study, dict(result.config or {}))


def model_checkpoint(study: Study, trial_id: str, local_dir: str | None = None) -> str | None:
    """A local path to the trial's trained model (`selected.ckpt`: the checkpoint the fit selected on
    validation loss, saved with the final estimates; else the newest per-epoch `model.ckpt`).

    Remote checkpoints (gs://) are copied into `local_dir` (a temporary folder by default). None when
    the trial saved no model (classic methods).
    """
    import tempfile

    import pyarrow.fs

    result = result_for(study, trial_id)
    fs = result.filesystem
    for name in MODEL_FILES:
        for folder in _candidate_folders(fs, str(result.path)):
            path = posixpath.join(folder, name)
            if not _exists(fs, path):
                continue
            if isinstance(fs, pyarrow.fs.LocalFileSystem):
                return path
            target = posixpath.join(local_dir or tempfile.mkdtemp(prefix="nisca-model-"), name)
            with open(target, "wb") as handle:
                handle.write(_read_bytes(fs, path))
            return target
    return None


def default_scene_loader(study: Study, config: Mapping[str, Any]) -> Any:
    """The scene a trial was fitted to, for display: rebuilt from the study's recorded description
    (nisca_study/data.json) and kept only when its checksum matches the recorded one; else a scene
    file saved with the trial's outputs or in the experiment folder; else None."""
    scene = _rebuild_study_scene(study, config)
    if scene is not None:
        return scene
    import pyarrow.fs

    from nisca.data.io import load_scene

    fs, root = (pyarrow.fs.FileSystem.from_uri(study.path) if "://" in study.path
                else (pyarrow.fs.LocalFileSystem(), study.path))
    places = [config.get("_trial_output_folder"), root]
    for place in [p for p in places if p]:
        for name in SCENE_FILES:
            path = posixpath.join(str(place), name)
            if not _exists(fs, path):
                continue
            if isinstance(fs, pyarrow.fs.LocalFileSystem):
                return load_scene(path)
            return _load_remote_scene(fs, path, load_scene)
    return None


def _rebuild_study_scene(study: Study, config: Mapping[str, Any]) -> Any:
    """Rebuild a study scene from its description; None if it cannot be rebuilt here or differs."""
    name = config.get("scene")
    record = study.scenes.get(str(name)) if name is not None else None
    if not isinstance(record, Mapping) or "description" not in record:
        return None
    from nisca.errors import NiscaError
    from nisca.tune.spec import build_scene, scene_checksum

    try:
        scene = build_scene(str(name), record["description"])
    except (NiscaError, OSError):
        return None  # e.g. the data file is not on this machine: show the estimates without truth
    if record.get("sha256") and scene_checksum(scene) != record["sha256"]:
        return None  # not the data the study ran on (the generator or the file changed)
    K = config.get("latent_dim")
    if scene.truth is not None and K is not None and scene.truth.n_components not in (None, int(K)):
        scene = scene.with_truth(None)  # the trial fitted another K than the truth has
    return scene


def _load_remote_scene(fs: Any, path: str, load_scene: Callable[[str], Any]) -> Any:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        local = posixpath.join(folder, posixpath.basename(path))
        with open(local, "wb") as handle:
            handle.write(_read_bytes(fs, path))
        return load_scene(local)


def _candidate_folders(fs: Any, trial_path: str) -> list[str]:
    """The trial's checkpoint folders, newest first, then its outputs/ folder and the trial folder."""
    import pyarrow.fs

    entries = fs.get_file_info(pyarrow.fs.FileSelector(trial_path, allow_not_found=True))
    checkpoints = sorted(
        (e.path for e in entries if e.type == pyarrow.fs.FileType.Directory
         and posixpath.basename(e.path).startswith("checkpoint_")),
        reverse=True,
    )
    return checkpoints + [posixpath.join(trial_path, "outputs"), trial_path]


def _scene_matches(scene: Any, abundances: np.ndarray) -> bool:
    return scene is not None and int(scene.Y.shape[0]) == int(np.asarray(abundances).shape[0])


def _exists(fs: Any, path: str) -> bool:
    import pyarrow.fs

    return fs.get_file_info(path).type == pyarrow.fs.FileType.File


def _read_bytes(fs: Any, path: str) -> bytes:
    with fs.open_input_stream(path) as stream:
        return stream.readall()


def _read_npy(fs: Any, path: str) -> np.ndarray:
    try:
        return np.load(io.BytesIO(_read_bytes(fs, path)), allow_pickle=False)
    except ValueError as error:
        raise DataError(f"{path}: not a readable .npy array ({error})") from None
