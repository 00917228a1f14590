"""`nisca score --truth SCENE_FILE --estimate DIR`: score saved estimates against a scene's ground truth.

DIR holds abundances.npy (pixels x K) and, when the method has them, endmembers.npy (channels x K),
linear_mixture.npy and reconstruction.npy (pixels x channels) and mixing.npy (channels x K).
The metrics (MODEL.md section 4) are printed as one JSON object on stdout. A NIfTI scan carries no truth
of its own: `--truth-fractions` names a 4-D fraction volume (x, y, z, K; e.g. the DCE phantom's
`fractions_probseg.nii.gz`) and `--mask` the mask the fit used, so the voxels line up with abundances.npy.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from nisca.errors import DataError

if TYPE_CHECKING:
    import numpy as np

    from nisca.data.scene import Scene, Truth

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
    parser.add_argument("--mask", type=Path, default=None, metavar="FILE",
                        help="NIfTI scans: the mask given to `nisca fit` (voxels inside it are the pixels)")
    parser.add_argument("--truth-fractions", type=Path, default=None, metavar="FILE",
                        help="NIfTI scans: the true fractions as a 4-D volume (x, y, z, K), e.g. a phantom's "
                        "fractions_probseg.nii.gz")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import json

    from nisca.metrics import score

    scene = load_truth_scene(args.truth, args.truth_version, mask=args.mask, fractions=args.truth_fractions)
    estimates = load_estimates(args.estimate)
    metrics = score(scene, **estimates)
    label = scene.truth.label if scene.truth is not None else None
    print(json.dumps({"scene": scene.name, "truth_version": label, **metrics}, indent=2))
    return 0


def load_truth_scene(path: Path, version: str | None = None, *, mask: Path | None = None,
                     fractions: Path | None = None) -> Scene:
    """The scene at `path` with the requested truth version (or the fractions of a 4-D NIfTI volume as
    its truth); refuses a scene without ground truth."""
    from nisca.data.io import load_scene

    scene = load_scene(path, truth_version=version, mask=mask)
    if fractions is not None:
        scene = scene.with_truth(_volume_fractions(fractions, scene))
    truth = scene.truth
    if truth is None or (truth.abundances is None and truth.endmembers is None):
        raise DataError(f"{path}: the scene has no ground truth (abundances or endmembers) to score against")
    return scene


def _volume_fractions(path: Path, scene: Scene) -> Truth:
    """Truth abundances read from a 4-D fraction volume at the scene's voxels (inside its mask)."""
    from nisca.data.io import load_volume_fractions
    from nisca.data.scene import Truth, VolumeGeometry

    if not isinstance(scene.geometry, VolumeGeometry):
        raise DataError(f"{path}: --truth-fractions needs a NIfTI scan as --truth, not {scene.name!r}")
    return Truth(abundances=load_volume_fractions(path, scene.geometry), label=path.name)


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
