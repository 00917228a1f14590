"""Scene: the one in-memory form of data every method, metric and study works on.

Y is (pixels, channels) float32. Truth, when present, is kept beside it in the same pixel order:
abundances (pixels, K) on the simplex and endmembers (channels, K); synthetic scenes also keep the
noiseless linear mixture, the mixing matrix and the name of the nonlinearity. Geometry is either an
image (rows, cols; row-major pixel order) or a NIfTI volume (affine, header, volume shape, mask).
Validation happens here, once, so that loaders and generators cannot build an inconsistent scene.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from nisca.errors import DataError

SIMPLEX_TOLERANCE = 1e-3


@dataclass
class Truth:
    """Ground truth of a scene. Every field is optional; shapes are checked against Y."""

    abundances: np.ndarray | None = None  # (pixels, K), rows on the simplex
    endmembers: np.ndarray | None = None  # (channels, K), in data space
    linear_mixture: np.ndarray | None = None  # (pixels, channels): A z before the nonlinearity
    mixing: np.ndarray | None = None  # (channels, K): the linear mixing matrix A
    nonlinearity: str | None = None  # generator name, e.g. "thesis"
    noise_variance: float | None = None  # s2 used by the generator
    label: str = "default"  # which ground-truth version (e.g. Samson's "original" or "misicnet")

    @property
    def n_components(self) -> int | None:
        if self.abundances is not None:
            return int(self.abundances.shape[1])
        if self.endmembers is not None:
            return int(self.endmembers.shape[1])
        if self.mixing is not None:
            return int(self.mixing.shape[1])
        return None


@dataclass
class ImageGeometry:
    """A 2-D image in row-major pixel order: pixel p = r * cols + c."""

    rows: int
    cols: int


@dataclass
class VolumeGeometry:
    """A NIfTI volume: pixels are the voxels inside `mask`, in C order of the 3-D array."""

    affine: np.ndarray  # (4, 4)
    volume_shape: tuple[int, int, int]
    mask: np.ndarray  # bool, volume_shape
    header: Any = None  # nibabel header of the source file (kept for writing outputs)


@dataclass
class Scene:
    """Observations Y (pixels x channels) with optional truth, geometry, axis values and provenance."""

    Y: np.ndarray
    name: str = "scene"
    truth: Truth | None = None
    geometry: ImageGeometry | VolumeGeometry | None = None
    axis: np.ndarray | None = None  # wavelengths or frame times, one value per channel
    axis_name: str | None = None  # e.g. "wavelength_nm", "time_s"
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.Y = validate_observations(self.Y, self.name)
        n_pixels, n_channels = self.Y.shape
        if self.truth is not None:
            _validate_truth(self.truth, n_pixels, n_channels, self.name)
        if isinstance(self.geometry, ImageGeometry):
            if self.geometry.rows * self.geometry.cols != n_pixels:
                raise DataError(
                    f"{self.name}: image geometry {self.geometry.rows} x {self.geometry.cols} "
                    f"does not match {n_pixels} pixels"
                )
        elif isinstance(self.geometry, VolumeGeometry):
            mask = np.asarray(self.geometry.mask, dtype=bool)
            if mask.shape != tuple(self.geometry.volume_shape):
                raise DataError(
                    f"{self.name}: mask shape {mask.shape} differs from the volume shape "
                    f"{tuple(self.geometry.volume_shape)}"
                )
            if int(mask.sum()) != n_pixels:
                raise DataError(f"{self.name}: mask has {int(mask.sum())} voxels but Y has {n_pixels} rows")
            self.geometry.mask = mask
        if self.axis is not None:
            self.axis = np.asarray(self.axis, dtype=np.float64).reshape(-1)
            if self.axis.shape[0] != n_channels:
                raise DataError(
                    f"{self.name}: {self.axis.shape[0]} axis values for {n_channels} channels"
                )

    @property
    def n_pixels(self) -> int:
        return int(self.Y.shape[0])

    @property
    def n_channels(self) -> int:
        return int(self.Y.shape[1])

    def with_truth(self, truth: Truth | None) -> Scene:
        """A copy of this scene with another ground truth (e.g. Samson's second version)."""
        return replace(self, truth=truth)


def validate_observations(Y: Any, name: str = "data") -> np.ndarray:
    """Return Y as a C-contiguous float32 (pixels, channels) array, or raise a DataError."""
    array = np.asarray(Y)
    if array.ndim != 2:
        raise DataError(f"{name}: Y must be 2-D (pixels x channels), got shape {array.shape}")
    if array.shape[0] < 2 or array.shape[1] < 1:
        raise DataError(f"{name}: Y of shape {array.shape} has too few pixels or channels")
    if not np.issubdtype(array.dtype, np.number):
        raise DataError(f"{name}: Y must be numeric, got dtype {array.dtype}")
    array = np.ascontiguousarray(array, dtype=np.float32)
    bad = ~np.isfinite(array)
    if bad.any():
        n_nan = int(np.isnan(array).sum())
        raise DataError(
            f"{name}: Y contains {n_nan} NaN and {int(bad.sum()) - n_nan} infinite values "
            f"(first at pixel {int(np.argwhere(bad)[0][0])}); remove or impute them first"
        )
    return array


def check_latent_dim(K: int, n_channels: int, name: str = "data") -> None:
    """Refuse a latent dimension the data cannot support: 2 <= K <= channels."""
    if not isinstance(K, (int, np.integer)) or isinstance(K, bool):
        raise DataError(f"{name}: the latent dimension K must be an integer, got {K!r}")
    if K < 2:
        raise DataError(f"{name}: the latent dimension K must be at least 2, got {K}")
    if K > n_channels:
        raise DataError(
            f"{name}: the latent dimension K = {K} is larger than the {n_channels} channels of the data"
        )


def _validate_truth(truth: Truth, n_pixels: int, n_channels: int, name: str) -> None:
    K = truth.n_components
    if truth.abundances is not None:
        A = np.asarray(truth.abundances, dtype=np.float32)
        if A.ndim != 2 or A.shape[0] != n_pixels:
            raise DataError(
                f"{name}: true abundances must be (pixels={n_pixels}, K), got shape {A.shape}"
            )
        if not np.isfinite(A).all():
            raise DataError(f"{name}: true abundances contain NaN or Inf")
        if (A < -SIMPLEX_TOLERANCE).any() or np.abs(A.sum(axis=1) - 1).max() > SIMPLEX_TOLERANCE:
            raise DataError(
                f"{name}: true abundances are off the simplex (min {A.min():.3g}, "
                f"row sums in [{A.sum(1).min():.4g}, {A.sum(1).max():.4g}])"
            )
        truth.abundances = A
    for label, value, shape in (
        ("endmembers", truth.endmembers, (n_channels, K)),
        ("mixing matrix", truth.mixing, (n_channels, K)),
        ("linear mixture", truth.linear_mixture, (n_pixels, n_channels)),
    ):
        if value is None:
            continue
        array = np.asarray(value, dtype=np.float32)
        if array.shape != shape:
            raise DataError(f"{name}: true {label} must have shape {shape}, got {array.shape}")
        if not np.isfinite(array).all():
            raise DataError(f"{name}: true {label} contain NaN or Inf")
        setattr(truth, {"endmembers": "endmembers", "mixing matrix": "mixing",
                        "linear mixture": "linear_mixture"}[label], array)
