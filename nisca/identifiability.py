"""The identifiability condition of post-nonlinear simplex mixtures (MODEL.md section 1, thesis Theorem 7).

With invertible, twice-differentiable f_n, a full-column-rank A and Gaussian noise, maximum likelihood
recovers f up to a per-channel scale and z up to a permutation when 3 <= K <= N <= K(K-1)/2. Outside
that range the model still runs, but nothing guarantees that the sources found are the true ones.
"""

from __future__ import annotations

import warnings


class IdentifiabilityWarning(UserWarning):
    """K and N fall outside the range where NISCA's recovery is guaranteed."""


def identifiability_problem(latent_dim: int, n_channels: int) -> str | None:
    """A sentence explaining why 3 <= K <= N <= K(K-1)/2 fails, or None when it holds."""
    K, N = int(latent_dim), int(n_channels)
    bound = K * (K - 1) // 2
    if K < 3:
        reason = f"K = {K} is below 3"
    elif N < K:
        reason = f"N = {N} channels is below K = {K}"
    elif N > bound:
        reason = f"N = {N} channels exceeds K(K-1)/2 = {bound}"
    else:
        return None
    return (
        f"the identifiability condition 3 <= K <= N <= K(K-1)/2 does not hold ({reason}): the fit runs, "
        "but the theory no longer guarantees that the nonlinearity and the abundances are recovered up to "
        "a permutation and per-channel scale; check the result against other methods or a subset of channels"
    )


def warn_if_unidentifiable(latent_dim: int, n_channels: int, method: str = "nisca") -> str | None:
    """Issue an IdentifiabilityWarning when the condition fails; returns the message (or None)."""
    message = identifiability_problem(latent_dim, n_channels)
    if message is not None:
        warnings.warn(f"{method}: {message}", IdentifiabilityWarning, stacklevel=2)
    return message
