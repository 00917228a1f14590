"""OptunaSearch + ASHA against random search, same trial budget: trial-epochs to reach the best val loss.

Scene: simulate_pnl(channels=6, latent_dim=3, samples=1500, snr_db=20, nonlinearity="thesis", seed=0).
Method: NISCA, search over lr_encoder, lr_decoder (log-uniform), nonlinearity_hidden and batch_size;
--trials trials of at most --epochs epochs each, 2 at a time, fit seed 0.
  A: OptunaSearch (seeded TPE) + ASHA (grace 4, reduction 3);   B: random search, no early stopping.
Target: the best validation loss found by either, plus 2 % of its magnitude. For each study, the
epoch reports of all trials are put in time order; the figure is the number of trial-epochs spent
until the best-so-far val loss first reaches the target (or all of them, if it never does).
Goal: A needs at most 35 % of B's trial-epochs. Each run prints its own figures; the machine's load
makes them noisy.

    python benchmarks/study_efficiency.py [--trials 20] [--epochs 24] [--storage DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import nisca.tune  # noqa: F401 - quiet environment first

SCENE = {"synthetic": {"channels": 6, "latent_dim": 3, "samples": 1500, "snr_db": 20.0, "nonlinearity": "thesis",
                       "seed": 0}}


def space():
    from ray import tune

    return {"lr_encoder": tune.loguniform(1e-4, 3e-2), "lr_decoder": tune.loguniform(1e-4, 3e-2),
            "nonlinearity_hidden": tune.choice([8, 32, 128]), "batch_size": tune.choice([50, 100, 300]),
            "encoder_hidden": [32, 32], "inference_samples": 8, "patience": 1000}


def epoch_reports(experiment: Path) -> list[tuple[float, float]]:
    """(timestamp, val_loss) of every per-epoch report of every trial, in time order."""
    reports = []
    for path in experiment.glob("*/result.json"):
        for line in path.read_text().splitlines():
            row = json.loads(line)
            if row.get("completed") == 0 and "val_loss" in row:
                reports.append((row["timestamp"] + row.get("time_total_s", 0.0) * 1e-6, row["val_loss"]))
    return sorted(reports)


def epochs_to_target(reports: list[tuple[float, float]], target: float) -> int:
    best = float("inf")
    for count, (_, loss) in enumerate(reports, start=1):
        best = min(best, loss)
        if best <= target:
            return count
    return len(reports)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=24)
    parser.add_argument("--storage", default=None)
    args = parser.parse_args()

    import ray

    from nisca.tune.runner import prepare, run_checked
    from nisca.tune.spec import StudySpec

    storage = args.storage or tempfile.mkdtemp(prefix="study-efficiency-")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning")
    common = dict(scenes={"syn": SCENE}, methods={"nisca": space()}, num_samples=args.trials,
                  max_epochs=args.epochs, max_concurrent_trials=2, resources={"cpu": 1}, searcher_seed=0)
    studies = {
        "optuna+asha": StudySpec(name="efficiency-optuna-asha", searcher="optuna", scheduler="asha",
                                 grace_period=4, reduction_factor=3, **common),
        "random": StudySpec(name="efficiency-random", searcher="random", scheduler="none", **common),
    }
    reports = {}
    for label, spec in studies.items():
        checked, experiment = prepare(spec, storage=storage)
        results = run_checked(checked, experiment, verbose=0, echo=lambda line: None)
        reports[label] = epoch_reports(Path(experiment))
        print(f"{label}: {len(results)} trials, {results.num_errors} errors, {len(reports[label])} trial-epochs, "
              f"best val_loss {min(loss for _, loss in reports[label]):.4f}")
    ray.shutdown()
    best = min(loss for runs in reports.values() for _, loss in runs)
    target = best + 0.02 * abs(best)
    needed = {label: epochs_to_target(runs, target) for label, runs in reports.items()}
    reached = {label: min(loss for _, loss in runs) <= target for label, runs in reports.items()}
    for label in studies:
        print(f"{label}: {needed[label]} trial-epochs to reach val_loss <= {target:.4f}"
              f"{'' if reached[label] else ' (never reached: all epochs counted)'}")
    print(f"Optuna+ASHA / random = {needed['optuna+asha'] / needed['random']:.0%} (goal <= 35 %); "
          f"experiments in {storage}")


if __name__ == "__main__":
    main()
