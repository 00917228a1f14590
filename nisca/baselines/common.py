"""Shared pieces of the classic baselines: simplex projection, affine set fitting, source-to-simplex map.

Conventions: Y is (pixels, channels); abundances (pixels, K); endmembers (channels, K). Everything here
is plain numpy, vectorised over pixels.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import skew

from nisca.errors import DataError


def require_pixels(Y: np.ndarray, K: int, name: str, method: str) -> None:
    """Refuse data with fewer pixels than components: no K-vertex simplex can be fitted to it."""
    if Y.shape[0] < K:
        raise DataError(f"{name}: {method} needs at least K = {K} pixels, the data has {Y.shape[0]}")


def project_simplex(V: np.ndarray) -> np.ndarray:
    """Euclidean projection of every row of V onto the probability simplex (sort-based, exact).

    Held, Wolfe and Crowder (1974) / Duchi et al. (2008): w = max(v - theta, 0) with theta chosen so
    that the row sums to one; vectorised over rows.
    """
    V = np.asarray(V, dtype=np.float64)
    K = V.shape[1]
    U = -np.sort(-V, axis=1)  # descending
    css = np.cumsum(U, axis=1) - 1.0
    ranks = np.arange(1, K + 1, dtype=np.float64)
    active = U - css / ranks > 0
    rho = K - 1 - np.argmax(active[:, ::-1], axis=1)  # last index where the condition holds
    theta = css[np.arange(V.shape[0]), rho] / (rho + 1.0)
    return np.maximum(V - theta[:, None], 0.0)


def clip_to_simplex(Z: np.ndarray) -> np.ndarray:
    """Set negatives to zero and divide each row by its sum (rows summing to zero become uniform).

    Used where abundances are already on the simplex up to solver round-off (MVES barycentric
    coordinates), so that the rows sum to one exactly in float32.
    """
    Z = np.maximum(np.asarray(Z, dtype=np.float64), 0.0)
    sums = Z.sum(axis=1, keepdims=True)
    K = Z.shape[1]
    return np.where(sums > 0, Z / np.where(sums > 0, sums, 1.0), 1.0 / K)


def affine_set_fit(Y: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Affine set fitting (Chan et al. 2009, eq. 7-9): the best `dim`-dimensional affine set for Y.

    Returns (d, C, X): the offset d (channels,), an orthonormal basis C (channels, dim) of the
    principal directions of Y - d, and the reduced coordinates X = (Y - d) C (pixels, dim).
    """
    Y = np.asarray(Y, dtype=np.float64)
    d = Y.mean(axis=0)
    U = Y - d
    # The principal eigenvectors of the (channels x channels) scatter matrix U^T U (the paper's U U^T
    # in its channels-first layout); cheaper than an SVD of U when pixels >> channels.
    _, vectors = np.linalg.eigh(U.T @ U)
    C = vectors[:, ::-1][:, :dim]
    return d, C, U @ C


def helmert_basis(K: int) -> np.ndarray:
    """An orthonormal basis (K, K-1) of the sum-zero hyperplane {v in R^K : 1^T v = 0}."""
    basis = np.zeros((K, K - 1))
    for j in range(1, K):
        basis[:j, j - 1] = 1.0
        basis[j, j - 1] = -float(j)
        basis[:, j - 1] /= np.sqrt(j * (j + 1.0))
    return basis


def sources_to_simplex(S: np.ndarray, *, fix_sign: bool = True) -> np.ndarray:
    """Map K real-valued sources (pixels, K) onto the simplex, the documented rule for ICA and PCA.

    1. Sign (optional): flip each source whose skewness is negative. Abundances of a few components
       are mostly small with a tail towards 1, i.e. positively skewed; ICA leaves the sign free.
    2. Shift each source so that its minimum over the pixels is 0.
    3. Divide each row by its sum (rows summing to zero become uniform 1/K).
    For sources whose rows sum to zero (PCA scores in the Helmert basis, `fix_sign=False`) steps 2-3
    are one affine map: every shifted row has the same sum.
    """
    S = np.asarray(S, dtype=np.float64)
    if fix_sign:
        skewness = np.nan_to_num(skew(S, axis=0), nan=0.0)
        S = S * np.where(skewness < 0, -1.0, 1.0)
    S = S - S.min(axis=0, keepdims=True)
    return clip_to_simplex(S)


def least_squares_endmembers(Y: np.ndarray, Z: np.ndarray) -> np.ndarray:
    """Endmembers E (channels, K) minimising ||Y - Z E^T||_F for given abundances Z (pixels, K)."""
    E, *_ = np.linalg.lstsq(np.asarray(Z, dtype=np.float64), np.asarray(Y, dtype=np.float64), rcond=None)
    return E.T


def as_outputs(abundances: np.ndarray, endmembers: np.ndarray | None) -> dict[str, np.ndarray | None]:
    """abundances/endmembers as float32 and the linear reconstruction Z E^T (also the linear mixture)."""
    Z = np.asarray(abundances, dtype=np.float32)
    if endmembers is None:
        return {"abundances": Z, "endmembers": None, "linear_mixture": None, "reconstruction": None}
    E = np.asarray(endmembers, dtype=np.float32)
    mixture = (Z.astype(np.float64) @ E.T.astype(np.float64)).astype(np.float32)
    return {"abundances": Z, "endmembers": E, "linear_mixture": mixture, "reconstruction": mixture}
