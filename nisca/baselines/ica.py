"""ICA: scikit-learn's FastICA to K sources, mapped onto the simplex.

The mapping (`nisca.baselines.common.sources_to_simplex`): flip each source to positive skewness
(abundances are mostly small with a tail towards 1), shift it to a zero minimum, then divide every
row by its sum. The endmembers are the least-squares spectra for those abundances, so SAD and the
reconstruction are scored like the other methods'. Abundances of a simplex mixture sum to one, so
they are not independent (Nascimento and Bioucas-Dias, IEEE TGRS 2005): ICA is a reference point here.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

from sklearn.decomposition import FastICA
from sklearn.exceptions import ConvergenceWarning

from nisca.baselines.common import as_outputs, least_squares_endmembers, require_pixels, sources_to_simplex
from nisca.config import BaseConfig
from nisca.data.scene import Scene
from nisca.errors import ConfigError
from nisca.fit import FitContext, MethodOutput


@dataclass(frozen=True)
class IcaConfig(BaseConfig):
    """FastICA's contrast function `fun`, iteration bound and tolerance (scikit-learn's meanings)."""

    fun: Literal["logcosh", "exp", "cube"] = "logcosh"
    max_iter: int = 1000
    tol: float = 1e-4

    def validate(self) -> None:
        if self.max_iter < 1 or not self.tol > 0:
            raise ConfigError(f"config for 'ica': max_iter must be >= 1 and tol > 0, got {self.max_iter}, {self.tol}")


CONFIG = IcaConfig


def run(scene: Scene, config: IcaConfig, context: FitContext) -> MethodOutput:
    """FastICA sources (seeded), sign-fixed, shifted and row-normalised onto the simplex."""
    K = int(config.latent_dim)
    require_pixels(scene.Y, K, scene.name, "ica")
    ica = FastICA(
        n_components=K,
        fun=config.fun,
        max_iter=config.max_iter,
        tol=config.tol,
        whiten="unit-variance",
        random_state=config.seed,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        sources = ica.fit_transform(scene.Y.astype("float64"))
    converged = True
    for w in caught:  # not converging becomes a metric; anything else is passed on
        if issubclass(w.category, ConvergenceWarning):
            converged = False
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    abundances = sources_to_simplex(sources, fix_sign=True)
    endmembers = least_squares_endmembers(scene.Y, abundances)
    return MethodOutput(
        **as_outputs(abundances, endmembers),
        metrics={"converged": float(converged), "n_iter": float(ica.n_iter_)},
    )
