"""VCA + FCLS: vertex component analysis endmembers, fully constrained least squares abundances.

VCA (Nascimento and Bioucas-Dias, IEEE TGRS 2005) follows the authors' reference code: estimate the
SNR from a rank-K fit; above 15 + 10 log10(K) dB project onto the K-dimensional signal subspace and
apply the projective projection (divide by the inner product with the mean), below it project onto
K-1 principal directions of the centred data and append a constant coordinate. Then K times: draw a
random direction orthogonal to the endmembers found so far and take the pixel with the largest
absolute projection. The endmembers are those pixels in the denoised (projected) data.
One deviation: the projective projection assumes every pixel lies on the positive side of the mean
direction (reflectance data do); when some do not (e.g. synthetic mixtures with a zero-mean mixing
matrix), the affine low-SNR projection is used instead, which is exact for noiseless data too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from nisca.baselines.common import as_outputs, require_pixels
from nisca.baselines.fcls import fcls
from nisca.config import BaseConfig
from nisca.data.scene import Scene
from nisca.errors import ConfigError
from nisca.fit import FitContext, MethodOutput


@dataclass(frozen=True)
class VcaConfig(BaseConfig):
    """snr_db: the data's SNR if known (None estimates it, as VCA does); fcls_tol / fcls_max_iter: the
    abundance solver's relative KKT tolerance and iteration bound."""

    snr_db: float | None = None
    fcls_tol: float = 1e-9
    fcls_max_iter: int = 5000

    def validate(self) -> None:
        if not self.fcls_tol > 0:
            raise ConfigError(f"'fcls_tol' in the config for 'vca' must be > 0, got {self.fcls_tol}")
        if self.fcls_max_iter < 1:
            raise ConfigError(f"'fcls_max_iter' in the config for 'vca' must be >= 1, got {self.fcls_max_iter}")


CONFIG = VcaConfig


def estimate_snr(Y: np.ndarray, mean: np.ndarray, projected: np.ndarray) -> float:
    """VCA's SNR estimate (dB) from the data Y (channels, pixels) and its rank-K projection; inf if noiseless."""
    L, N = Y.shape
    K = projected.shape[0]
    power_y = float(np.sum(Y**2)) / N
    power_x = float(np.sum(projected**2)) / N + float(mean @ mean)
    signal = power_x - K / L * power_y
    noise = power_y - power_x
    if noise <= 1e-12 * max(power_y, 1e-300):
        return math.inf
    if signal <= 0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def vca(Y: np.ndarray, K: int, seed: int = 0, snr_db: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """VCA endmembers (channels, K) and the indices (K,) of the pixels they come from. Y: (pixels, channels)."""
    projection = _project(Y, K, snr_db)
    indices = _pick(projection.y, K, np.random.default_rng(seed))
    return projection.denoised[:, indices], indices


def vca_max_volume(Y: np.ndarray, K: int, seed: int = 0, restarts: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """VCA run `restarts` times (the first with `seed` itself) keeping the endmembers whose simplex has the
    largest volume in the data's (K-1)-dimensional principal subspace. VCA's random directions sometimes
    pick two pixels of one class and miss a rare one; keeping the largest simplex is N-FINDR's criterion
    (Winter 1999) applied to VCA's candidates. The projection is computed once and shared by the restarts.
    Used for NISCA's warm start."""
    projection = _project(Y, K, None)
    basis = projection.centred_basis[:, : K - 1]
    seeds = [seed, *np.random.default_rng(seed).integers(0, 2**31 - 1, size=max(restarts, 1) - 1).tolist()]
    best: tuple[float, np.ndarray] | None = None
    for draw in seeds:
        indices = _pick(projection.y, K, np.random.default_rng(int(draw)))
        vertices = basis.T @ (projection.denoised[:, indices] - projection.mean[:, None])  # (K-1, K)
        volume = abs(float(np.linalg.det(vertices[:, 1:] - vertices[:, :1])))
        if best is None or volume > best[0]:
            best = (volume, indices)
    indices = best[1]
    return projection.denoised[:, indices], indices


@dataclass(frozen=True)
class _Projection:
    """VCA's view of the data: y (K, pixels) where pure pixels are extreme points, the denoised data
    (channels, pixels), the mean spectrum and the principal directions of the centred data (channels, K)."""

    y: np.ndarray
    denoised: np.ndarray
    mean: np.ndarray
    centred_basis: np.ndarray


def _project(Y: np.ndarray, K: int, snr_db: float | None) -> _Projection:
    """The projective (high SNR) or affine (low SNR) projection of Nascimento and Bioucas-Dias (2005)."""
    data = np.asarray(Y, dtype=np.float64).T  # (L channels, N pixels), the paper's layout
    L, N = data.shape
    mean = data.mean(axis=1)
    centred = data - mean[:, None]
    U_centred = np.linalg.svd(centred @ centred.T / N)[0][:, :K]
    projected = U_centred.T @ centred
    snr = estimate_snr(data, mean, projected) if snr_db is None else float(snr_db)
    threshold = 15.0 + 10.0 * math.log10(K)

    y = None
    if snr >= threshold:  # high SNR: K-dimensional subspace, then the projective projection
        basis = np.linalg.svd(data @ data.T / N)[0][:, :K]
        x = basis.T @ data
        denoised = basis @ x
        u = x.mean(axis=1)
        inner = u @ x
        # The projective projection needs every pixel on the positive side of the mean direction
        # (true for reflectances); mixtures straddling the origin take the affine branch below.
        if inner.min() > 1e-6 * np.abs(inner).max():
            y = x / inner[None, :]
    if y is None:  # low SNR: K-1 principal directions of the centred data plus a constant
        basis = U_centred[:, : K - 1]
        x = projected[: K - 1]
        denoised = basis @ x + mean[:, None]
        scale = float(np.sqrt((x**2).sum(axis=0)).max())
        y = np.vstack([x, np.full((1, N), scale)])
    return _Projection(y=y, denoised=denoised, mean=mean, centred_basis=U_centred)


def _pick(y: np.ndarray, K: int, rng: np.random.Generator) -> np.ndarray:
    """VCA's K pixel indices: each the extreme of y along a random direction orthogonal to those found."""
    indices = np.zeros(K, dtype=np.int64)
    simplex = np.zeros((K, K))
    simplex[-1, 0] = 1.0
    for i in range(K):
        w = rng.random((K, 1))
        f = w - simplex @ np.linalg.pinv(simplex) @ w
        f /= np.linalg.norm(f)
        v = (f.T @ y).ravel()
        indices[i] = int(np.argmax(np.abs(v)))
        simplex[:, i] = y[:, indices[i]]
    return indices


def run(scene: Scene, config: VcaConfig, context: FitContext) -> MethodOutput:
    """VCA endmembers, FCLS abundances (exactly on the simplex)."""
    K = int(config.latent_dim)
    require_pixels(scene.Y, K, scene.name, "vca")
    endmembers, indices = vca(scene.Y, K, seed=config.seed, snr_db=config.snr_db)
    abundances = fcls(scene.Y, endmembers, tol=config.fcls_tol, max_iter=config.fcls_max_iter)
    return MethodOutput(**as_outputs(abundances, endmembers), extras={"pixel_indices": indices})
