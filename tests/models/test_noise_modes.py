"""The learned noise variance: one per channel when the data allow it, shared otherwise."""

from __future__ import annotations

import pytest

from nisca import fit
from nisca.data.synthetic import simulate_pnl
from nisca.models.nisca import load_checkpoint
from nisca.models.training import noise_per_channel


@pytest.mark.parametrize(("noise", "channels", "K", "expected"), [
    ("learn", 3, 3, False), ("learn", 4, 3, False), ("learn", 5, 3, True), ("learn", 162, 4, True),
    ("learn-shared", 162, 4, False), ("learn-channel", 3, 3, True), ("estimate", 162, 4, False),
])
def test_learn_picks_per_channel_variances_only_with_three_noise_directions(noise, channels, K, expected):
    assert noise_per_channel(noise, channels, K) is expected


def test_per_channel_variances_follow_unequal_channel_noise(tmp_path):
    """White noise in data units on channels of very different spread: after per-channel scaling each
    channel has its own noise level, and the per-channel learned variances must tell them apart."""
    scene = simulate_pnl(8, 3, 1500, 15.0, nonlinearity="random_monotone", seed=2)
    true_scaled = scene.truth.noise_variance / scene.Y.var(axis=0)
    result = fit("vasca", scene, {"noise": "learn", "max_epochs": 25, "seed": 0}, workdir=tmp_path,
                 progress_bar=False)
    learned = load_checkpoint(result.checkpoint_path).module.noise_variance().detach().numpy()
    assert learned.shape == (8,) and len(set(learned.round(6).tolist())) == 8
    # the ranking of channels by noise level is recovered (their scaled noise spans a factor of 22)
    from scipy.stats import spearmanr

    assert spearmanr(learned, true_scaled).statistic > 0.8
