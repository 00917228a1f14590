"""Where the dense per-channel layer stops being faster than the piecewise-linear one, per device.

`ChannelwiseMLP` evaluates its N ReLU networks in one of two exact forms: dense (two `baddbmm`s over a
B x N x H hidden tensor) or piecewise-linear (`PiecewiseLinearReLU`: sorted knots, a binary search,
prefix sums; no B x N x H tensor). `nisca.models.layers.dense_limit(device)` picks the dense form below a
number of B x N x H elements per device type. This script times one training step of each form
(forward, backward and an Adam step at lr 1e-3, so knots move as they do in training) for a grid of
channel counts N and row counts B, and prints the ratio and the crossover in B x N x H.
The rows B are what the decoder sees in one step: the batch times the Monte Carlo samples (100 x 8 with
the IWAE default), or the lattice points of the exact objective (12,000).

    python benchmarks/dense_limit.py [--devices cpu cuda] [--channels 3 16 162 224] [--rows 100 800 12000]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import torch

from nisca.models.layers import ChannelwiseMLP, dense_limit


def step_seconds(form: str, n_channels: int, rows: int, hidden: int, device: torch.device, steps: int) -> float:
    """Median wall time of one forward + backward + Adam step of one form of the layer."""
    torch.manual_seed(0)
    layer = ChannelwiseMLP(n_channels, hidden).to(device)
    forward = layer.dense_forward if form == "dense" else layer.piecewise_forward
    optimiser = torch.optim.Adam(layer.parameters(), lr=1e-3)
    y = torch.randn(rows, n_channels, device=device)
    target = torch.randn(rows, n_channels, device=device)
    times = []
    for i in range(steps + 3):  # 3 warm-up steps
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        optimiser.zero_grad(set_to_none=True)
        (forward(y) - target).pow(2).mean().backward()
        optimiser.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= 3:
            times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", nargs="+", choices=("cpu", "cuda"), default=["cpu", "cuda"])
    parser.add_argument("--channels", nargs="+", type=int, default=[3, 16, 162, 224])
    parser.add_argument("--rows", nargs="+", type=int, default=[100, 800, 4000, 12000],
                        help="rows per step (batch x samples, or lattice points)")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per case (the median is kept)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"hidden {args.hidden}; forward + backward + Adam step, median of {args.steps}; "
          f"torch {torch.__version__}; CPU threads {args.threads}")
    print("| device | N | rows | B x N x H | dense ms/step | piecewise ms/step | dense / piecewise | current form |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.devices:
        if name == "cuda" and not torch.cuda.is_available():
            print("| cuda | no CUDA device here | | | | | | |")
            continue
        device = torch.device(name)
        for n in args.channels:
            for rows in args.rows:
                size = rows * n * args.hidden
                dense = step_seconds("dense", n, rows, args.hidden, device, args.steps)
                piecewise = step_seconds("piecewise", n, rows, args.hidden, device, args.steps)
                current = "dense" if size < dense_limit(device) else "piecewise"
                print(f"| {name} | {n} | {rows} | {size:,} | {1e3 * dense:.3f} | {1e3 * piecewise:.3f} "
                      f"| {dense / piecewise:.2f} | {current} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
