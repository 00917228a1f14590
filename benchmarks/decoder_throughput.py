"""Decoder throughput: the batched per-channel nonlinearity against a loop of N small networks.

For N in {3, 16, 162, 224} channels, K = 5, 128 hidden units per channel, the decoder z -> f(A z) runs
forward + backward (squared error against a random target) over one epoch of `--samples` pixels in
batches of `--batch-size` (the fastest of `--repeats` epochs). Prints, per N and device: seconds per epoch, samples/s, the speed-up of the
batched layer, and the memory saved for backward (bytes of tensors autograd keeps, measured with
saved-tensor hooks; on CUDA also torch.cuda.max_memory_allocated). The weights are not updated, so the
previous step's knot order still sorts every channel and the batched layer skips its knot sort (while
training, the channels whose knots crossed since the last step are sorted again, all of them when more than
a quarter did: see `_sort_knots` in nisca/models/layers.py; the first call sorts from scratch).

    python benchmarks/decoder_throughput.py                 # CPU (1 thread), and CUDA when present
    python benchmarks/decoder_throughput.py --devices cuda   # CUDA only
    python benchmarks/decoder_throughput.py --layers 3       # CNAE's `layers: 3` (ChannelwiseDeepMLP) vs a loop
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import torch
from torch import nn

from nisca.models.layers import ChannelwiseDeepMLP, ChannelwiseMLP


class LoopDecoder(nn.Module):
    """The reference: one nn.Sequential(Linear(1, H), ReLU, [Linear(H, H), ReLU] x (layers - 1), Linear(H, 1))
    per channel, called in a loop."""

    def __init__(self, n_channels: int, hidden: int, layers: int = 1) -> None:
        super().__init__()

        def network() -> nn.Sequential:
            between = [module for _ in range(layers - 1) for module in (nn.Linear(hidden, hidden), nn.ReLU())]
            return nn.Sequential(nn.Linear(1, hidden), nn.ReLU(), *between, nn.Linear(hidden, 1))

        self.nets = nn.ModuleList(network() for _ in range(n_channels))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return torch.cat([net(y[:, n : n + 1]) for n, net in enumerate(self.nets)], dim=1)


def _saved_bytes(step) -> int:
    """Bytes of tensors autograd saves for backward during one step (activation memory)."""
    total = 0

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        step()
    return total


def measure(kind: str, n_channels: int, latent_dim: int, hidden: int, samples: int, batch: int,
            device: torch.device, repeats: int = 3, layers: int = 1) -> dict[str, float]:
    torch.manual_seed(0)
    mixing = nn.Linear(latent_dim, n_channels, bias=False)
    if kind == "loop":
        nonlinearity = LoopDecoder(n_channels, hidden, layers)
    elif layers == 1:
        nonlinearity = ChannelwiseMLP(n_channels, hidden)
    else:
        nonlinearity = ChannelwiseDeepMLP(n_channels, hidden, layers)
    model = nn.Sequential(mixing, nonlinearity).to(device)
    z = torch.softmax(torch.randn(batch, latent_dim, device=device), dim=1)
    target = torch.randn(batch, n_channels, device=device)

    def step() -> None:
        model.zero_grad(set_to_none=True)
        loss = (model(z) - target).pow(2).mean()
        loss.backward()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(3):  # warm-up
        step()
    saved = _saved_bytes(step)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    steps = max(samples // batch, 1)
    seconds = float("inf")
    for _ in range(repeats):  # the fastest of a few epochs: other load on a shared machine only adds time
        sync()
        start = time.perf_counter()
        for _ in range(steps):
            step()
        sync()
        seconds = min(seconds, time.perf_counter() - start)
    result = {"epoch_s": seconds, "samples_per_s": steps * batch / seconds, "saved_mib": saved / 2**20}
    if device.type == "cuda":
        result["peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--channels", nargs="+", type=int, default=[3, 16, 162, 224])
    parser.add_argument("--latent-dim", type=int, default=5)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=1, help="hidden layers per channel network (CNAE's `layers`)")
    parser.add_argument("--samples", type=int, default=5000, help="pixels per epoch")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (1 on a shared machine)")
    parser.add_argument("--repeats", type=int, default=3, help="epochs timed per case; the fastest is kept")
    parser.add_argument("--devices", nargs="+", choices=("cpu", "cuda"), default=["cpu", "cuda"],
                        help="devices to time (cuda only when present)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    devices = [torch.device(d) for d in args.devices if d == "cpu" or torch.cuda.is_available()]
    print(f"K={args.latent_dim}, hidden={args.hidden} x {args.layers} layer(s), {args.samples} samples/epoch, "
          f"batch {args.batch_size}, "
          f"forward+backward; CPU threads={args.threads}; torch {torch.__version__}")
    print("| device | N | loop s/epoch | batched s/epoch | loop samples/s | batched samples/s | speed-up "
          "| saved for backward loop / batched (MiB) |")
    print("|---|---|---|---|---|---|---|---|")
    for device in devices:
        for n in args.channels:
            sizes = (n, args.latent_dim, args.hidden, args.samples, args.batch_size, device, args.repeats, args.layers)
            loop = measure("loop", *sizes)
            batched = measure("batched", *sizes)
            memory = f"{loop['saved_mib']:.2f} / {batched['saved_mib']:.2f}"
            if device.type == "cuda":
                memory += f" (CUDA peak {loop['peak_mib']:.1f} / {batched['peak_mib']:.1f})"
            print(f"| {device.type} | {n} | {loop['epoch_s']:.3f} | {batched['epoch_s']:.4f} "
                  f"| {loop['samples_per_s']:,.0f} | {batched['samples_per_s']:,.0f} "
                  f"| {loop['epoch_s'] / batched['epoch_s']:.1f}x | {memory} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
