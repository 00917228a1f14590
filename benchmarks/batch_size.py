"""Does a larger batch train NISCA as well on a wide scene, and how much sooner does it finish?

On a GPU a step at batch 100 is bound by kernel launches, so batch 1,000 runs an epoch of a wide scene
9-10x faster (docs/results.md, "The CUDA path, second look"); but it takes 10x fewer steps per epoch at the
same learning rates. This script fits NISCA's defaults on a wide synthetic post-nonlinear scene with
ground truth (simulate_pnl, every channel at the stated SNR) at each `--batch-size`, and prints
per fit: epochs, wall time, the validation loss (the ground-truth-free criterion) and, for reading only,
abundance RMSE and R^2 of the learned nonlinearity against the truth.

The generator is "random_monotone" (a smooth increasing f per channel) by default. The thesis generator
is meant for a few channels: on a wide scene a third of its channels are 0.4 exp(y) with y = 10 N(0, 1) z,
|x| up to 4e9-3e10, which no method fits (156 channels, K = 3, 5,000 pixels, 30 dB, seeds 0-1: abundance
RMSE 0.51 for VCA + FCLS, 0.45-0.51 for NMF; NISCA 0.27-0.52 over seeds 0-3 at either batch size).

    python benchmarks/batch_size.py [--device cuda] [--batch-size 100 1000] [--seeds 0 1] [--channels 156]
        [--pixels 9025] [--snr 30] [--generator random_monotone] [--max-epochs 300] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Sequence

import torch


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--batch-size", nargs="+", type=int, default=[100, 1000])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--channels", type=int, default=156)
    parser.add_argument("--latent-dim", type=int, default=3)
    parser.add_argument("--pixels", type=int, default=9025)
    parser.add_argument("--snr", type=float, default=30.0)
    parser.add_argument("--generator", default="random_monotone", help="simulate_pnl's nonlinearity")
    parser.add_argument("--max-epochs", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a NISCA config key for every fit (JSON value)")
    parser.add_argument("--header", action=argparse.BooleanOptionalAction, default=True,
                        help="print the table header (off to append rows from parallel runs)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    from nisca import fit
    from nisca.config import parse_assignment
    from nisca.data.synthetic import simulate_pnl

    overrides = dict(parse_assignment(text) for text in args.overrides)
    if args.header:
        print(f"simulate_pnl({args.channels} channels, K = {args.latent_dim}, {args.pixels} pixels, "
              f"{args.snr:g} dB per channel, {args.generator}); NISCA defaults, at most {args.max_epochs} epochs, "
              f"{overrides or 'no overrides'}; torch {torch.__version__}")
        print("| device | batch | seed | epochs | wall (s) | val_loss | abundance RMSE | R^2 of f |")
        print("|---|---|---|---|---|---|---|---|")
    for seed in args.seeds:
        scene = simulate_pnl(args.channels, args.latent_dim, args.pixels, args.snr, nonlinearity=args.generator,
                             seed=seed, noise_reference="channel")
        for batch in args.batch_size:
            config = {"latent_dim": args.latent_dim, "seed": seed, "device": args.device, "batch_size": batch,
                      "max_epochs": args.max_epochs, **overrides}
            start = time.perf_counter()
            result = fit("nisca", scene, config, progress_bar=False)
            wall = time.perf_counter() - start
            m = result.metrics
            device = result.config.get("device", args.device)
            print(f"| {device} | {batch} | {seed} | {result.epochs} | {wall:.1f} | {m['val_loss']:.3f} "
                  f"| {m['abundance_rmse']:.4f} | {m.get('r2_nonlinearity', float('nan')):.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
