"""Seconds per epoch of the exact maximum-likelihood refinement (`refine_epochs`) on a wide scene.

The refinement trains the decoder on the exact log-likelihood: every step scores the batch against every
point of a 12,000-point simplex lattice, decoded through all N channels (docs/results.md A6). On the CPU
that made a Samson-sized epoch (156 channels, K = 3) cost 11-19 s, so the option set of A8 was out of
reach on wide scenes. This script fits NISCA on Samson (`--data`, or $NISCA_SHARED_DATA/hyperspectral/
Samson.npz; a synthetic post-nonlinear scene of the same size when absent) with `--epochs` ordinary epochs
then `--refine` refinement epochs, and prints the median wall time of each kind of training epoch and
the whole fit, per device and batch size.

    python benchmarks/refine_epoch.py [--devices cpu cuda] [--batch-size 100 1000] [--epochs 2] [--refine 3]
        [--pixels N] [--threads 2] [--cuda-dense-limit N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch


class EpochTimes(L.Callback):
    """Wall time of every training epoch of every trainer it is given to (CUDA synchronised)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._start = 0.0

    @staticmethod
    def _now(plan) -> float:
        if plan.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter()

    def on_train_epoch_start(self, trainer, plan):
        self._start = self._now(plan)

    def on_train_epoch_end(self, trainer, plan):
        self.seconds.append(self._now(plan) - self._start)


def load_scene(data: Path | None, pixels: int | None):
    """Samson (original truth) when found, else a synthetic PNL scene of its size; optionally subsampled."""
    from nisca.data import io
    from nisca.data.catalog import shared_data_dir
    from nisca.data.scene import Scene
    from nisca.data.synthetic import simulate_pnl

    root = shared_data_dir()
    path = data or root / "hyperspectral" / "Samson.npz"
    if path.is_file():
        scene, label = io.load_scene(path, truth_version="original"), f"Samson ({path})"
    elif data is not None:
        raise SystemExit(f"refine_epoch: no scene file at {data}")
    else:
        scene = simulate_pnl(156, 3, 9025, 30.0, nonlinearity="random_monotone", seed=0)
        label = f"Samson not found under {root}; simulate_pnl 9025 x 156, random_monotone f"
    if pixels is not None and pixels < scene.n_pixels:
        scene = Scene(scene.Y[:pixels], name=f"{scene.name}-first-{pixels}")  # timing only: no truth needed
        label += f", first {pixels} pixels"
    return scene, label


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", nargs="+", default=["cpu", "cuda"], choices=("cpu", "cuda"))
    parser.add_argument("--batch-size", nargs="+", type=int, default=[100])
    parser.add_argument("--epochs", type=int, default=2, help="ordinary epochs before the refinement")
    parser.add_argument("--refine", type=int, default=3, help="refinement epochs")
    parser.add_argument("--data", type=Path, default=None, help="a Samson-like scene file (default: Samson)")
    parser.add_argument("--pixels", type=int, default=None, help="use the first N pixels only")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cuda-dense-limit", type=int, default=None,
                        help="B x N x H elements below which the decoder is dense on CUDA (default: the library's)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    from nisca import fit
    from nisca.models import layers

    if args.cuda_dense_limit is not None:
        layers.DENSE_LIMITS["cuda"] = args.cuda_dense_limit
    scene, label = load_scene(args.data, args.pixels)
    print(f"{label}: {scene.n_pixels} pixels x {scene.n_channels} channels, K = 3; {args.epochs} epochs then "
          f"{args.refine} refinement epochs; torch {torch.__version__}, {args.threads} CPU threads; dense "
          f"decoder below {layers.DENSE_LIMITS} B x N x H elements")
    print("| device | batch | ordinary epoch (s) | refinement epoch (s) | whole fit (s) |")
    print("|---|---|---|---|---|")
    for device in args.devices:
        if device == "cuda" and not torch.cuda.is_available():
            print("| cuda | - | no CUDA device here | | |")
            continue
        for batch in args.batch_size:
            timer = EpochTimes()
            config = {"latent_dim": 3, "seed": 0, "device": device, "batch_size": batch, "max_epochs": args.epochs,
                      "refine_epochs": args.refine}
            start = time.perf_counter()
            fit("nisca", scene, config, [timer], progress_bar=False)
            whole = time.perf_counter() - start
            ordinary, refine = timer.seconds[: args.epochs], timer.seconds[args.epochs:]
            print(f"| {device} | {batch} | {statistics.median(ordinary):.2f} | "
                  f"{statistics.median(refine) if refine else float('nan'):.2f} | {whole:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
