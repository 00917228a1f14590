"""What the study runner adds per trial: a 1-epoch NISCA trial through Ray Tune vs a bare `fit()` call.

Measures, on one tiny synthetic scene (simulate_pnl(channels=6, latent_dim=3, samples=500, snr_db=20,
seed=0); NISCA, 1 epoch, small networks):
  - bare: `nisca.fit()` in this process (imports warm), median of --repeats calls;
  - ray start: `ray.init` of an embedded Ray (paid once per study, not per trial);
  - per trial: (wall time of `tuner.fit()` over --trials one-epoch trials run one at a time) / trials,
    minus the bare fit time. Includes scheduling, the object store, the Lightning checkpoint and
    `tune.report` each epoch, the final checkpoint with the estimates, and result logging.
Goal: under 3 s added per trial on 2 cores.

    python benchmarks/tune_overhead.py [--trials 6] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import nisca.tune  # noqa: F401 - quiet environment first

SCENE = {"synthetic": {"channels": 6, "latent_dim": 3, "samples": 500, "snr_db": 20.0, "seed": 0}}
CONFIG = {"max_epochs": 1, "batch_size": 50, "encoder_hidden": [16], "nonlinearity_hidden": 8,
          "inference_samples": 4, "device": "cpu"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import ray
    import torch

    from nisca.fit import fit
    from nisca.tune.runner import prepare, run_checked
    from nisca.tune.spec import StudySpec, build_scene

    torch.set_num_threads(1)
    scene = build_scene("syn", SCENE)
    fit("nisca", scene, CONFIG, progress_bar=False)  # warm-up: imports, first-call costs
    bare = []
    for seed in range(args.repeats):
        start = time.perf_counter()
        fit("nisca", scene, {**CONFIG, "seed": seed}, progress_bar=False)
        bare.append(time.perf_counter() - start)
    bare_s = statistics.median(bare)

    start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning")
    ray_start_s = time.perf_counter() - start

    from ray import tune

    spec = StudySpec(name="overhead", scenes={"syn": SCENE},
                     methods={"nisca": {**{k: v for k, v in CONFIG.items() if k != "max_epochs"},
                                        "lr_encoder": tune.loguniform(1e-3, 1e-2)}},
                     searcher="random", scheduler="none", num_samples=args.trials, max_epochs=1,
                     max_concurrent_trials=1, resources={"cpu": 1})
    with tempfile.TemporaryDirectory() as storage:
        checked, experiment = prepare(spec, storage=storage)
        start = time.perf_counter()
        results = run_checked(checked, experiment, verbose=0, echo=lambda line: None)
        study_s = time.perf_counter() - start
    ray.shutdown()
    assert results.num_errors == 0 and len(results) == args.trials
    per_trial = study_s / args.trials
    print(f"bare fit(), 1 epoch (median of {args.repeats}): {bare_s:.2f} s")
    print(f"embedded ray.init (once per study):            {ray_start_s:.2f} s")
    print(f"Tune study of {args.trials} one-epoch trials, one at a time: {study_s:.2f} s = {per_trial:.2f} s per trial")
    inside = statistics.mean(r.metrics["time_total_s"] for r in results)
    print(f"  of which inside the trial function (fit + reports + checkpoints): {inside:.2f} s; "
          f"scheduling, actor start-up and result handling: {per_trial - inside:.2f} s")
    print(f"added per trial by the runner: {per_trial - bare_s:.2f} s (goal < 3 s)")


if __name__ == "__main__":
    main()
