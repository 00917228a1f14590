"""The default study (`make study`): NISCA and VASCA on a small synthetic post-nonlinear scene.

Optuna (seeded TPE) searches learning rates, widths and batch size; ASHA stops weak trials early;
selection is by validation loss only. A few minutes on 2 CPU cores with an embedded Ray.
Data: simulate_pnl(channels=6, latent_dim=4, samples=2000, snr_db=20, nonlinearity="random_monotone", seed=0):
a well-posed scene inside the identifiability range (3 <= K <= N <= K(K-1)/2). The "thesis" generator is
not used here: its 0.4*exp(y) channel dominates the signal power, so the noise drowns the other channels
for some seeds (see docs/results.md).

    python studies/synthetic_default.py [--smoke] [--storage PATH] [--address ADDR]
"""

from __future__ import annotations

import sys

from ray import tune

from nisca.tune.main import study_main
from nisca.tune.spec import StudySpec

COMMON = {"patience": 20}  # K = 4: abundances are read out on the lattice (no sampling)


def build_spec(smoke: bool = False) -> StudySpec:
    scene = {"synthetic": {"channels": 6, "latent_dim": 4, "samples": 2000, "snr_db": 20.0,
                           "nonlinearity": "random_monotone", "seed": 0}}
    return StudySpec(
        name="synthetic-default",
        description="NISCA vs VASCA on a 6-channel, 4-source random-monotone PNL scene at 20 dB",
        scenes={"pnl-n6-k4-20db": scene},
        methods={
            "nisca": {**COMMON,
                      "lr_encoder": tune.loguniform(1e-3, 3e-2),
                      "lr_decoder": tune.loguniform(3e-4, 1e-2),
                      "nonlinearity_hidden": tune.choice([16, 64, 128]),
                      "batch_size": tune.choice([50, 100, 200])},
            "vasca": {**COMMON,
                      "lr_encoder": tune.loguniform(1e-3, 3e-2),
                      "lr_decoder": tune.loguniform(3e-4, 1e-2),
                      "batch_size": tune.choice([50, 100, 200])},
        },
        metric="val_loss",
        mode="min",
        num_samples=12,
        max_epochs=100,
        grace_period=8,
        searcher="optuna",
        scheduler="asha",
        resources={"cpu": 1},
        max_concurrent_trials=2,
        smoke={"num_samples": 2},
    )


if __name__ == "__main__":
    sys.exit(study_main(__file__))
