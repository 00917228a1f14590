"""Which blind score ranks NISCA's starts the way their recovery does? One thesis scene, several starts.

`restarts` trains the model from several starts (init seeds seed, seed + 1, ...; the same validation
split) and keeps one: by the validation loss (`restart_choice: val_loss`, the held-out 10 %) or by the
exact log-likelihood of every pixel (`restart_choice: likelihood`). This script trains each start of one
scene of the thesis benchmark (studies/thesis_tables.py: N = K = 3, 3000 pixels, noise per channel) and
prints, per start, both blind scores beside what they should predict (latent MSE and R^2 against the
truth), so one can see which score picks the start that recovers best. The truth is used only to score.

    python benchmarks/restart_ranking.py [--snr 30] [--seed 2] [--starts 3] [--first-start 0] [--set refine_epochs=300 ...]

Default config: NISCA's defaults with at most 300 epochs and `refine_epochs: 300` (A7's restarts).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--snr", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=2, help="scene seed = validation split seed")
    parser.add_argument("--starts", type=int, default=3)
    parser.add_argument("--first-start", type=int, default=0,
                        help="index of the first start (init seed = seed + index), to split starts over processes")
    parser.add_argument("--samples", type=int, default=3000)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "studies"))
    from thesis_tables import make_scene

    from nisca.config import parse_assignment
    from nisca.fit import FitContext
    from nisca.metrics import score
    from nisca.models import nisca
    from nisca.models.lattice import default_resolution, lattice_log_likelihood, simplex_lattice

    torch.set_num_threads(1)
    scene = make_scene("nonlinear", args.snr, args.seed, args.samples, "channel")
    settings = {"latent_dim": 3, "seed": args.seed, "max_epochs": 300, "refine_epochs": 300, "device": "cpu"}
    settings.update(dict(parse_assignment(text) for text in args.overrides))
    config = nisca.NiscaConfig(**settings)
    config.validate()
    # the steps of nisca.run_variational, one start at a time, so that every start can be scored
    Y = scene.Y.astype(np.float64)
    offset, scale = nisca.scaling(Y, config.standardize)
    x = ((Y - offset) / scale).astype(np.float32)
    s2 = nisca._noise_variance(Y, config)
    lattice = simplex_lattice(3, default_resolution(3))
    print(f"thesis scene, {args.snr:g} dB per channel, seed {args.seed}, {args.samples} pixels; config {settings}")
    held_out = round(args.samples * config.val_fraction)
    print(f"| start | held-out exact NLL ({held_out} pixels, scaled units) | exact log p(x), every pixel (data units) "
          "| latent MSE | R^2 | epochs |")
    print("|---|---|---|---|---|---|")
    for start in range(args.first_start, args.first_start + args.starts):
        start_config, init_seed = nisca.start_of(config, start)  # as run_variational draws its starts
        run = nisca._train_once(Y, x, start_config, FitContext(progress_bar=False), s2, offset, scale,
                                init_seed, Path(tempfile.mkdtemp(prefix="nisca-start-")))
        estimates = nisca._infer(run.plan, x, config)
        metrics = score(scene, abundances=estimates["abundances"], linear_mixture=estimates["linear_mixture"])
        means, noise = run.plan.module.lattice_means_in_data_units(lattice)
        log_likelihood = float(lattice_log_likelihood(torch.as_tensor(Y), means, noise).mean())
        print(f"| {start} | {run.score:.4f} | {log_likelihood:.4f} | {metrics['abundance_mse']:.2e} | "
              f"{metrics['r2_nonlinearity']:.4f} | {run.epochs} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
