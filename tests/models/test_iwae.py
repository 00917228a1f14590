"""The importance-weighted objective (`objective: iwae`): the bound and the posterior mean it gives.

On a K = 2 model the simplex is the segment z = (t, 1 - t), t in [0, 1], so log p(x) and the posterior
mean E[t | x] are one-dimensional integrals that quadrature computes exactly: both estimators are checked
against them, and against the ELBO / q's mean, which they must beat.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nisca.data.synthetic import simulate_pnl
from nisca.errors import ConfigError
from nisca.fit import fit
from nisca.models.module import VariationalSimplexModule
from nisca.models.nisca import load_checkpoint

NOISE = 0.05  # s2 of the toy model: a narrow posterior, pushed against the face t = 0 for x near A e_2


def _toy_module(objective: str) -> VariationalSimplexModule:
    """Linear decoder x = A z (2 channels, K = 2) and an encoder whose output is set by hand below."""
    torch.manual_seed(0)
    module = VariationalSimplexModule(2, 2, encoder_hidden=(4,), noise_variance=NOISE, objective=objective)
    with torch.no_grad():
        module.mixing.weight.copy_(torch.tensor([[1.0, -1.0], [0.5, 2.0]]))
        for parameter in module.encoder.parameters():
            parameter.zero_()
        # mu = -1.5 (t about 0.18), s = softplus(0) + floor: a wide, deliberately imperfect proposal
        module.encoder[-1].bias.copy_(torch.tensor([-1.5, 0.0]))
    return module


def _exact(x: np.ndarray) -> tuple[float, float]:
    """log p(x) and E[t | x] under the toy model (flat prior on the segment), by quadrature."""
    t = np.linspace(0.0, 1.0, 200_001)
    A = np.array([[1.0, -1.0], [0.5, 2.0]])
    mean = np.outer(t, A[:, 0]) + np.outer(1.0 - t, A[:, 1])
    log_lik = -0.5 * ((x - mean) ** 2).sum(1) / NOISE - math.log(2 * math.pi * NOISE)
    peak = log_lik.max()
    density = np.exp(log_lik - peak)
    evidence = np.trapezoid(density, t)
    return float(peak + math.log(evidence)), float(np.trapezoid(t * density, t) / evidence)


def _bound(module: VariationalSimplexModule, x: torch.Tensor, samples: int) -> float:
    torch.manual_seed(1)
    with torch.no_grad():
        return -float(module.loss(x, samples)["loss"])


def test_iwae_bound_approaches_the_exact_evidence_and_beats_the_elbo():
    x = torch.tensor([[-0.85, 1.7]])  # near A e_2 = (-1, 2): t close to the face t = 0
    log_evidence, _ = _exact(x.numpy()[0])
    iwae = _bound(_toy_module("iwae"), x.expand(200, 2), 2000)
    elbo = _bound(_toy_module("elbo"), x.expand(200, 2), 2000)
    assert abs(iwae - log_evidence) < 0.02, (iwae, log_evidence)
    assert elbo < log_evidence - 0.3, (elbo, log_evidence)  # the gap KL(q || p(z|x)) of this poor proposal


def test_importance_weighted_mean_is_the_posterior_mean():
    x = torch.tensor([[-0.85, 1.7], [-0.4, 1.55]])
    iwae, elbo = _toy_module("iwae"), _toy_module("elbo")
    generator = torch.Generator().manual_seed(0)
    weighted = iwae.posterior(x, 20_000, generator=generator)["abundances"][:, 0].numpy()
    plain = elbo.posterior(x, 20_000, generator=generator)["abundances"][:, 0].numpy()
    exact = np.array([_exact(row)[1] for row in x.numpy()])
    np.testing.assert_allclose(weighted, exact, atol=5e-3)
    assert np.abs(plain - exact).max() > 0.05  # q's own mean is not the posterior mean


def test_iwae_fit_recovers_the_sources_and_reloads_with_its_objective(tmp_path):
    scene = simulate_pnl(3, 3, 1500, 30.0, nonlinearity="original", seed=0)
    config = {"latent_dim": 3, "objective": "iwae", "mc_samples": 4, "max_epochs": 40, "seed": 0, "device": "cpu"}
    result = fit("nisca", scene, config, workdir=tmp_path, progress_bar=False)
    np.testing.assert_allclose(result.abundances.sum(1), 1.0, atol=1e-5)
    # it reaches 0.056 (the ELBO 0.074); predicting the mean fractions scores about 0.24
    assert result.metrics["abundance_rmse"] < 0.12, result.metrics["abundance_rmse"]
    assert load_checkpoint(result.checkpoint_path).module.objective == "iwae"


def test_unknown_objective_is_refused():
    with pytest.raises(ConfigError, match="objective"):
        fit("nisca", simulate_pnl(3, 3, 200, 30.0, seed=0), {"latent_dim": 3, "objective": "tight"}, progress_bar=False)
