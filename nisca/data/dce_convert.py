"""Signal -> concentration for DCE-MRI scenes: unmix where tissue curves mix linearly.

In fast exchange the voxel concentration is the fraction-weighted sum of the class concentrations,
while the SPGR signal is a nonlinear function of it. When T10 and the sequence (flip angle, TR) are
known, `signal_scene_to_concentration` inverts the signal equation voxel by voxel (nisca.data.dce):
M0 from the pre-contrast frames, R1(t) from the signal, C = (R1 - 1/T10) / r1. The result is a new
Scene (same geometry, axis and truth fractions) whose provenance records the conversion.

Sequence parameters not given as arguments are read from the BIDS sidecar next to the NIfTI file
(`FlipAngle` in degrees, `RepetitionTimeExcitation` in seconds, optional `BaselineFrames`, `T10_s`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from nisca.data import dce
from nisca.data.scene import Scene, Truth, VolumeGeometry
from nisca.errors import DataError


@dataclass(frozen=True)
class SequenceParameters:
    """What a BIDS sidecar says about a DCE acquisition; None where the sidecar is silent."""

    flip_angle_deg: float | None = None
    tr_s: float | None = None
    n_baseline: int | None = None
    t10_s: float | None = None
    r1: float | None = None
    source: str | None = None  # the sidecar file, or None when there is none


def sidecar_path(nifti_path: str | Path) -> Path:
    """The BIDS sidecar of a NIfTI file: the same name with `.json` instead of `.nii[.gz]`."""
    path = Path(nifti_path)
    name = path.name
    for suffix in (".nii.gz", ".nii", ".json"):
        if name.lower().endswith(suffix):
            return path.with_name(name[: -len(suffix)] + ".json")
    return path.with_suffix(".json")


def _positive(value: Any, key: str, where: Path) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise DataError(f"{where}: {key} must be a number, got {value!r}") from None
    if not np.isfinite(number) or number <= 0:
        raise DataError(f"{where}: {key} must be positive, got {value!r}")
    return number


def sequence_from_sidecar(path: str | Path) -> SequenceParameters:
    """Flip angle (deg), TR (s), baseline frames, T10 (s) and r1 from the sidecar of `path` (a NIfTI or JSON).

    A missing sidecar gives all None (the caller decides whether that is an error); an unreadable one,
    or a non-positive value, is a DataError naming the file. TR written in ms by mistake (> 1 s) is refused.
    """
    sidecar = sidecar_path(path)
    if not sidecar.is_file():
        return SequenceParameters()
    try:
        data = json.loads(sidecar.read_text())
    except (OSError, ValueError) as error:
        raise DataError(f"{sidecar}: cannot read the JSON sidecar ({error})") from None
    if not isinstance(data, dict):
        raise DataError(f"{sidecar}: a BIDS sidecar must be a JSON object")
    tr = _positive(data.get("RepetitionTimeExcitation"), "RepetitionTimeExcitation", sidecar)
    if tr is not None and tr > 1.0:
        raise DataError(f"{sidecar}: RepetitionTimeExcitation = {tr} s is implausible for SPGR; BIDS wants seconds")
    baseline = _positive(data.get("BaselineFrames"), "BaselineFrames", sidecar)
    return SequenceParameters(
        flip_angle_deg=_positive(data.get("FlipAngle"), "FlipAngle", sidecar),
        tr_s=tr,
        n_baseline=None if baseline is None else int(baseline),
        t10_s=_positive(data.get("T10_s"), "T10_s", sidecar),
        r1=_positive(data.get("r1_per_s_per_mM"), "r1_per_s_per_mM", sidecar),
        source=str(sidecar),
    )


def require_frame_times(scene: Scene) -> np.ndarray:
    """The frame times (s) of a DCE scene, or a DataError: a 4-D file whose 4th axis is not time is refused.

    nisca.data.io takes frame times from the sidecar's VolumeTiming or from pixdim[4] with a time unit;
    a 4-D NIfTI with neither (pixdim[4] = 0, no sidecar) loads with no axis, which DCE steps cannot use.
    """
    if scene.axis_name != "time_s" or scene.axis is None:
        where = scene.provenance.get("file", scene.name)
        raise DataError(f"{where}: the 4th axis is not time (no VolumeTiming in a sidecar and pixdim[4] = 0 or "
                        "no time unit); DCE-MRI needs frame times in seconds")
    times = np.asarray(scene.axis, dtype=np.float64)
    if times.size > 1 and np.any(np.diff(times) <= 0):
        raise DataError(f"{scene.provenance.get('file', scene.name)}: frame times must be strictly increasing")
    return times


def _voxel_t10(t10_s: Any, scene: Scene) -> tuple[np.ndarray | float, str]:
    """T10 as a scalar or one value per pixel of `scene`, from a number, an array or a NIfTI file."""
    if isinstance(t10_s, (str, Path)):
        import nibabel as nib

        path = Path(t10_s)
        if not path.is_file():
            raise DataError(f"{path}: T10 map not found")
        try:
            values = np.asarray(nib.load(str(path)).dataobj, dtype=np.float64)
        except (OSError, ValueError, EOFError, nib.filebasedimages.ImageFileError) as error:
            raise DataError(f"{path}: cannot read the T10 map ({error})") from None
        description = str(path.resolve())
    elif np.isscalar(t10_s) or np.ndim(t10_s) == 0:
        value = float(t10_s)
        if not np.isfinite(value) or value <= 0:
            raise DataError(f"{scene.name}: T10 must be a positive number of seconds, got {t10_s!r}")
        return value, f"{value:g} s"
    else:
        values = np.asarray(t10_s, dtype=np.float64)
        description = f"array {values.shape}"
    geometry = scene.geometry
    if values.ndim >= 3 and isinstance(geometry, VolumeGeometry):
        values = values.reshape(values.shape[:3]) if values.ndim == 4 and values.shape[3] == 1 else values
        if values.shape != tuple(geometry.volume_shape):
            raise DataError(f"{scene.name}: T10 map {description} has shape {values.shape}, the volume "
                            f"is {tuple(geometry.volume_shape)}")
        values = values[geometry.mask]
    values = values.reshape(-1)
    if values.shape[0] != scene.n_pixels:
        raise DataError(f"{scene.name}: T10 ({description}) has {values.shape[0]} values for {scene.n_pixels} voxels")
    bad = ~(np.isfinite(values) & (values > 0))
    if bad.any():
        raise DataError(f"{scene.name}: T10 ({description}) is zero, negative or not finite in {int(bad.sum())} voxels "
                        "inside the mask")
    return values, description


def signal_scene_to_concentration(
    scene: Scene,
    *,
    t10_s: float | np.ndarray | str | Path | None = None,
    flip_angle_deg: float | None = None,
    tr_s: float | None = None,
    r1: float | None = 4.5,
    n_baseline: int | None = None,
    clip: bool = False,
) -> Scene:
    """The scene with every voxel's SPGR signal curve converted to concentration (mM).

    `t10_s`: a scalar (s), one value per voxel (pixels,), a volume (x, y, z) or a NIfTI file of it.
    Parameters left as None come from the BIDS sidecar next to the scene's source file (FlipAngle,
    RepetitionTimeExcitation, BaselineFrames, T10_s, r1_per_s_per_mM); any still missing is a
    DataError naming it. M0 is estimated per voxel from the first `n_baseline` frames. Signals the
    SPGR equation cannot produce (negative, or above M0 sin FA) raise a DataError unless `clip`.
    The truth keeps its fractions; its endmembers become the pure-class concentration curves when a
    scalar T10 makes that well defined, else they are dropped.
    """
    require_frame_times(scene)
    source = scene.provenance.get("file")
    sidecar = sequence_from_sidecar(source) if source else SequenceParameters()
    flip = flip_angle_deg if flip_angle_deg is not None else sidecar.flip_angle_deg
    tr = tr_s if tr_s is not None else sidecar.tr_s
    base = n_baseline if n_baseline is not None else sidecar.n_baseline
    relaxivity = r1 if r1 is not None else sidecar.r1
    t10 = t10_s if t10_s is not None else sidecar.t10_s
    where = sidecar.source or (source or scene.name)
    missing = [name for name, value in (("flip angle (FlipAngle)", flip), ("TR (RepetitionTimeExcitation)", tr),
                                        ("baseline frames (BaselineFrames)", base), ("T10", t10), ("r1", relaxivity))
               if value is None]
    if missing:
        raise DataError(f"{scene.name}: signal-to-concentration needs {', '.join(missing)}; give them as arguments "
                        f"or in the BIDS sidecar (looked at {sidecar_path(source) if source else 'no file'})")
    for name, value in (("flip angle", flip), ("TR", tr), ("r1", relaxivity)):
        if not np.isfinite(value) or value <= 0:
            raise DataError(f"{scene.name}: {name} must be positive, got {value!r}")
    if not 0 < flip < 180:
        raise DataError(f"{scene.name}: flip angle {flip} deg is outside (0, 180)")
    if not 1 <= int(base) < scene.n_channels:
        raise DataError(f"{scene.name}: n_baseline must be in [1, {scene.n_channels - 1}] frames, got {base}")
    t10_values, t10_text = _voxel_t10(t10, scene)

    signal = scene.Y.astype(np.float64)
    baseline_mean = signal[:, : int(base)].mean(axis=1)
    if np.any(baseline_mean <= 0):
        raise DataError(f"{scene.name}: {int((baseline_mean <= 0).sum())} voxels have a zero or negative "
                        f"pre-contrast signal (first {base} frames); no M0 can be estimated there; mask them out")
    try:
        conc = dce.signal_to_concentration(signal, t10_values, float(relaxivity), float(flip), float(tr),
                                           n_baseline=int(base), clip=clip)
    except DataError as error:
        raise DataError(f"{scene.name} ({where}): {error}") from None

    record = {
        "step": "signal_to_concentration",
        "function": "nisca.data.dce_convert.signal_scene_to_concentration",
        "t10_s": t10_text, "flip_angle_deg": float(flip), "tr_s": float(tr), "r1_per_s_per_mM": float(relaxivity),
        "n_baseline": int(base), "m0": "estimated per voxel from the baseline frames", "clip": bool(clip),
        "sequence_source": sidecar.source or "arguments",
    }
    provenance = dict(scene.provenance)
    provenance["preprocessing"] = [*provenance.get("preprocessing", []), record]
    provenance["units"] = "mM"
    truth = _concentration_truth(scene.truth, t10_values, float(relaxivity), float(flip), float(tr), int(base))
    return replace(scene, Y=conc.astype(np.float32), name=f"{scene.name}_concentration", truth=truth,
                   provenance=provenance)


def _concentration_truth(truth: Truth | None, t10: np.ndarray | float, r1: float, flip: float, tr: float,
                         n_baseline: int) -> Truth | None:
    """Fractions kept; endmember signal curves converted with a scalar T10, otherwise dropped."""
    if truth is None:
        return None
    endmembers = None
    if truth.endmembers is not None and np.ndim(t10) == 0:
        curves = np.asarray(truth.endmembers, dtype=np.float64).T  # (K, T)
        try:
            endmembers = dce.signal_to_concentration(curves, t10, r1, flip, tr, n_baseline=n_baseline).T
        except DataError:
            endmembers = None
    return Truth(abundances=truth.abundances, endmembers=endmembers, nonlinearity=None,
                 noise_variance=None, label=f"{truth.label}-concentration")
