"""NISCA and VASCA on Urban (162 bands), K over {4, 5, 6}, each against the matching ground truth.

Data: the real HYDICE Urban image from the data cache when present (`nisca data fetch urban`);
otherwise the semi-real Urban built from its ground truth, Y = f(E A) + noise at 30 dB with the
thesis nonlinearity (nisca.data.semireal.build_semireal_urban). The study prints which one it uses
and its data.json records it. Optuna searches learning rates, encoder widths, the nonlinearity's
width, batch size, monotone or not, the noise-variance mode and the MC samples; K is searched too
(a categorical over the three scenes) and chosen by validation loss like everything else. ASHA stops
weak trials. Truth metrics are reported against the truth with the trial's K, never used to select.

    python studies/urban_sweep.py [--smoke] [--storage PATH] [--address ADDR]
"""

from __future__ import annotations

import sys

from ray import tune

from nisca.tune.main import study_main
from nisca.tune.spec import StudySpec

KS = (4, 5, 6)


def urban_scenes(smoke: bool) -> dict[str, dict]:
    """Real Urban (cache) with its K-endmember truths, else semi-real Urban; says which."""
    from nisca.data.catalog import available_scene

    if available_scene("urban") is not None:
        print("urban-sweep: using the real Urban image from the data cache")
        scenes = {f"urban-real-k{k}": {"catalog": "urban", "truth_version": str(k)} for k in KS}
        if smoke:
            scenes = {name: {**scene, "max_pixels": 400} for name, scene in scenes.items()}
        return scenes
    print("urban-sweep: the real Urban image is not in the data cache: using SEMI-REAL Urban "
          "(Urban's ground truth, thesis nonlinearity, 30 dB)")
    crop = {"crop": [20, 20], "offset": [100, 100]} if smoke else {}
    return {f"urban-semireal-k{k}": {"semireal_urban": {"latent_dim": k, "snr_db": 30.0, "nonlinearity": "thesis",
                                                        "seed": 0, **crop}} for k in KS}


def build_spec(smoke: bool = False) -> StudySpec:
    shared = {
        "lr_encoder": tune.loguniform(1e-3, 3e-2),
        "lr_decoder": tune.loguniform(1e-4, 1e-2),
        "encoder_hidden": tune.choice([[128], [256, 128], [256, 256]]),
        "batch_size": tune.choice([128, 256, 512]),
        "noise": tune.choice(["learn", "learn-shared", "estimate"]),
        "prior": tune.choice(["flat", "learn"]),  # not mc_samples: under the IWAE bound R changes val_loss
        "inference_samples": 32,  # K = 6 only: K = 4 and 5 are read out on the lattice
    }
    return StudySpec(
        name="urban-sweep",
        description="NISCA vs VASCA on Urban (real if cached, else semi-real), K in {4, 5, 6}",
        scenes=urban_scenes(smoke),
        methods={"nisca": {**shared, "monotone": tune.choice([False, True]),
                           "nonlinearity_hidden": tune.choice([16, 64, 128])},
                 "vasca": shared},
        num_samples=40,
        max_epochs=100,
        grace_period=5,
        resources={"cpu": 2, "gpu": 0.25},  # four trials share one GPU on a cluster node
        max_concurrent_trials=8,
        smoke={"num_samples": 2, "max_epochs": 2, "resources": {"cpu": 1}, "max_concurrent_trials": 2},
    )


if __name__ == "__main__":
    sys.exit(study_main(__file__))
