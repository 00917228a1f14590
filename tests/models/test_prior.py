"""The learned Dirichlet prior (`prior: learn`): its density, and that the ELBO learns the data's sparsity."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nisca.data.scene import Scene
from nisca.fit import fit
from nisca.models.module import VariationalSimplexModule
from nisca.models.simplex import additive_logistic


def test_log_prior_is_the_dirichlet_density_and_zero_when_flat():
    module = VariationalSimplexModule(6, 4, learn_prior=True)
    with torch.no_grad():
        module.log_concentration.copy_(torch.log(torch.tensor([0.3, 0.7, 1.0, 2.5])))
    u = torch.randn(50, 3) * 2
    expected = torch.distributions.Dirichlet(module.concentration()).log_prob(additive_logistic(u))
    torch.testing.assert_close(module.log_prior(u), expected, rtol=1e-4, atol=1e-4)
    flat = VariationalSimplexModule(6, 4)
    assert torch.equal(flat.log_prior(u), torch.zeros(50))
    assert torch.equal(flat.concentration(), torch.ones(4))


def _linear_scene(concentration: float, seed: int = 0) -> Scene:
    rng = np.random.default_rng(seed)
    A = rng.uniform(0.0, 1.0, size=(8, 3))
    Z = rng.dirichlet(np.full(3, concentration), size=1500)
    Y = Z @ A.T + rng.normal(0.0, 0.01, size=(1500, 8))
    return Scene(Y=Y.astype(np.float32), name=f"dirichlet-{concentration}")


@pytest.mark.parametrize(("concentration", "low", "high"), [(0.2, 0.0, 0.6), (1.0, 0.7, 1.5)])
def test_learned_concentration_follows_the_data(concentration, low, high):
    """Sparse fractions (most pixels near a corner) give alpha well below 1; Dirichlet(1) data do not."""
    config = {"latent_dim": 3, "prior": "learn", "max_epochs": 25, "seed": 0, "device": "cpu"}
    result = fit("vasca", _linear_scene(concentration), config, progress_bar=False)
    assert low < result.metrics["prior_concentration"] < high
