"""Recovery metrics (MODEL.md section 4): numpy arrays in, a flat dict of floats out.

Estimated components are matched to the true ones once, by the Hungarian assignment on per-pair
abundance MSE, and that same permutation is used for the endmembers (the HySUPP convention).
Names are stable (Ray Tune, W&B and pandas read them as is): abundance_mse, abundance_rmse,
abundance_rmse_k{i}, sad_deg, sad_deg_k{i}, subspace_distance, r2_nonlinearity, amari_distance,
reconstruction_rmse, psnr_db. Index i is always the TRUE component's index.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import linear_sum_assignment

from nisca.data.scene import Scene
from nisca.errors import DataError


def match_components(true_abundances: np.ndarray, est_abundances: np.ndarray) -> np.ndarray:
    """Permutation `perm` with est[:, perm[i]] matched to true[:, i] (Hungarian on per-pair MSE)."""
    true = _as_matrix(true_abundances, "true abundances")
    est = _as_matrix(est_abundances, "estimated abundances")
    if true.shape[0] != est.shape[0]:
        raise DataError(f"abundances: the truth has {true.shape[0]} pixels but the estimate has {est.shape[0]}")
    _same_k(true.shape[1], est.shape[1], "abundances")
    # cost[i, j] = mean_p (true[p, i] - est[p, j])^2, one (P, K) op per estimated component
    cost = np.stack([np.mean((true - est[:, [j]]) ** 2, axis=0) for j in range(est.shape[1])], axis=1)
    _, perm = linear_sum_assignment(cost)
    return perm.astype(np.int64)


def abundance_errors(true_abundances: np.ndarray, est_abundances: np.ndarray, perm: np.ndarray) -> dict[str, float]:
    """MSE over all pixels and components, aRMSE = sqrt(MSE), and the per-component RMSE."""
    true, est = _pair(true_abundances, est_abundances, "abundances")
    sq = (est[:, perm] - true) ** 2
    mse = float(sq.mean())
    out = {"abundance_mse": mse, "abundance_rmse": math.sqrt(mse)}
    for i, value in enumerate(np.sqrt(sq.mean(axis=0))):
        out[f"abundance_rmse_k{i}"] = float(value)
    return out


def spectral_angles_deg(true_spectra: np.ndarray, est_spectra: np.ndarray) -> np.ndarray:
    """Angle in degrees between matching columns of two (channels, K) arrays.

    Computed as 2*atan2(|a - b|, |a + b|) on unit vectors (accurate near 0); NaN for a zero column.
    """
    true, est = _pair(true_spectra, est_spectra, "endmembers")
    with np.errstate(invalid="ignore", divide="ignore"):
        a = true / np.linalg.norm(true, axis=0)
        b = est / np.linalg.norm(est, axis=0)
        angle = 2.0 * np.arctan2(np.linalg.norm(a - b, axis=0), np.linalg.norm(a + b, axis=0))
    return np.degrees(angle)


def sad(true_endmembers: np.ndarray, est_endmembers: np.ndarray, perm: np.ndarray) -> dict[str, float]:
    """Spectral angle distance in degrees, mean and per true endmember, with est permuted by perm."""
    true, est = _pair(true_endmembers, est_endmembers, "endmembers")
    angles = spectral_angles_deg(true, est[:, perm])
    out = {"sad_deg": float(np.mean(angles))}
    for i, value in enumerate(angles):
        out[f"sad_deg_k{i}"] = float(value)
    return out


def match_endmembers(true_endmembers: np.ndarray, est_endmembers: np.ndarray) -> np.ndarray:
    """Hungarian matching on pairwise spectral angles; used only when the truth has no abundances."""
    true, est = _pair(true_endmembers, est_endmembers, "endmembers")
    with np.errstate(invalid="ignore", divide="ignore"):
        cosine = (true / np.linalg.norm(true, axis=0)).T @ (est / np.linalg.norm(est, axis=0))
    _, perm = linear_sum_assignment(np.arccos(np.clip(np.nan_to_num(cosine, nan=-1.0), -1.0, 1.0)))
    return perm.astype(np.int64)


def subspace_distance(true_latent: np.ndarray, est_latent: np.ndarray) -> float:
    """|| P_perp(Z) Q(H) ||_2 in [0, 1]: the sine of the largest principal angle between row spaces.

    Arguments are (pixels, K) like abundances, i.e. the transposes Z^T, H^T of the K x P latent
    matrices; Q(H) is an orthonormal basis of H's row space (numerical rank by SVD) and P_perp(Z)
    the projector onto the complement of Z's row space.
    """
    Z = _as_matrix(true_latent, "true latent matrix")
    H = _as_matrix(est_latent, "estimated latent matrix")
    if Z.shape[0] != H.shape[0]:
        raise DataError(f"latent matrices have {Z.shape[0]} and {H.shape[0]} pixels; they must agree")
    U = _row_space_basis(Z)
    Q = _row_space_basis(H)
    if Q.shape[1] == 0:
        return 1.0
    residual = Q - U @ (U.T @ Q)
    return float(min(np.linalg.norm(residual, ord=2), 1.0))


def r2_nonlinearity(true_linear: np.ndarray, est_linear: np.ndarray) -> float:
    """Mean over channels of R^2 when (A_hat z_hat)_n is regressed on (A z)_n with an intercept.

    R^2_n = 1 - SS_res / SS_tot of that least-squares line; 1 means the estimate is an affine map of
    the true linear mixture in every channel (the nonlinearity was removed exactly). A channel where
    either side is constant explains nothing and scores 0.
    """
    x, y = _pair(true_linear, est_linear, "linear mixtures")
    xc, yc = x - x.mean(axis=0), y - y.mean(axis=0)
    sxx, syy, sxy = (xc**2).sum(0), (yc**2).sum(0), (xc * yc).sum(0)
    # constant up to rounding: variance below eps * P of the channel's mean square
    rounding = np.finfo(np.float64).eps * x.shape[0]
    valid = (sxx > rounding * (x**2).sum(0)) & (syy > rounding * (y**2).sum(0))
    sxx, syy = np.where(valid, sxx, 1.0), np.where(valid, syy, 1.0)
    ss_res = ((yc - (sxy / sxx) * xc) ** 2).sum(0)
    return float(np.mean(np.where(valid, 1.0 - ss_res / syy, 0.0)))


def amari_distance(true_mixing: np.ndarray, est_mixing: np.ndarray) -> float:
    """Normalised Amari index in [0, 1]; 0 iff est = true * (permutation x scaling).

    With C = pinv(A) A_hat (K x K), c_ij = |C_ij|:
        d = 1 / (2 K (K - 1)) * [ sum_i (sum_j c_ij / max_j c_ij - 1) + sum_j (sum_i c_ij / max_i c_ij - 1) ]
    """
    A, A_hat = _pair(true_mixing, est_mixing, "mixing matrices")
    K = A.shape[1]
    C = np.abs(np.linalg.pinv(A) @ A_hat)
    row_max, col_max = C.max(axis=1), C.max(axis=0)
    if (row_max <= 0).any() or (col_max <= 0).any():
        return 1.0  # a component of A_hat has no part in A's column space (or a zero column)
    rows = (C.sum(axis=1) / row_max - 1.0).sum()
    cols = (C.sum(axis=0) / col_max - 1.0).sum()
    return float((rows + cols) / (2.0 * K * (K - 1)))


def reconstruction_errors(observations: np.ndarray, reconstruction: np.ndarray) -> dict[str, float]:
    """RMSE = sqrt(mean over all entries of (Y - Y_hat)^2); PSNR = 20 log10(max|Y| / RMSE) in dB."""
    Y, R = _pair(observations, reconstruction, "observations and reconstruction")
    rmse = math.sqrt(float(np.mean((Y - R) ** 2)))
    peak = float(np.max(np.abs(Y)))
    psnr = math.inf if rmse == 0.0 else (20.0 * math.log10(peak / rmse) if peak > 0 else -math.inf)
    return {"reconstruction_rmse": rmse, "psnr_db": psnr}


def score(
    scene: Scene,
    *,
    abundances: np.ndarray,
    endmembers: np.ndarray | None = None,
    linear_mixture: np.ndarray | None = None,
    reconstruction: np.ndarray | None = None,
    mixing: np.ndarray | None = None,
) -> dict[str, float]:
    """Every metric the inputs allow, as a flat dict of floats.

    Reconstruction metrics need only Y; truth metrics need `scene.truth` with the matching field:
    abundances (MSE, aRMSE, subspace distance), endmembers (SAD; matched on abundances when the
    truth has them, otherwise on spectral angles), linear_mixture (R^2), mixing (Amari distance).
    """
    P, N = scene.Y.shape
    est_z = _checked(abundances, (P, None), "estimated abundances", scene.name, "(pixels, K)")
    K = est_z.shape[1]
    est_e = _checked(endmembers, (N, K), "estimated endmembers", scene.name, "(channels, K)")
    est_lin = _checked(linear_mixture, (P, N), "estimated linear mixture", scene.name, "(pixels, channels)")
    est_rec = _checked(reconstruction, (P, N), "reconstruction", scene.name, "(pixels, channels)")
    est_mix = _checked(mixing, (N, K), "estimated mixing matrix", scene.name, "(channels, K)")

    out: dict[str, float] = {}
    truth = scene.truth
    perm = None
    if truth is not None and truth.abundances is not None:
        true_z = np.asarray(truth.abundances, dtype=np.float64)
        _same_k(true_z.shape[1], K, scene.name)
        perm = match_components(true_z, est_z)
        out.update(abundance_errors(true_z, est_z, perm))
        out["subspace_distance"] = subspace_distance(true_z, est_z)
    if truth is not None and truth.endmembers is not None and est_e is not None:
        true_e = np.asarray(truth.endmembers, dtype=np.float64)
        _same_k(true_e.shape[1], K, scene.name)
        out.update(sad(true_e, est_e, perm if perm is not None else match_endmembers(true_e, est_e)))
    if truth is not None and truth.linear_mixture is not None and est_lin is not None:
        out["r2_nonlinearity"] = r2_nonlinearity(truth.linear_mixture, est_lin)
    if truth is not None and truth.mixing is not None and est_mix is not None:
        _same_k(truth.mixing.shape[1], K, scene.name)
        out["amari_distance"] = amari_distance(truth.mixing, est_mix)
    if est_rec is not None:
        out.update(reconstruction_errors(scene.Y, est_rec))
    return out


def _checked(
    value: np.ndarray | None, shape: tuple[int | None, ...], label: str, scene_name: str, layout: str
) -> np.ndarray | None:
    """None stays None; otherwise a finite float64 array of `shape` (None = any size)."""
    if value is None:
        return None
    array = np.asarray(value)
    if not np.issubdtype(array.dtype, np.number):
        raise DataError(f"{scene_name}: {label} must be numeric, got dtype {array.dtype}")
    if array.ndim != len(shape) or any(want is not None and got != want for got, want in zip(array.shape, shape)):
        expected = " x ".join("K" if want is None else str(want) for want in shape)
        raise DataError(f"{scene_name}: {label} must be {layout} = {expected}, got shape {array.shape}")
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        raise DataError(f"{scene_name}: {label} contain {int((~np.isfinite(array)).sum())} NaN or Inf values")
    return array


def _same_k(true_k: int, est_k: int, scene_name: str) -> None:
    if true_k != est_k:
        raise DataError(f"{scene_name}: the estimate has K = {est_k} components but the truth has K = {true_k}")


def _pair(true: np.ndarray, est: np.ndarray, label: str) -> tuple[np.ndarray, np.ndarray]:
    a = _as_matrix(true, f"true {label}")
    b = _as_matrix(est, f"estimated {label}")
    if a.shape != b.shape:
        raise DataError(f"{label}: true shape {a.shape} and estimated shape {b.shape} differ")
    return a, b


def _as_matrix(value: np.ndarray, label: str) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if array.ndim != 2:
        raise DataError(f"{label} must be a 2-D array, got shape {array.shape}")
    return array


def _row_space_basis(latent: np.ndarray) -> np.ndarray:
    """Orthonormal basis (pixels, r) of the row space of the K x P matrix latent.T (numerical rank r)."""
    U, s, _ = np.linalg.svd(latent, full_matrices=False)
    if s.size == 0 or s[0] == 0:
        return U[:, :0]
    rank = int((s > s[0] * max(latent.shape) * np.finfo(np.float64).eps).sum())
    return U[:, :rank]
