"""Semi-real Urban: Urban's ground-truth endmembers E (162 bands x K) and abundance maps (307 x 307 x K)
turned into a full scene Y = f(E A) + noise with a chosen nonlinearity and SNR.

Scaling: E is reflectance (maxima 0.3-0.6), far from the range where the generators' nonlinearities
bend. The linear mixture E A is therefore standardised per band over the scene's pixels before f:
    z = (E A - mu) / sd  =  A^T M^T  with  M = (E - mu) / sd,
which is exact because every abundance vector sums to one. Truth keeps M as `mixing`, z as
`linear_mixture`, f(M) as `endmembers` (the pure-pixel spectra in data space), and mu, sd and the
reflectance E in the provenance, so E = M * sd + mu can be recovered.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from nisca.data import io
from nisca.data.scene import ImageGeometry, Scene, Truth
from nisca.data.synthetic import add_noise, apply_nonlinearity
from nisca.errors import DataError

URBAN_SHAPE = (307, 307)
LATENT_DIMS = (4, 5, 6)
GROUND_TRUTH_FILE = "Urban_groundtruth.npz"


def default_ground_truth() -> Path | None:
    """Urban ground truth: the catalog cache (`nisca data fetch/import urban`), else the shared benchmark
    folder ($NISCA_SHARED_DATA or ../shared/data beside the repository)."""
    from nisca.data.catalog import available_scene

    cached = available_scene("urban")
    if cached is not None:
        return cached
    shared = os.environ.get("NISCA_SHARED_DATA")
    roots = [Path(shared)] if shared else []
    roots.append(Path(__file__).resolve().parents[3] / "shared" / "data")
    for root in roots:
        candidate = root / "hyperspectral" / GROUND_TRUTH_FILE
        if candidate.is_file():
            return candidate
    return None


def build_semireal_urban(
    latent_dim: int = 4,
    snr_db: float | None = 30.0,
    nonlinearity: str = "thesis",
    seed: int = 0,
    *,
    crop: tuple[int, int] | None = None,
    offset: tuple[int, int] = (0, 0),
    ground_truth: str | Path | None = None,
) -> Scene:
    """Y = f(standardised E A) + noise on Urban's geometry (or a crop of rows x cols at `offset`)."""
    if latent_dim not in LATENT_DIMS or isinstance(latent_dim, bool):
        raise DataError(f"semi-real Urban: latent_dim must be one of {LATENT_DIMS}, got {latent_dim!r}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise DataError(f"semi-real Urban: seed must be a non-negative integer, got {seed!r}")
    path = Path(ground_truth) if ground_truth is not None else default_ground_truth()
    if path is None or not path.is_file():
        raise DataError(
            f"Urban ground truth not found{f' at {path}' if path is not None else ''}: run `nisca data fetch urban` "
            "(or download end4/5/6_groundTruth.mat and `nisca data import urban FILE ...`), or point to "
            f"{GROUND_TRUTH_FILE} from the project's shared benchmark folder (shared/data/hyperspectral/)"
        )
    truth = io.load_ground_truth(path, str(latent_dim))
    if truth.abundances is None or truth.endmembers is None:
        raise DataError(f"{path}: ground truth {latent_dim} lacks endmembers or abundances")
    rows, cols = io.image_shape(path) or URBAN_SHAPE
    abundances = truth.abundances.astype(np.float64).reshape(rows, cols, latent_dim)
    if crop is not None:
        (height, width), (row0, col0) = (int(c) for c in crop), (int(o) for o in offset)
        if height < 1 or width < 1 or row0 < 0 or col0 < 0 or row0 + height > rows or col0 + width > cols:
            raise DataError(f"semi-real Urban: crop {height} x {width} at ({row0}, {col0}) does not fit "
                            f"the {rows} x {cols} image")
        abundances = abundances[row0:row0 + height, col0:col0 + width]
        rows, cols = height, width
    abundances = abundances.reshape(rows * cols, latent_dim)
    reflectance = truth.endmembers.astype(np.float64)  # (bands, K)

    linear_reflectance = abundances @ reflectance.T
    mu = linear_reflectance.mean(axis=0)
    sd = linear_reflectance.std(axis=0)
    sd[sd == 0] = 1.0
    mixing = (reflectance - mu[:, None]) / sd[:, None]
    linear = abundances @ mixing.T

    rng = np.random.default_rng(int(seed))
    mapped = apply_nonlinearity(nonlinearity, np.vstack([mixing.T, linear]), rng)  # one draw of f for both
    endmembers, clean = mapped[:latent_dim].T, mapped[latent_dim:]
    Y, noise_variances = add_noise(clean, snr_db, rng)
    noise_variance = float(noise_variances[0])  # white: one variance for every band

    provenance: dict[str, Any] = {
        "generator": "nisca.data.semireal.build_semireal_urban",
        "ground_truth_file": str(path.resolve()),
        "ground_truth_sha256": io.sha256sum(path),
        "ground_truth_version": str(latent_dim),
        "latent_dim": int(latent_dim),
        "snr_db": None if snr_db is None else float(snr_db),
        "nonlinearity": nonlinearity,
        "seed": int(seed),
        "crop": None if crop is None else {"rows": rows, "cols": cols, "row0": offset[0], "col0": offset[1]},
        "scaling": "per-band standardisation of E A over the scene's pixels before f",
        "band_mean": mu.tolist(),
        "band_std": sd.tolist(),
        "reflectance_endmembers": reflectance.tolist(),
        "noise_variance": noise_variance,
        "y_scale": 1.0,
        "preprocessing": [],
    }
    names = io.ground_truth_names(path, str(latent_dim))
    if names:
        provenance["endmember_names"] = names
    snr_label = "inf" if snr_db is None else f"{float(snr_db):g}"
    return Scene(
        Y=Y,
        name=f"urban-semireal-K{latent_dim}-{nonlinearity}-snr{snr_label}-seed{seed}",
        truth=Truth(abundances=abundances, endmembers=endmembers, linear_mixture=linear, mixing=mixing,
                    nonlinearity=nonlinearity, noise_variance=noise_variance,
                    label=f"urban-semireal-K{latent_dim}"),
        geometry=ImageGeometry(rows, cols),
        provenance=provenance,
    )
