"""NISCA and VASCA on Samson (95 x 95 pixels, 156 bands, K = 3): Optuna search + ASHA on validation loss.

Data: Samson from the data cache (`nisca data fetch samson` / `nisca data import samson ...`) or, when
absent there, ../shared/data/hyperspectral/Samson.npz. Truth metrics are reported against the
"original" ground truth (the file also ships "misicnet"; `nisca report` can rescore against it);
the search never sees either.

    python studies/samson_sweep.py [--smoke] [--storage PATH] [--address ADDR]
"""

from __future__ import annotations

import sys

from ray import tune

from nisca.errors import DataError
from nisca.tune.main import study_main
from nisca.tune.spec import StudySpec

TRUTH = "original"


def samson_scene() -> dict:
    """The cached catalog scene, else the shared benchmark file; a DataError saying how to get it."""
    from nisca.data.catalog import available_scene, shared_data_dir

    if available_scene("samson") is not None:
        return {"catalog": "samson", "truth_version": TRUTH}
    shared = shared_data_dir() / "hyperspectral" / "Samson.npz"
    if shared.is_file():
        return {"file": str(shared), "truth_version": TRUTH}
    raise DataError(f"Samson is neither in the data cache nor at {shared}: run `nisca data fetch samson` "
                    "(or download it and `nisca data import samson FILE`), or set NISCA_SHARED_DATA")


def build_spec(smoke: bool = False) -> StudySpec:
    space = {
        "lr_encoder": tune.loguniform(1e-3, 3e-2),
        "lr_decoder": tune.loguniform(1e-4, 1e-2),
        "encoder_hidden": tune.choice([[64], [128, 128], [256, 128]]),
        "batch_size": tune.choice([64, 128, 256]),
        "prior": tune.choice(["flat", "learn"]),  # not mc_samples: under the IWAE bound R changes val_loss
    }
    return StudySpec(
        name="samson-sweep",
        description=f"NISCA (+ monotone option) and VASCA on Samson, truth version {TRUTH!r} for reporting only",
        scenes={f"samson-{TRUTH}": samson_scene()},
        methods={"nisca": {**space, "monotone": tune.choice([False, True]),
                           "nonlinearity_hidden": tune.choice([16, 64, 128])},
                 "vasca": space},
        num_samples=24,
        max_epochs=200,
        grace_period=10,
        resources={"cpu": 1, "gpu": 0},
        smoke={"num_samples": 2, "max_epochs": 2},
    )


if __name__ == "__main__":
    sys.exit(study_main(__file__))
