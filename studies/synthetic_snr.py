"""Every method across SNR levels with seeds: the thesis' synthetic sweep, on Ray (grid, no search).

Data: simulate_pnl(channels=3, latent_dim=3, samples=1000, nonlinearity="thesis" and "linear",
snr_db in {10, 20, 30}, seed=s) for generator seeds s in {0..4}; each method runs with its defaults
and fit seed 0 (the seed axis); the generator seed varies per scene. Nothing is selected: every trial's truth metrics (abundance_mse,
subspace_distance, r2_nonlinearity) are the result, read per method and SNR with `nisca report`.

    python studies/synthetic_snr.py [--smoke] [--storage PATH] [--address ADDR]
"""

from __future__ import annotations

import sys

from nisca.methods import METHODS
from nisca.tune.main import study_main
from nisca.tune.spec import StudySpec

SNRS = (10.0, 20.0, 30.0)
SEEDS = (0, 1, 2, 3, 4)
TRAINED = {"max_epochs": 150, "patience": 20}


def scene(snr_db: float, nonlinearity: str, seed: int) -> dict:
    return {"synthetic": {"channels": 3, "latent_dim": 3, "samples": 1000, "snr_db": snr_db,
                          "nonlinearity": nonlinearity, "seed": seed}}


def build_spec(smoke: bool = False) -> StudySpec:
    scenes = {f"{nl}-{snr:g}db-seed{seed}": scene(snr, nl, seed)
              for nl in ("thesis", "linear") for snr in SNRS for seed in SEEDS}
    # One trial per (method, scene): the scene's generator seed is the trial's seed axis here.
    methods = {name: ({} if not spec.trained else {"patience": TRAINED["patience"]}) for name, spec in METHODS.items()}
    smoke_scenes = {"thesis-20db-seed0": {"synthetic": {**scene(20.0, "thesis", 0)["synthetic"], "samples": 300}}}
    return StudySpec(
        name="synthetic-snr",
        description="every method x SNR {10,20,30} dB x thesis/linear generator x 5 generator seeds",
        scenes=scenes,
        methods=methods,
        searcher="grid",
        scheduler="none",
        num_samples=1,
        max_epochs=TRAINED["max_epochs"],
        seeds=(0,),
        resources={"cpu": 1},
        max_concurrent_trials=2,
        smoke={"scenes": smoke_scenes, "methods": {"nisca": {"patience": 5}, "vca": {}, "pca": {}}},
    )


if __name__ == "__main__":
    sys.exit(study_main(__file__))
