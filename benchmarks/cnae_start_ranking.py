"""Does a better choice among CNAE's starts close its subspace-distance gap? Several starts per thesis scene.

CNAE's `restarts` trains g and f from several starts (seeds seed, seed + 1, ...; one validation split) and
keeps the lowest validation loss. This script trains every start of each scene of the thesis benchmark
(studies/thesis_tables.py: N = K = 3, 3000 pixels, noise per channel; the original code's generator by
default, where CNAE's published row comes from) and prints, per start, the blind scores (validation loss,
its reconstruction and constraint parts) beside what they should predict (latent MSE, subspace distance,
R^2), then the mean over scenes of the start each blind score picks and of the best start by the truth
(an oracle no fit can use). The truth is used only to score.

    python benchmarks/cnae_start_ranking.py [--snr 30] [--seeds 0 1 2] [--starts 5] [--set layers=3 ...]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

BLIND_SCORES = ("val_loss", "val_mse", "val_constraint")
TRUTH_SCORES = ("abundance_mse", "subspace_distance", "r2_nonlinearity")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--snr", type=float, default=30.0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="scene seeds (= split seeds)")
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--samples", type=int, default=3000)
    parser.add_argument("--generator", choices=["thesis", "original"], default="original")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "studies"))
    from thesis_tables import make_scene

    from nisca.config import build_config, parse_assignment
    from nisca.fit import FitContext
    from nisca.metrics import score
    from nisca.models import cnae
    from nisca.models.training import split_indices

    torch.set_num_threads(1)
    overrides = dict(parse_assignment(text) for text in args.overrides)
    print(f"{args.generator} generator, {args.snr:g} dB per channel, {args.samples} pixels; "
          f"seeds {args.seeds}; {args.starts} starts each; overrides {overrides or 'none'}")
    print("| seed | start | " + " | ".join(BLIND_SCORES + TRUTH_SCORES) + " | epochs |")
    print("|---" * (len(BLIND_SCORES) + len(TRUTH_SCORES) + 3) + "|")
    rows = []
    for seed in args.seeds:
        scene = make_scene("nonlinear", args.snr, seed, args.samples, "channel", args.generator)
        config = build_config(cnae.CnaeConfig, {"latent_dim": 3, "seed": seed, "max_epochs": 300, "device": "cpu",
                                                **overrides}, method="cnae")
        Y = scene.Y.astype(np.float64)
        train, held_out = split_indices(scene.n_pixels, config.val_fraction, config.seed)
        for start in range(args.starts):  # as cnae.run draws its starts
            run = cnae._train_once(scene, Y, config, FitContext(progress_bar=False), seed + start, (train, held_out),
                                   Path(tempfile.mkdtemp(prefix="cnae-start-")))
            x = run.module.to_network(Y)
            estimates = cnae.unmix(run.module, x, config)
            with torch.no_grad():  # the two parts of CNAE's validation loss, as its module computes them
                mse, constraint, _ = run.module._losses(torch.as_tensor(x[held_out]))
            row = {"seed": seed, "start": start, "val_loss": run.val_loss, "val_mse": float(mse),
                   "val_constraint": float((constraint**2).mean().sqrt()),
                   **score(scene, abundances=estimates["abundances"], linear_mixture=estimates["linear_mixture"]),
                   "epochs": run.epochs}
            rows.append(row)
            values = " | ".join(f"{row[name]:.4g}" for name in BLIND_SCORES + TRUTH_SCORES)
            print(f"| {seed} | {start} | {values} | {run.epochs} |", flush=True)
    print("\nMean over seeds of the start each score picks:\n")
    print("| picked by | " + " | ".join(TRUTH_SCORES) + " |")
    print("|---" * (len(TRUTH_SCORES) + 1) + "|")
    pickers = [(name, name) for name in BLIND_SCORES] + [("start 0 only", "start"),
                                                       ("oracle: lowest subspace distance", "subspace_distance")]
    for label, key in pickers:
        picked = [min((row for row in rows if row["seed"] == seed), key=lambda row: row[key]) for seed in args.seeds]
        means = " | ".join(f"{np.mean([row[name] for row in picked]):.4g}" for name in TRUTH_SCORES)
        print(f"| {label} | {means} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
