"""Fully constrained least squares (FCLS): min_a ||y - E a||^2 s.t. a >= 0, 1^T a = 1, for every pixel.

Vectorised over pixels (no loop over pixels):
1. accelerated projected gradient (FISTA with per-pixel adaptive restart, O'Donoghue and Candes 2015)
   on the simplex, with the exact sort-based simplex projection, identifies each pixel's support;
2. every few iterations the equality-constrained least squares problem on each support pattern is
   solved exactly (one KKT solve per distinct pattern, all its pixels at once); a pixel is done when
   that solution satisfies the KKT conditions of the full problem (primal and dual feasibility).
Pixels still undecided after `max_iter` keep the projected-gradient iterate.
"""

from __future__ import annotations

import numpy as np

from nisca.baselines.common import clip_to_simplex, project_simplex
from nisca.errors import DataError

CHECK_EVERY = 25  # projected-gradient iterations between exact support solves


def fcls(
    Y: np.ndarray,
    E: np.ndarray,
    *,
    tol: float = 1e-9,
    max_iter: int = 5000,
) -> np.ndarray:
    """Abundances (pixels, K) on the simplex minimising ||Y - A E^T||, row by row.

    Y: (pixels, channels); E: (channels, K). `tol` is the relative KKT tolerance (on the dual
    multipliers, relative to ||E||^2); `max_iter` bounds the projected-gradient iterations.
    """
    Y = np.asarray(Y, dtype=np.float64)
    E = np.asarray(E, dtype=np.float64)
    if E.ndim != 2 or Y.ndim != 2 or E.shape[0] != Y.shape[1]:
        raise DataError(f"fcls: endmembers {E.shape} do not match data {Y.shape} (channels first in E)")
    if not (np.isfinite(E).all() and np.isfinite(Y).all()):
        raise DataError("fcls: data or endmembers contain NaN or Inf")
    P, K = Y.shape[0], E.shape[1]
    Q = E.T @ E
    B = Y @ E  # (P, K): E^T y per pixel
    L = float(np.linalg.eigvalsh(Q)[-1])
    if L <= 0:
        return np.full((P, K), 1.0 / K)
    dual_tol = tol * (L + float(np.abs(B).max()))

    X = np.full((P, K), 1.0 / K)
    todo = np.arange(P)
    Xk, Zk, t = X.copy(), X.copy(), np.ones(P)
    for iteration in range(1, max_iter + 1):
        # One FISTA step on the undecided pixels only.
        G = Zk @ Q - B[todo]
        X_new = project_simplex(Zk - G / L)
        t_new = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * t**2))
        restart = np.einsum("pk,pk->p", Zk - X_new, X_new - Xk) > 0
        momentum = np.where(restart, 0.0, (t - 1.0) / t_new)
        Zk = X_new + momentum[:, None] * (X_new - Xk)
        t = np.where(restart, 1.0, t_new)
        Xk = X_new
        if iteration % CHECK_EVERY and iteration != max_iter:
            continue
        exact, ok = _solve_on_support(Q, B[todo], Xk > 0, dual_tol)
        X[todo] = np.where(ok[:, None], exact, Xk)
        keep = ~ok
        todo, Xk, Zk, t = todo[keep], Xk[keep], Zk[keep], t[keep]
        if todo.size == 0:
            break
    return X


def _solve_on_support(
    Q: np.ndarray, B: np.ndarray, support: np.ndarray, dual_tol: float
) -> tuple[np.ndarray, np.ndarray]:
    """Exact equality-constrained LS on each pixel's support; ok where it solves the full FCLS (KKT)."""
    P, K = B.shape
    codes = support.astype(np.int64) @ (1 << np.arange(K, dtype=np.int64))
    solution = np.zeros((P, K))
    ok = np.zeros(P, dtype=bool)
    for code in np.unique(codes):
        rows = np.flatnonzero(codes == code)
        S = np.flatnonzero((int(code) >> np.arange(K)) & 1)
        if S.size == 0:
            continue
        n = S.size
        kkt = np.zeros((n + 1, n + 1))
        kkt[:n, :n] = Q[np.ix_(S, S)]
        kkt[:n, n] = 1.0
        kkt[n, :n] = 1.0
        rhs = np.concatenate([B[np.ix_(rows, S)], np.ones((rows.size, 1))], axis=1)
        sol, *_ = np.linalg.lstsq(kkt, rhs.T, rcond=None)
        a = np.zeros((rows.size, K))
        a[:, S] = sol[:n].T
        nu = sol[n]  # multiplier of the sum-to-one constraint: Q a - b + nu 1 - lambda = 0
        lam = a @ Q - B[rows] + nu[:, None]  # lambda_k, must be >= 0 off the support
        primal = (a[:, S] >= -1e-12).all(axis=1) & (np.abs(a.sum(axis=1) - 1.0) < 1e-9)
        off = np.ones(K, dtype=bool)
        off[S] = False
        dual = (lam[:, off] >= -dual_tol).all(axis=1) if off.any() else np.ones(rows.size, dtype=bool)
        good = primal & dual
        solution[rows] = clip_to_simplex(a)
        ok[rows] = good
    return solution, ok
