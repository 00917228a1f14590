"""Choosing K by validation loss (negative ELBO): does the platform find the true K?

Data: simulate_pnl(channels=8, latent_dim=4, samples=2000, snr_db=30, nonlinearity="thesis", seed=0)
(true K = 4) and the semi-real Urban 60 x 60 crop at offset (100, 100) with its 5-endmember truth
(true K = 5; thesis nonlinearity, 30 dB). NISCA runs with defaults (fewer epochs) at every K in
{2..7} and seeds {0, 1, 2}; per scene the K with the lowest mean validation loss is the choice.
Ground truth is used only to say whether the choice was right.

    python studies/latent_dim.py [--smoke] [--storage PATH] [--address ADDR]
"""

from __future__ import annotations

import sys

from nisca.tune.main import study_main
from nisca.tune.spec import StudySpec

TRUE_K = {"synthetic-k4": 4, "semireal-urban-k5": 5}


def build_spec(smoke: bool = False) -> StudySpec:
    scenes = {
        "synthetic-k4": {"synthetic": {"channels": 8, "latent_dim": 4, "samples": 2000, "snr_db": 30.0,
                                       "nonlinearity": "thesis", "seed": 0}},
        "semireal-urban-k5": {"semireal_urban": {"latent_dim": 5, "snr_db": 30.0, "nonlinearity": "thesis",
                                                 "seed": 0, "crop": [60, 60], "offset": [100, 100]}},
    }
    return StudySpec(
        name="latent-dim",
        description="NISCA at K = 2..7 on a synthetic (K=4) and a semi-real Urban (K=5) scene; K by val_loss",
        scenes=scenes,
        methods={"nisca": {"patience": 10, "inference_samples": 16}},  # samples for K = 6, 7 (lattice below)
        latent_dims=(2, 3, 4, 5, 6, 7),
        seeds=(0, 1, 2),
        searcher="grid",
        scheduler="none",
        num_samples=1,
        max_epochs=80,
        resources={"cpu": 1},
        smoke={"latent_dims": (3, 4), "seeds": (0,), "max_epochs": 2,
               "scenes": {"synthetic-k4": {"synthetic": {**scenes["synthetic-k4"]["synthetic"], "samples": 300}}}},
    )


def summarize(results, echo=print) -> dict[str, dict]:
    """Per scene: mean val_loss per K, the chosen K, and whether it is the true one."""
    frame = results.get_dataframe()
    out = {}
    for scene, part in frame.groupby("config/scene"):
        means = part.groupby("config/latent_dim")["val_loss"].mean().sort_index()
        chosen = int(means.idxmin())
        out[scene] = {"val_loss_by_k": {int(k): float(v) for k, v in means.items()}, "chosen_k": chosen,
                      "true_k": TRUE_K.get(scene), "correct": chosen == TRUE_K.get(scene)}
        echo(f"{scene}: mean val_loss by K {out[scene]['val_loss_by_k']} -> K = {chosen} "
             f"(true K = {TRUE_K.get(scene)}: {'found' if out[scene]['correct'] else 'missed'})")
    return out


if __name__ == "__main__":
    sys.exit(study_main(__file__))
