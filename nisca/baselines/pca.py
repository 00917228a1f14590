"""PCA floor: the K-1 principal components mapped onto the simplex (every method must beat it).

The whitened scores (pixels, K-1) are embedded in the sum-zero plane of R^K with an orthonormal
(Helmert) basis, then `sources_to_simplex` without the sign step shifts every coordinate to a zero
minimum and divides each row by its sum. Because the embedded rows sum to zero, every shifted row has
the same sum, so the whole map is one affine map of the PCA coordinates onto the simplex plane. The
endmembers are the least-squares spectra for those abundances (so SAD and reconstruction can be
scored like the other methods'); they are a by-product, not a PCA estimate.
"""

from __future__ import annotations

from dataclasses import dataclass

from sklearn.decomposition import PCA

from nisca.baselines.common import (
    as_outputs,
    helmert_basis,
    least_squares_endmembers,
    require_pixels,
    sources_to_simplex,
)
from nisca.config import BaseConfig
from nisca.data.scene import Scene
from nisca.fit import FitContext, MethodOutput


@dataclass(frozen=True)
class PcaConfig(BaseConfig):
    """PCA has no setting of its own: K (latent_dim) and the seed (used by no random step) only."""


CONFIG = PcaConfig


def run(scene: Scene, config: PcaConfig, context: FitContext) -> MethodOutput:
    """PCA to K-1 dimensions, then the affine map onto the simplex."""
    K = int(config.latent_dim)
    require_pixels(scene.Y, K, scene.name, "pca")
    scores = PCA(n_components=K - 1, whiten=True, svd_solver="full").fit_transform(scene.Y.astype("float64"))
    abundances = sources_to_simplex(scores @ helmert_basis(K).T, fix_sign=False)
    endmembers = least_squares_endmembers(scene.Y, abundances)
    return MethodOutput(**as_outputs(abundances, endmembers))
