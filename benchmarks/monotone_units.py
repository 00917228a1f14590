"""Wall time of a short NISCA fit on a real scene: free f, monotone f with ReLU units, monotone f with tanh units.

Each fit runs `--epochs` epochs plus the start (VCA) and the importance-weighted inference over every
pixel, on one torch thread. The ReLU units (`monotone_units: relu`) run on the sorted-knot kernel like
the free f; the tanh units need the dense batch x channels x hidden form. An untimed one-epoch fit
first pays the warm-up of the process (about 2 s, which would otherwise go to whichever fit runs first).

    python benchmarks/monotone_units.py [--scene Urban_subimage_34x78.npz] [--epochs 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("NISCA_SHARED_DATA", REPO.parent / "shared" / "data"))
VARIANTS = {
    "free f (default)": {},
    "monotone, relu units": {"monotone": True, "monotone_units": "relu"},
    "monotone, tanh units": {"monotone": True, "monotone_units": "tanh"},
}


def main(argv: list[str] | None = None) -> int:
    import torch

    from nisca.data import io
    from nisca.errors import NiscaError
    from nisca.fit import fit

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scene", default="Urban_subimage_34x78.npz", help="a file in <data>/hyperspectral")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    try:
        scene = io.load_scene(args.data / "hyperspectral" / args.scene)
    except NiscaError as error:
        print(f"error: {error} (set --data or NISCA_SHARED_DATA)", file=sys.stderr)
        return 2
    K = scene.truth.n_components
    print(f"{scene.name}: {scene.n_pixels} pixels x {scene.n_channels} channels, K = {K}, {args.epochs} epochs, 1 thread")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # identifiability note: K and N are stated
        fit("nisca", scene, {"latent_dim": K, "seed": 0, "max_epochs": 1}, progress_bar=False)  # warm-up
        for label, extra in VARIANTS.items():
            start = time.perf_counter()
            result = fit("nisca", scene, {"latent_dim": K, "seed": 0, "max_epochs": args.epochs, **extra},
                         progress_bar=False)
            print(f"| {label} | {time.perf_counter() - start:.1f} s | {result.epochs} epochs |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
