"""One full NISCA epoch over the semi-real Urban scene (94,249 pixels x 162 bands), CPU and CUDA.

The scene is `nisca.data.semireal.build_semireal_urban` (Urban's ground truth, K = 4, the thesis
nonlinearity, 30 dB) when Urban's ground truth is found, else a random post-nonlinear scene of the same
size (said in the output). The fit runs NISCA's default config for one epoch; a callback times the
training epoch and the validation pass, and the rest of the fit (chunked posterior inference over every
pixel, endmembers, curves) is timed from the outside.

    python benchmarks/urban_epoch.py [--threads 2] [--devices cpu cuda] [--batch-size 100 1000]
        [--cuda-dense-limit N]

`--cuda-dense-limit` overrides `nisca.models.layers.DENSE_LIMITS["cuda"]` for this run (to time the
decoder's dense and piecewise forms in whole fits; see benchmarks/dense_limit.py).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Sequence

import lightning as L
import torch


class EpochTimer(L.Callback):
    """Wall time of the training epoch and of the validation pass (CUDA synchronised)."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}

    def _now(self, plan) -> float:
        if plan.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter()

    def on_train_epoch_start(self, trainer, plan):
        self.times["train_start"] = self._now(plan)

    def on_validation_epoch_start(self, trainer, plan):
        self.times["train_s"] = self._now(plan) - self.times["train_start"]
        self.times["val_start"] = self._now(plan)

    def on_validation_epoch_end(self, trainer, plan):
        self.times["val_s"] = self._now(plan) - self.times["val_start"]


def build_scene(seed: int):
    from nisca.data.semireal import build_semireal_urban
    from nisca.data.synthetic import simulate_pnl
    from nisca.errors import DataError

    try:
        return build_semireal_urban(4, 30.0, "thesis", seed), "semi-real Urban (K=4, thesis f, 30 dB)"
    except DataError as error:
        print(f"Urban ground truth unavailable ({error}); using a random PNL scene of the same size")
        return simulate_pnl(162, 4, 94_249, 30.0, nonlinearity="random_monotone", seed=seed), "random PNL 94249x162"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for torch")
    parser.add_argument("--devices", nargs="+", default=["cpu", "cuda"], help="devices to time (cuda if present)")
    parser.add_argument("--batch-size", nargs="+", type=int, default=[100])
    parser.add_argument("--cuda-dense-limit", type=int, default=None,
                        help="B x N x H elements below which the decoder is dense on CUDA (default: the library's)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    from nisca import fit
    from nisca.models import layers
    from nisca.models.training import resolve_precision

    if args.cuda_dense_limit is not None:
        layers.DENSE_LIMITS["cuda"] = args.cuda_dense_limit

    scene, label = build_scene(0)
    print(f"{label}: {scene.n_pixels} pixels x {scene.n_channels} channels; torch {torch.__version__}, "
          f"{args.threads} CPU threads; dense decoder below {layers.DENSE_LIMITS} B x N x H elements")
    print("| device | precision | batch | train epoch (s) | train samples/s | validation (s) | rest of fit incl. "
          "inference (s) | whole fit (s) |")
    print("|---|---|---|---|---|---|---|---|")
    for device in args.devices:
        if device == "cuda" and not torch.cuda.is_available():
            print("| cuda | - | - | no CUDA device here | | | | |")
            continue
        for batch in args.batch_size:
            timer = EpochTimer()
            start = time.perf_counter()
            result = fit("nisca", scene, {"latent_dim": 4, "max_epochs": 1, "device": device,
                                          "batch_size": batch}, [timer], progress_bar=False)
            whole = time.perf_counter() - start
            n_train = scene.n_pixels - round(0.1 * scene.n_pixels)
            rest = whole - timer.times["train_s"] - timer.times["val_s"]
            precision = resolve_precision("auto", device, scene.n_channels)  # what the fit used
            print(f"| {device} | {precision} | {batch} | {timer.times['train_s']:.1f} "
                  f"| {n_train / timer.times['train_s']:,.0f} | {timer.times['val_s']:.1f} | {rest:.1f} "
                  f"| {whole:.1f} |", flush=True)
            del result
    return 0


if __name__ == "__main__":
    sys.exit(main())
