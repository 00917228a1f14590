"""DCE-MRI physics: Parker population AIF, (extended) Tofts model, SPGR signal equation and its inverse.

Units follow the OSIPI DCE-DSC-MRI code collection: time in seconds, Ktrans in min^-1, ve and vp as
volume fractions, concentrations in mM, relaxation rates in s^-1, relaxivity r1 in s^-1 mM^-1, flip
angles in degrees (as in BIDS sidecars), TR in seconds. Every function is vectorised with numpy over
voxels: leading axes are voxels, the last axis is time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy.optimize import least_squares
from scipy.signal import lfilter

from nisca.errors import DataError

SECONDS_PER_MINUTE = 60.0


@dataclass(frozen=True)
class ParkerParameters:
    """The 10 published parameters of the Parker et al. (MRM 2006, Table 1) population AIF.

    A in mM min, sigma and T in min, alpha in mM, beta and s in min^-1, tau in min.
    """

    A1: float = 0.809
    sigma1: float = 0.0563
    T1: float = 0.17046
    A2: float = 0.330
    sigma2: float = 0.132
    T2: float = 0.365
    alpha: float = 1.050
    beta: float = 0.1685
    s: float = 38.078
    tau: float = 0.483


PARKER_2006 = ParkerParameters()


def parker_aif(t_s: np.ndarray, delay_s: float = 0.0, params: ParkerParameters = PARKER_2006) -> np.ndarray:
    """Whole-blood concentration Cb(t) in mM of the Parker population AIF at times `t_s` (seconds).

    Two Gaussians (first and recirculation pass) plus an exponential modulated by a sigmoid. With a
    delay the curve is shifted right and is zero before the bolus arrives (OSIPI's convention).
    """
    t = np.asarray(t_s, dtype=np.float64)
    tm = (t - float(delay_s)) / SECONDS_PER_MINUTE
    p = params
    gauss1 = p.A1 / (p.sigma1 * np.sqrt(2 * np.pi)) * np.exp(-((tm - p.T1) ** 2) / (2 * p.sigma1**2))
    gauss2 = p.A2 / (p.sigma2 * np.sqrt(2 * np.pi)) * np.exp(-((tm - p.T2) ** 2) / (2 * p.sigma2**2))
    # alpha exp(-beta t) / (1 + exp(-s (t - tau))), written with logaddexp so it never overflows
    sigmoid = p.alpha * np.exp(-p.beta * tm - np.logaddexp(0.0, -p.s * (tm - p.tau)))
    cb = gauss1 + gauss2 + sigmoid
    return np.where(tm >= 0, cb, 0.0) if delay_s else cb


def plasma_from_blood(cb: np.ndarray, hematocrit: float = 0.45) -> np.ndarray:
    """Plasma concentration Cp = Cb / (1 - Hct): the contrast agent stays out of red cells."""
    if not 0.0 <= hematocrit < 1.0:
        raise DataError(f"hematocrit must be in [0, 1), got {hematocrit}")
    return np.asarray(cb, dtype=np.float64) / (1.0 - hematocrit)


def _exp_conv_weights(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """exp(-x) and the weights of the current and previous sample for x = k * dt (stable at x -> 0).

    For an input linear between two samples, the exact integral over the step of c(tau) exp(-k(t-tau))
    is dt * (w_now * c_now + w_prev * c_prev) with w_now = (x - 1 + e^-x)/x^2 and
    w_prev = (1 - e^-x - x e^-x)/x^2; both tend to 1/2 (the trapezoid rule) as x -> 0.
    """
    E = np.exp(-x)
    small = x < 1e-3
    xs = np.where(small, 1.0, x)
    em1 = -np.expm1(-xs)  # 1 - e^-x, accurate for moderate x
    w_now = np.where(small, 0.5 - x / 6 + x**2 / 24, (xs - em1) / xs**2)
    w_prev = np.where(small, 0.5 - x / 3 + x**2 / 8, (em1 - xs * np.exp(-xs)) / xs**2)
    return E, w_now, w_prev


def exp_convolve(t_s: np.ndarray, c: np.ndarray, k_per_s: np.ndarray | float) -> np.ndarray:
    """Exact convolution of a piecewise-linear input c(t) with exp(-k t): int_0^t c(u) e^{-k(t-u)} du.

    The recursive exponential-integral scheme (Flouri et al., MRM 2016) is exact for inputs linear
    between samples and works for any (also non-uniform) sampling. `c` is (T,) or (voxels, T);
    `k_per_s` is a scalar or one rate per voxel (s^-1). Returns (voxels, T) or (T,) in units of c * s.
    """
    t = np.asarray(t_s, dtype=np.float64).reshape(-1)
    c = np.asarray(c, dtype=np.float64)
    k = np.asarray(k_per_s, dtype=np.float64)
    if c.shape[-1] != t.shape[0]:
        raise DataError(f"input curve has {c.shape[-1]} samples but there are {t.shape[0]} times")
    if t.shape[0] > 1 and np.any(np.diff(t) <= 0):
        raise DataError("sample times must be strictly increasing")
    if np.any(k < 0):
        raise DataError("exchange rates must be non-negative")
    squeeze = c.ndim == 1 and k.ndim == 0
    k_col = np.atleast_1d(k)[:, None]  # (V or 1, 1)
    c2 = np.atleast_2d(c)  # (V or 1, T)
    n_vox = max(c2.shape[0], k_col.shape[0])
    c2 = np.broadcast_to(c2, (n_vox, t.shape[0]))
    k_col = np.broadcast_to(k_col, (n_vox, 1))
    out = np.zeros((n_vox, t.shape[0]))
    if t.shape[0] > 1:
        dt = np.diff(t)
        E, w_now, w_prev = _exp_conv_weights(k_col * dt[None, :])  # (V, T-1)
        increments = dt[None, :] * (w_now * c2[:, 1:] + w_prev * c2[:, :-1])
        if np.allclose(dt, dt[0], rtol=1e-9, atol=0) and n_vox <= t.shape[0]:
            # uniform sampling: the recursion F_i = E F_{i-1} + b_i is a first-order IIR filter
            for v in range(n_vox):
                out[v, 1:] = lfilter([1.0], [1.0, -E[v, 0]], increments[v])
        else:  # non-uniform sampling, or more voxels than samples: step in time over all voxels at once
            for i in range(1, t.shape[0]):
                out[:, i] = E[:, i - 1] * out[:, i - 1] + increments[:, i - 1]
    return out[0] if squeeze else out


def extended_tofts(
    t_s: np.ndarray,
    cp: np.ndarray,
    ktrans_per_min: np.ndarray | float,
    ve: np.ndarray | float,
    vp: np.ndarray | float = 0.0,
) -> np.ndarray:
    """Tissue concentration (mM) of the extended Tofts model: vp Cp + Ktrans (Cp * exp(-kep t)).

    kep = Ktrans / ve. `cp` is the plasma AIF sampled at `t_s`; parameters are scalars or one value per
    voxel. Returns (T,) for scalar parameters, else (voxels, T).
    """
    ktrans = np.asarray(ktrans_per_min, dtype=np.float64) / SECONDS_PER_MINUTE
    ve = np.asarray(ve, dtype=np.float64)
    vp = np.asarray(vp, dtype=np.float64)
    if np.any(ve <= 0):
        raise DataError("ve must be positive in the Tofts model")
    kep = ktrans / ve
    conv = exp_convolve(t_s, cp, kep)
    cp = np.asarray(cp, dtype=np.float64)
    if conv.ndim == 1:
        return vp * cp + ktrans * conv
    return np.atleast_1d(vp)[:, None] * cp + np.atleast_1d(ktrans)[:, None] * conv


def tofts(t_s: np.ndarray, cp: np.ndarray, ktrans_per_min: np.ndarray | float, ve: np.ndarray | float) -> np.ndarray:
    """Tissue concentration (mM) of the standard Tofts model (extended Tofts with vp = 0)."""
    return extended_tofts(t_s, cp, ktrans_per_min, ve, 0.0)


class ToftsFit(NamedTuple):
    """Least-squares estimates of one curve: Ktrans (min^-1), ve, vp, and the residual RMS (mM)."""

    ktrans_per_min: float
    ve: float
    vp: float
    rmse: float


def fit_tofts(
    t_s: np.ndarray, ct: np.ndarray, cp: np.ndarray, *, extended: bool = False,
    start: tuple[float, float, float] = (0.2, 0.2, 0.01),
) -> ToftsFit:
    """Fit the (extended) Tofts model to one tissue curve by bounded nonlinear least squares.

    Bounds as in the OSIPI tests: Ktrans in [0, 5] min^-1, ve in (0, 1], vp in [0, 1].
    """
    ct = np.asarray(ct, dtype=np.float64).reshape(-1)
    n = 3 if extended else 2

    def residual(theta: np.ndarray) -> np.ndarray:
        vp = theta[2] if extended else 0.0
        return extended_tofts(t_s, cp, theta[0], theta[1], vp) - ct

    lower = [0.0, 1e-4, 0.0][:n]
    upper = [5.0, 1.0, 1.0][:n]
    result = least_squares(residual, x0=np.asarray(start[:n]), bounds=(lower, upper), x_scale=[0.1, 0.1, 0.01][:n])
    k, ve = float(result.x[0]), float(result.x[1])
    vp = float(result.x[2]) if extended else 0.0
    return ToftsFit(k, ve, vp, float(np.sqrt(np.mean(result.fun**2))))


def spgr_signal(r1_per_s: np.ndarray, m0: np.ndarray | float, flip_angle_deg: float, tr_s: float) -> np.ndarray:
    """Steady-state spoiled gradient-echo signal M0 sin(a) (1 - E1) / (1 - cos(a) E1), E1 = exp(-TR R1)."""
    a = np.deg2rad(flip_angle_deg)
    E1 = np.exp(-tr_s * np.asarray(r1_per_s, dtype=np.float64))
    return np.asarray(m0, dtype=np.float64) * np.sin(a) * (1.0 - E1) / (1.0 - np.cos(a) * E1)


def spgr_r1(
    signal: np.ndarray, m0: np.ndarray | float, flip_angle_deg: float, tr_s: float, *, clip: bool = False
) -> np.ndarray:
    """Invert the SPGR equation: R1 (s^-1) from signal and M0 (broadcast against each other).

    Solving S/(M0 sin a) = s for E1 gives E1 = (1 - s) / (1 - s cos a). Signals at or above the
    asymptote M0 sin a (or negative) have no R1; they raise a DataError unless `clip` is set, which
    clamps them just inside the valid range (for noisy data).
    """
    a = np.deg2rad(flip_angle_deg)
    s = np.asarray(signal, dtype=np.float64) / (np.asarray(m0, dtype=np.float64) * np.sin(a))
    s_max = 1.0 - 1e-9
    bad = ~(np.isfinite(s) & (s >= 0) & (s < s_max))
    if bad.any():
        if not clip:
            raise DataError(
                f"{int(bad.sum())} signal values are outside the range of the SPGR equation "
                f"(0 <= S < M0 sin(FA)); check M0, flip angle and TR, or pass clip=True for noisy data"
            )
        s = np.clip(np.nan_to_num(s, nan=0.0), 0.0, s_max)
    E1 = (1.0 - s) / (1.0 - s * np.cos(a))
    return -np.log(E1) / tr_s


def estimate_m0(
    baseline_signal: np.ndarray, t10_s: np.ndarray | float, flip_angle_deg: float, tr_s: float
) -> np.ndarray:
    """M0 per voxel from pre-contrast frames (last axis), given the native T10 (s) of each voxel."""
    baseline = np.asarray(baseline_signal, dtype=np.float64).mean(axis=-1)
    return baseline / spgr_signal(1.0 / np.asarray(t10_s, dtype=np.float64), 1.0, flip_angle_deg, tr_s)


def concentration_to_signal(
    conc_mM: np.ndarray, t10_s: np.ndarray | float, r1: float, m0: np.ndarray | float,
    flip_angle_deg: float, tr_s: float,
) -> np.ndarray:
    """SPGR signal of a concentration curve: R1 = 1/T10 + r1 C (fast exchange), then the signal equation.

    T10 and M0 are scalars or one value per voxel (shape (voxels,)), broadcast along the time axis.
    """
    t10 = np.asarray(t10_s, dtype=np.float64)
    m0 = np.asarray(m0, dtype=np.float64)
    r10 = (1.0 / t10)[..., None] if t10.ndim else 1.0 / t10
    m0 = m0[..., None] if m0.ndim else m0
    return spgr_signal(r10 + r1 * np.asarray(conc_mM, dtype=np.float64), m0, flip_angle_deg, tr_s)


def signal_to_concentration(
    signal: np.ndarray, t10_s: np.ndarray | float, r1: float, flip_angle_deg: float, tr_s: float,
    *, m0: np.ndarray | float | None = None, n_baseline: int | None = None, clip: bool = False,
) -> np.ndarray:
    """Concentration (mM) from SPGR signal: C = (R1(S) - 1/T10) / r1.

    M0 is given, or estimated from the first `n_baseline` frames (the pre-contrast baseline) with the
    known T10. `signal` is (T,) or (voxels, T); T10 and M0 scalars or one value per voxel.
    """
    sig = np.asarray(signal, dtype=np.float64)
    t10 = np.asarray(t10_s, dtype=np.float64)
    if m0 is None:
        if not n_baseline or n_baseline < 1 or n_baseline > sig.shape[-1]:
            raise DataError(
                f"signal_to_concentration needs m0 or 1 <= n_baseline <= {sig.shape[-1]} frames, got {n_baseline}"
            )
        m0 = estimate_m0(sig[..., :n_baseline], t10, flip_angle_deg, tr_s)
    m0 = np.asarray(m0, dtype=np.float64)
    m0 = m0[..., None] if m0.ndim else m0
    r10 = (1.0 / t10)[..., None] if t10.ndim else 1.0 / t10
    return (spgr_r1(sig, m0, flip_angle_deg, tr_s, clip=clip) - r10) / r1
