"""Which explanation of a real scene does the likelihood prefer? Exact log p(x) per pixel, beside aRMSE.

For a real scene with ground truth (Samson, K = 3; the Urban sub-image, K = 4) this fits NISCA and VASCA
(their decoders f(A z)) and NMF and VCA + FCLS (linear decoders E z), and builds a linear decoder from the
ground truth's own endmembers. Each decoder is scored by the exact marginal log-likelihood of the pixels
under a flat Dirichlet(1) prior (z summed out on a lattice, nisca.models.lattice.lattice_log_likelihood),
with per-channel Gaussian noise: the learned variances for NISCA and VASCA, the residual variance of each
channel for the linear decoders. A decoder with a higher log p(x) explains the pixels better; if the
truth's endmembers score far below the fitted models, a method that maximises the likelihood is pulled
away from that truth, whatever its optimiser.

    python benchmarks/real_scene_likelihood.py [--scene urban|samson] [--seed 0] [--max-epochs 80]
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from nisca import fit
from nisca.baselines.fcls import fcls
from nisca.data import io
from nisca.data.scene import Scene
from nisca.metrics import score
from nisca.models.lattice import default_resolution, lattice_log_likelihood, simplex_lattice
from nisca.models.nisca import load_checkpoint

DATA = Path(os.environ.get("NISCA_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
SCENES = {"urban": ("Urban_subimage_34x78.npz", "4"), "samson": ("Samson.npz", "original")}


def linear_log_likelihood(scene: Scene, lattice: torch.Tensor, endmembers: np.ndarray, abundances: np.ndarray) -> float:
    """Mean log p(x) under x = E z + noise, the noise variance of each channel its residual variance."""
    endmembers = np.asarray(endmembers, dtype=np.float64)
    noise = ((scene.Y - np.asarray(abundances, dtype=np.float64) @ endmembers.T) ** 2).mean(0)
    means = lattice @ torch.as_tensor(endmembers).T
    return float(lattice_log_likelihood(torch.as_tensor(scene.Y, dtype=torch.float64), means,
                                        torch.as_tensor(noise)).mean())


def learned_log_likelihood(scene: Scene, lattice: torch.Tensor, checkpoint: str) -> float:
    """Mean log p(x) under a trained NISCA / VASCA decoder, in data units."""
    means, noise = load_checkpoint(checkpoint).module.lattice_means_in_data_units(lattice)
    return float(lattice_log_likelihood(torch.as_tensor(scene.Y, dtype=torch.float64), means, noise).mean())


def armse_pct(scene: Scene, abundances: np.ndarray) -> float:
    return 100 * score(scene, abundances=abundances)["abundance_rmse"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scene", choices=sorted(SCENES), default="urban")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-epochs", type=int, default=80)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    name, version = SCENES[args.scene]
    path = DATA / "hyperspectral" / name
    if not path.is_file():
        print(f"{path} is absent: set NISCA_SHARED_DATA to the benchmark data folder", file=sys.stderr)
        return 2
    scene = io.load_scene(path, truth_version=version)
    K = scene.truth.n_components
    lattice = simplex_lattice(K, default_resolution(K), dtype=torch.float64)
    print(f"{args.scene} (truth '{version}', {scene.Y.shape[0]} pixels x {scene.Y.shape[1]} channels, K = {K}), "
          f"seed {args.seed}, {args.max_epochs} epochs for NISCA and VASCA\n")
    print("| decoder | log p(x) per pixel | aRMSE (%) |\n|---|---|---|")
    for method in ("nisca", "vasca"):
        result = fit(method, scene, {"seed": args.seed, "max_epochs": args.max_epochs}, progress_bar=False)
        decoder = "f(A z)" if method == "nisca" else "A z"
        print(f"| {method}, {decoder} | {learned_log_likelihood(scene, lattice, result.checkpoint_path):.1f} | "
              f"{armse_pct(scene, result.abundances):.1f} |", flush=True)
    for method in ("nmf", "vca"):
        result = fit(method, scene, {"seed": args.seed}, progress_bar=False)
        print(f"| {method}, E z | {linear_log_likelihood(scene, lattice, result.endmembers, result.abundances):.1f} | "
              f"{armse_pct(scene, result.abundances):.1f} |", flush=True)
    endmembers = scene.truth.endmembers
    unmixed = fcls(scene.Y, endmembers)
    print(f"| ground truth's E, FCLS abundances | {linear_log_likelihood(scene, lattice, endmembers, unmixed):.1f} | "
          f"{armse_pct(scene, unmixed):.1f} |")
    print(f"| ground truth's E and abundances | "
          f"{linear_log_likelihood(scene, lattice, endmembers, scene.truth.abundances):.1f} | 0.0 |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
