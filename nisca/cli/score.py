"""`nisca score --truth SCENE_FILE --estimate DIR`: score saved estimates against a scene's ground truth.

DIR holds abundances.npy (pixels x K) and, when the method has them, endmembers.npy (channels x K),
linear_mixture.npy and reconstruction.npy (pixels x channels) and mixing.npy (channels x K).
The metrics (MODEL.md section 4) are printed as one JSON object on stdout.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from nisca.errors import DataError

if TYPE_CHECKING:
    import numpy as np

    from nisca.data.scene import Scene

REQUIRED = "abundances"
OPTIONAL = ("endmembers", "linear_mixture", "reconstruction", "mixing")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "score",
        help="score saved estimates (abundances.npy, endmembers.npy, ...) against a scene's ground truth",
        description="Match the estimated components to the true ones (Hungarian on abundance MSE) and "
        "print every metric the files allow as JSON.",
    )
    parser.add_argument("--truth", required=True, type=Path, metavar="SCENE_FILE", help="scene file with ground truth")
    parser.add_argument(
        "--estimate", required=True, type=Path, metavar="DIR",
        help="folder with abundances.npy (pixels x K) and optionally endmembers.npy (channels x K), "
        "linear_mixture.npy, reconstruction.npy (pixels x channels), mixing.npy (channels x K)",
    )
    parser.add_argument(
        "--truth-version", default=None, metavar="V",
        help="which ground truth of the scene to score against, for scenes that ship several "
        "(e.g. Samson's 'original' or 'misicnet'); default: the scene's default truth",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import json

    from nisca.metrics import score

    scene = load_truth_scene(args.truth, args.truth_version)
    estimates = load_estimates(args.estimate)
    metrics = score(scene, **estimates)
    label = scene.truth.label if scene.truth is not None else None
    print(json.dumps({"scene": scene.name, "truth_version": label, **metrics}, indent=2))
    return 0


def load_truth_scene(path: Path, version: str | None = None) -> Scene:
    """The scene at `path` with the requested truth version; refuses a scene without ground truth."""
    from nisca.data.io import load_scene

    scene = load_scene(path, truth_version=version)
    truth = scene.truth
    if truth is None or (truth.abundances is None and truth.endmembers is None):
        raise DataError(f"{path}: the scene has no ground truth (abundances or endmembers) to score against")
    return scene


def load_estimates(folder: Path) -> dict[str, np.ndarray]:
    """The estimate arrays found in `folder` (abundances.npy required), keyed like score()'s arguments."""
    import numpy as np

    if not folder.is_dir():
        raise DataError(f"{folder}: the estimate folder does not exist")
    found = {}
    for key in (REQUIRED, *OPTIONAL):
        file = folder / f"{key}.npy"
        if not file.is_file():
            if key == REQUIRED:
                raise DataError(f"{file}: missing; the estimate folder must hold abundances.npy (pixels x K)")
            continue
        try:
            found[key] = np.load(file, allow_pickle=False)
        except (OSError, ValueError, EOFError) as error:
            raise DataError(f"{file}: not a readable .npy array ({error})") from None
    return found
