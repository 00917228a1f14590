"""The CUDA path, checked end to end on one GPU: every trained method and training option fits on the device.

Each case fits one method on a small synthetic post-nonlinear scene (simulate_pnl, thesis nonlinearity,
seed 0) on the asked devices with the same seed, and prints one Markdown row per fit: wall time, epochs,
the resolved precision, peak GPU memory, abundance RMSE and R^2 of the learned nonlinearity against the
truth, and the validation loss. A case that raises is printed as FAILED with the error (the others still
run), so one run shows every broken path.
The quality figures let CPU and CUDA be compared: the same seed gives close, not bitwise-equal, results
(different kernels, and bf16 on wide decoders).

    python benchmarks/cuda_check.py [--devices cuda cpu] [--cases default lattice_readout ...] [--quick]

The cases: the default NISCA (5,000 x 6, K = 3, the issue's timing scene); the exact lattice readout; the
lattice objective; the exact-likelihood refinement; the ELBO objective; the monotone ReLU decoder; a
restart; VASCA; CNAE + MVES; and a 162-channel scene that takes the bf16-mixed path on CUDA (a check that
the path runs: the thesis f on 162 channels puts 0.4 exp(y), y up to about 30, in a third of them, a scene
no method fits; see benchmarks/batch_size.py).
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
import warnings
from collections.abc import Sequence
from typing import Any

import torch

#: name -> (method, scene (channels, K, pixels, SNR dB), config overrides)
CASES: dict[str, tuple[str, tuple[int, int, int, float], dict[str, Any]]] = {
    "default": ("nisca", (6, 3, 5000, 30.0), {}),
    "lattice_readout": ("nisca", (6, 3, 2000, 30.0), {"inference": "lattice", "max_epochs": 40}),
    "lattice_objective": ("nisca", (6, 3, 2000, 30.0), {"objective": "lattice", "inference": "lattice",
                                                         "max_epochs": 20}),
    "refine": ("nisca", (6, 3, 2000, 30.0), {"inference": "lattice", "max_epochs": 30, "refine_epochs": 10}),
    "elbo": ("nisca", (6, 3, 2000, 30.0), {"objective": "elbo", "max_epochs": 40}),
    "monotone_relu": ("nisca", (6, 3, 2000, 30.0), {"monotone": True, "monotone_units": "relu", "max_epochs": 40}),
    "restarts": ("nisca", (6, 3, 2000, 30.0), {"restarts": 2, "max_epochs": 20}),
    "vasca": ("vasca", (6, 3, 2000, 30.0), {"max_epochs": 40}),
    "cnae": ("cnae", (6, 3, 2000, 30.0), {"max_epochs": 40}),
    "wide_bf16": ("nisca", (162, 4, 5000, 30.0), {"max_epochs": 10}),
}


def run_case(name: str, device: str, quick: bool) -> str:
    """One fit; its Markdown row (or a FAILED row naming the error)."""
    from nisca import fit
    from nisca.data.synthetic import simulate_pnl
    from nisca.models.training import resolve_precision

    method, (channels, latent_dim, pixels, snr), overrides = CASES[name]
    if quick:
        pixels = min(pixels, 600)
        overrides = {**overrides, "max_epochs": 2}
        if "refine_epochs" in overrides:
            overrides["refine_epochs"] = 2
    scene = simulate_pnl(channels, latent_dim, pixels, snr, nonlinearity="thesis", seed=0)
    config = {"latent_dim": latent_dim, "seed": 0, "device": device, **overrides}
    label = f"{name} | {method} | {pixels}x{channels}, K={latent_dim}"
    try:
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        result = fit(method, scene, config, progress_bar=False)
        wall = time.perf_counter() - start
    except Exception as error:  # noqa: BLE001 - the point is to report every failure and go on
        traceback.print_exc()
        return f"| {label} | {device} | FAILED: {type(error).__name__}: {str(error)[:160]} | | | | | |"
    precision = "-" if method == "cnae" else resolve_precision("auto", device, channels)
    peak = f"{torch.cuda.max_memory_allocated() / 2**20:.1f}" if device == "cuda" else "-"
    m = result.metrics
    return (f"| {label} | {device} | {wall:.1f} | {result.epochs} | {precision} | {peak} "
            f"| {m.get('abundance_rmse', float('nan')):.4f} | {m.get('r2_nonlinearity', float('nan')):.3f} "
            f"| {m.get('val_loss', float('nan')):.3f} |")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", nargs="+", default=["cuda"], choices=("cpu", "cuda"))
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for torch")
    parser.add_argument("--quick", action="store_true", help="600 pixels, 2 epochs: does every path run?")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    if "cuda" in args.devices and not torch.cuda.is_available():
        print("no CUDA device is visible: nothing to check on cuda")
        args.devices = [d for d in args.devices if d != "cuda"]
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, GPU {gpu}, {args.threads} CPU threads")
    print("| case | method | scene | device | wall (s) | epochs | precision | peak GPU MiB | abundance RMSE "
          "| R^2 of f | val_loss |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    failures = 0
    for name in args.cases:
        for device in args.devices:
            row = run_case(name, device, args.quick)
            failures += "FAILED" in row
            print(row, flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
