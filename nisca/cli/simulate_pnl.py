"""`nisca data simulate pnl`: write a synthetic post-nonlinear mixture scene with its ground truth.

The file is the project's scene format (`nisca.data.io.save_scene`, .npz or .h5): Y (pixels x channels),
A (K x pixels), E (channels x K), plus the generator's truth: linear_mixture (pixels x channels),
mixing (channels x K), noise_variance, nonlinearity, truth_label, and every generator parameter in the
JSON string `provenance`.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from nisca.errors import DataError

NOISELESS = ("inf", "none")
SUFFIXES = (".npz", ".h5")


def register(subparsers: argparse._SubParsersAction) -> None:
    from nisca.data.synthetic import NONLINEARITIES

    parser = subparsers.add_parser(
        "pnl",
        help="post-nonlinear simplex mixture x = f(A z) + noise (MODEL.md sections 1 and 5)",
        description="Generate z ~ Dirichlet(1), y = A z, x = f(y) + N(0, s2) with s2 set from the signal "
        "power at the chosen SNR, and write it with its ground truth as a scene .npz file.",
    )
    parser.add_argument("--channels", type=int, default=3, help="N, channels per sample (default 3)")
    parser.add_argument("--latent-dim", type=int, default=3, help="K, components, 2 <= K <= N (default 3)")
    parser.add_argument("--samples", type=int, default=1000, help="T, number of samples/pixels (default 1000)")
    parser.add_argument(
        "--snr", type=_snr, default=20.0, metavar="DB",
        help="signal-to-noise ratio in dB; 'inf' or 'none' for noiseless (default 20)",
    )
    parser.add_argument(
        "--nonlinearity", default="thesis", choices=sorted(NONLINEARITIES),
        help="generator: " + "; ".join(f"{name}: {spec.description}" for name, spec in NONLINEARITIES.items()),
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (0 is a seed; default 0)")
    parser.add_argument(
        "--mixing-scale", type=float, default=None,
        help="scale of A = scale * N(0, 1) (default: the generator's, 5 for 'original', else 10)",
    )
    parser.add_argument("--pure-pixels", action="store_true", help="put the K simplex vertices among the samples")
    parser.add_argument(
        "--noise-reference", choices=("total", "channel"), default="total",
        help="'total': one noise variance from the whole signal power (MODEL.md, default); 'channel': every "
        "channel at the SNR of its own signal variance",
    )
    parser.add_argument("--out", required=True, type=Path, help="output scene file (.npz or .h5)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from nisca.data.synthetic import simulate_pnl

    from nisca.data.io import save_scene

    if args.out.suffix not in SUFFIXES:
        suffix = args.out.suffix or "no suffix"
        raise DataError(f"{args.out}: a synthetic scene is written as .npz or .h5, not {suffix}")
    scene = simulate_pnl(
        args.channels,
        args.latent_dim,
        args.samples,
        args.snr,
        nonlinearity=args.nonlinearity,
        seed=args.seed,
        mixing_scale=args.mixing_scale,
        pure_pixels=args.pure_pixels,
        noise_reference=args.noise_reference,
    )
    try:
        save_scene(scene, args.out)
    except OSError as error:
        raise DataError(f"{args.out}: cannot write the scene ({error.strerror or error})") from None
    print(f"wrote {args.out}: {scene.name} (Y {scene.n_pixels} x {scene.n_channels}, "
          f"noise variance {scene.truth.noise_variance:.4g})")
    return 0


def _snr(text: str) -> float | None:
    if text.strip().lower() in NOISELESS:
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of dB, 'inf' or 'none'") from None
    if math.isnan(value) or value == -math.inf:
        raise argparse.ArgumentTypeError(f"{text!r} is not a usable SNR")
    return None if value == math.inf else value
