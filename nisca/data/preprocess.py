"""Explicit, recorded preprocessing of a Scene. Each function returns a new Scene and appends what it
did to `provenance["preprocessing"]`; none adds noise.

How truth follows: abundances never change. Endmembers live in data space (a pure pixel's spectrum), so
the band-wise scalings and band selection map them exactly as they map Y, and a global scale also scales
the noise variance. Dividing by `y_scale` leaves the truth as it is: by the file contract the truth
endmembers are already on the scale Y / y_scale. The generator's pre-nonlinearity quantities
(linear mixture, mixing matrix) are unchanged by scalings and follow band selection.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np

from nisca.data.scene import Scene, Truth
from nisca.errors import DataError


def _derived(scene: Scene, Y: np.ndarray, truth: Truth | None, step: dict[str, Any], **changes: Any) -> Scene:
    provenance = copy.deepcopy(scene.provenance)
    provenance["preprocessing"] = list(provenance.get("preprocessing", [])) + [step]
    provenance.update(changes.pop("provenance_updates", {}))
    return Scene(Y=Y, name=scene.name, truth=truth, geometry=copy.deepcopy(scene.geometry),
                 axis=changes.get("axis", scene.axis), axis_name=scene.axis_name, provenance=provenance)


def _scaled_truth(truth: Truth | None, scale: np.ndarray | float, shift: np.ndarray | float = 0.0,
                  noise_factor: float | None = None) -> Truth | None:
    """Truth with endmembers mapped like the data: (E - shift) / scale, per band."""
    if truth is None:
        return None
    out = copy.deepcopy(truth)
    if out.endmembers is not None:
        out.endmembers = ((out.endmembers - np.reshape(shift, (-1, 1))) / np.reshape(scale, (-1, 1))).astype(np.float32)
    if out.noise_variance is not None:
        out.noise_variance = None if noise_factor is None else float(out.noise_variance * noise_factor)
    return out


def scale_by_y_scale(scene: Scene) -> Scene:
    """Y / y_scale, which puts Y on the scale of the file's reference endmembers; y_scale becomes 1."""
    y_scale = float(scene.provenance.get("y_scale", 1.0))
    if not np.isfinite(y_scale) or y_scale <= 0:
        raise DataError(f"{scene.name}: y_scale must be a positive number, got {y_scale}")
    truth = copy.deepcopy(scene.truth)
    if truth is not None and truth.noise_variance is not None:
        truth.noise_variance = float(truth.noise_variance / y_scale**2)
    return _derived(scene, scene.Y / np.float32(y_scale), truth, {"op": "scale_by_y_scale", "y_scale": y_scale},
                    provenance_updates={"y_scale": 1.0})


def normalize_global(scene: Scene) -> Scene:
    """Y / max|Y| over the whole scene (the benchmarks' usual 'divide by the maximum')."""
    peak = float(np.abs(scene.Y).max())
    if peak == 0:
        raise DataError(f"{scene.name}: Y is all zero; it cannot be normalised")
    truth = _scaled_truth(scene.truth, peak, noise_factor=1.0 / peak**2)
    return _derived(scene, scene.Y / np.float32(peak), truth, {"op": "normalize_global", "divided_by": peak},
                    provenance_updates={"y_scale": float(scene.provenance.get("y_scale", 1.0)) / peak})


def normalize_bands_max(scene: Scene) -> Scene:
    """Each band divided by its maximum |Y| (all-zero bands are left as they are)."""
    peak = np.abs(scene.Y).max(axis=0).astype(np.float64)
    peak[peak == 0] = 1.0
    truth = _scaled_truth(scene.truth, peak)
    return _derived(scene, (scene.Y / peak).astype(np.float32), truth,
                    {"op": "normalize_bands_max", "divided_by": peak.tolist()})


def standardize_bands(scene: Scene) -> Scene:
    """Each band to zero mean and unit standard deviation (constant bands: centred only)."""
    mean = scene.Y.mean(axis=0, dtype=np.float64)
    std = scene.Y.std(axis=0, dtype=np.float64)
    std[std == 0] = 1.0
    truth = _scaled_truth(scene.truth, std, mean)
    return _derived(scene, ((scene.Y - mean) / std).astype(np.float32), truth,
                    {"op": "standardize_bands", "mean": mean.tolist(), "std": std.tolist()})


def select_bands(scene: Scene, bands: Sequence[int] | np.ndarray) -> Scene:
    """Keep the bands given as 0-based indices or as a boolean mask over the channels."""
    index = np.asarray(bands)
    if index.dtype == bool:
        if index.shape != (scene.n_channels,):
            raise DataError(f"{scene.name}: a band mask must have {scene.n_channels} entries, got {index.shape}")
        index = np.flatnonzero(index)
    if index.ndim != 1 or index.size == 0 or index.dtype.kind not in "iu":
        raise DataError(f"{scene.name}: give at least one band as integer indices or a boolean mask")
    if index.min() < 0 or index.max() >= scene.n_channels:
        raise DataError(f"{scene.name}: band indices must lie in 0..{scene.n_channels - 1}, "
                        f"got {index.min()}..{index.max()}")
    truth = copy.deepcopy(scene.truth)
    if truth is not None:
        for field_name, axis in (("endmembers", 0), ("mixing", 0), ("linear_mixture", 1)):
            value = getattr(truth, field_name)
            if value is not None:
                setattr(truth, field_name, np.take(value, index, axis=axis))
    axis = None if scene.axis is None else scene.axis[index]
    updates: dict[str, Any] = {}
    if "band_indices" in scene.provenance:
        updates["band_indices"] = [scene.provenance["band_indices"][i] for i in index]
    return _derived(scene, scene.Y[:, index], truth, {"op": "select_bands", "bands": index.tolist()},
                    axis=axis, provenance_updates=updates)


PREPROCESSING = {
    "y_scale": scale_by_y_scale,
    "global_max": normalize_global,
    "band_max": normalize_bands_max,
    "band_standardize": standardize_bands,
}
