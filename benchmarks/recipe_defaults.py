"""Which NISCA recipe should be the default? A small benchmark across scene kinds (MODEL.md section 7).

Recipes (settings over NiscaConfig's defaults):
    thesis         random A, f without the residual, decoder lr 1e-3, raw (unscaled) data
    thesis+scaled  the same on per-channel standardised data
    default        per-channel scaling, A from VCA, residual f(y) = y + g(y), decoder lr 3e-3, s2 learned
                   (`noise: learn`: per channel when N >= K + 2, else shared), IWAE bound with R = 8
    default-global the default with one global scale for all channels
    default-learn  one noise variance for all scaled channels, learned (`noise: learn-shared`)
    learn-channel  one noise variance per channel, learned (`noise: learn-channel`)
    default-prior  the default with the Dirichlet prior's concentration learned (`prior: learn`)
    learn-prior    noise variance (auto) and prior concentration both learned
    slow-f         the default with f's learning rate at 1e-3 (A's stays at 3e-3)
    estimate       the default with the noise variance estimated and fixed (the first round's default)
    linear-first   VASCA to early stopping, then f freed (`linear_first: true`)
    mves-init      A starts at MVES's simplex (`init: mves`)
    iwae           the importance-weighted bound with R = 8 (`objective: iwae`, `mc_samples: 8`)
    iwae-prior     iwae with the prior's concentration learned; iwae-mves-prior also starts at MVES
    elbo           the negative ELBO with R = 1 (the default until the fourth session; iwae is now)
    mves-linear-first  MVES start and linear_first together
    monotone       every f_n strictly increasing, ReLU units (`monotone: true`); monotone-tanh with tanh units
    long           a longer budget: patience 100, at most 1000 epochs (a recipe's own max_epochs beats
                   --max-epochs)
    lattice        the default training, abundances read out as the exact posterior mean (`inference: lattice`)
    refine         the default, then up to 300 epochs of exact maximum-likelihood training of the decoder
                   (`refine_epochs: 300`)
Scenes (simulate_pnl, 2000 pixels by default): thesis N=K=3 (noise from the total power, and at the SNR
of every channel) and linear N=K=3 at 20 dB, random_monotone
N=16 K=4 at 20 dB, original N=6 K=4 at 20 dB. Reports the abundance MSE and R^2 of each fit (selected on
validation loss; truth is used only to score).

    python benchmarks/recipe_defaults.py [--seeds 0 1] [--max-epochs 80] [--jobs 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

RECIPES: dict[str, dict[str, object]] = {
    "thesis": {"init": "random", "residual": False, "lr_decoder": 1e-3, "standardize": "none"},
    "thesis+scaled": {"init": "random", "residual": False, "lr_decoder": 1e-3, "standardize": "channel"},
    "default": {},
    "default-global": {"standardize": "global"},
    "default-learn": {"noise": "learn-shared"},
    "learn-channel": {"noise": "learn-channel"},
    "default-prior": {"prior": "learn"},
    "learn-prior": {"noise": "learn", "prior": "learn"},
    "slow-f": {"lr_nonlinearity": 1e-3},
    "estimate": {"noise": "estimate"},
    "linear-first": {"linear_first": True},
    "mves-init": {"init": "mves"},
    "iwae": {"objective": "iwae", "mc_samples": 8},
    "iwae-prior": {"objective": "iwae", "mc_samples": 8, "prior": "learn"},
    "iwae-mves-prior": {"objective": "iwae", "mc_samples": 8, "prior": "learn", "init": "mves"},
    "elbo": {"objective": "elbo", "mc_samples": 1},  # the default before the fourth session
    "mves-linear-first": {"init": "mves", "linear_first": True},
    "monotone": {"monotone": True},  # ReLU units with sign-coupled output weights (the sorted-knot kernel)
    "monotone-tanh": {"monotone": True, "monotone_units": "tanh"},  # the monotone form before the fifth session
    "long": {"patience": 100, "max_epochs": 1000},
    "lattice": {"inference": "lattice"},
    "refine": {"refine_epochs": 300},
    "nmf-init": {"init": "nmf"},
    "nmf-linear-first": {"init": "nmf", "linear_first": True},
}
SCENES = {  # name -> (nonlinearity, channels, K, snr[, noise reference])
    "thesis 3x3": ("thesis", 3, 3, 20.0),
    "thesis 3x3 per-channel SNR": ("thesis", 3, 3, 20.0, "channel"),
    "linear 3x3": ("linear", 3, 3, 20.0),
    "random_monotone 16x4": ("random_monotone", 16, 4, 20.0),
    "original 6x4": ("original", 6, 4, 20.0),
}


def run_one(task: tuple[str, str, int, int, int]) -> tuple[str, str, int, float, float, float]:
    import warnings

    import torch

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    from nisca import fit
    from nisca.data.synthetic import simulate_pnl

    scene_name, recipe, seed, samples, epochs = task
    nonlinearity, channels, K, snr, *reference = SCENES[scene_name]
    scene = simulate_pnl(channels, K, samples, snr, nonlinearity=nonlinearity, seed=seed,
                         noise_reference=reference[0] if reference else "total")
    start = time.perf_counter()
    result = fit("nisca", scene, {"max_epochs": epochs, **RECIPES[recipe], "seed": seed}, progress_bar=False)
    extra = {key: result.metrics[key] for key in ("nonlinear_gain", "nonlinearity_kept") if key in result.metrics}
    print(f"{scene_name}, {recipe}, seed {seed}: mse {result.metrics['abundance_mse']:.4g}, {result.epochs} epochs"
          + "".join(f", {key} {value:.3g}" for key, value in extra.items()), file=sys.stderr, flush=True)
    return (scene_name, recipe, seed, result.metrics["abundance_mse"], result.metrics["r2_nonlinearity"],
            time.perf_counter() - start)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--max-epochs", type=int, default=80)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES))
    args = parser.parse_args(argv)
    tasks = [(scene, recipe, seed, args.samples, args.max_epochs)
             for seed in args.seeds for scene in SCENES for recipe in args.recipes]
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(run_one, tasks))
    print(f"NISCA, {args.samples} pixels, at most {args.max_epochs} epochs, seeds {args.seeds}; "
          "cells: abundance MSE / R^2 (mean over seeds)")
    print("| recipe | " + " | ".join(SCENES) + " |")
    print("|---|" + "---|" * len(SCENES))
    for recipe in args.recipes:
        cells = []
        for scene in SCENES:
            picked = [r for r in results if r[0] == scene and r[1] == recipe]
            mse = sum(r[3] for r in picked) / len(picked)
            r2 = sum(r[4] for r in picked) / len(picked)
            cells.append(f"{mse:.4f} / {r2:.2f}")
        print(f"| {recipe} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
