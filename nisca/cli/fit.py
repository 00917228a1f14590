"""`nisca fit METHOD --data FILE --latent-dim K --out DIR ...`: fit one method and write the contract files.

Settings come from `--config FILE` (YAML or JSON) and are overridden by the flags. `--max-epochs` and
`--device` apply to trained methods only.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from nisca.errors import NiscaError


def register(subparsers: argparse._SubParsersAction) -> None:
    from nisca.methods import METHODS

    parser = subparsers.add_parser(
        "fit",
        help="fit an unmixing method to a scene and write abundances, endmembers, metrics and plots",
        description="Fit METHOD to the scene in --data and write abundances.npy, endmembers.npy, "
        "metrics.json, config.json, the checkpoint (trained methods) and pictures into --out.",
    )
    parser.add_argument("method", metavar="METHOD", choices=sorted(METHODS), help=f"one of: {', '.join(METHODS)}")
    parser.add_argument("--data", required=True, metavar="FILE", help="scene file (.npz .h5 .mat .npy .nii.gz)")
    parser.add_argument("--latent-dim", required=True, type=int, metavar="K", help="number of components K")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    parser.add_argument("--seed", type=int, default=None, metavar="S", help="random seed (0 is a seed)")
    parser.add_argument("--max-epochs", type=int, default=None, metavar="N", help="epoch cap (trained methods)")
    parser.add_argument("--config", default=None, metavar="FILE", help="YAML/JSON file of method settings")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None, help="trained methods only")
    parser.add_argument("--mask", default=None, metavar="FILE", help="NIfTI mask: voxels inside become pixels")
    parser.add_argument("--truth-version", default=None, metavar="V", help="ground-truth version to score against")
    dce = parser.add_argument_group(
        "DCE-MRI", "convert SPGR signal to concentration before unmixing (values not given come from the BIDS sidecar)")
    dce.add_argument("--to-concentration", action="store_true", help="unmix concentration curves instead of signal")
    dce.add_argument("--t10", default=None, metavar="S|FILE", help="pre-contrast T1 in seconds, or a NIfTI map of it")
    dce.add_argument("--flip-angle", type=float, default=None, metavar="DEG", help="flip angle in degrees")
    dce.add_argument("--tr", type=float, default=None, metavar="S", help="repetition time in seconds")
    dce.add_argument("--baseline-frames", type=int, default=None, metavar="N", help="pre-contrast frames for M0")
    dce.add_argument("--r1", type=float, default=None, metavar="R1", help="relaxivity in 1/(s mM) (default 4.5)")
    parser.set_defaults(handler=handle)


def settings_from_args(args: argparse.Namespace) -> dict:
    """The method's settings: the config file, then the flags on top."""
    from nisca.config import load_config_file
    from nisca.errors import ConfigError
    from nisca.methods import METHODS, get_method

    spec = get_method(args.method)
    settings = load_config_file(args.config) if args.config else {}
    settings["latent_dim"] = args.latent_dim
    if args.seed is not None:
        settings["seed"] = args.seed
    for flag, key in (("--max-epochs", "max_epochs"), ("--device", "device")):
        value = getattr(args, key)
        if value is None:
            continue
        if not spec.trained:
            trained = ", ".join(name for name, other in METHODS.items() if other.trained)
            raise ConfigError(f"{flag} applies to trained methods ({trained}); '{args.method}' is not trained")
        settings[key] = value
    return settings


def handle(args: argparse.Namespace) -> int:
    from nisca.data.dce_convert import require_frame_times
    from nisca.data.io import load_scene
    from nisca.data.scene import VolumeGeometry
    from nisca.fit import fit
    from nisca.identifiability import IdentifiabilityWarning, identifiability_problem
    from nisca.outputs import write_fit_outputs

    settings = settings_from_args(args)
    scene = load_scene(args.data, mask=args.mask, truth_version=args.truth_version)
    if isinstance(scene.geometry, VolumeGeometry):
        require_frame_times(scene)  # a 4-D file whose 4th axis is not time is refused here
    if args.to_concentration:
        scene = to_concentration(scene, args)
    if args.method in ("nisca", "cnae"):
        problem = identifiability_problem(args.latent_dim, scene.n_channels)
        if problem:
            print(f"nisca: warning: {problem}", file=sys.stderr)
    out = Path(args.out)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IdentifiabilityWarning)  # printed above, once
        result = fit(args.method, scene, settings, workdir=out, progress_bar=sys.stderr.isatty())
    written = write_fit_outputs(result, scene, out)
    shown = {key: round(value, 6) for key, value in result.metrics.items()
             if key in ("abundance_rmse", "abundance_mse", "sad_deg", "r2_nonlinearity", "val_loss")}
    print(f"{args.method}: {result.epochs} epochs, {result.wall_time_s:.1f} s; {shown}")
    print(f"wrote {len(written)} files to {out}")
    return 0


def to_concentration(scene, args: argparse.Namespace):
    """The scene converted to concentration with the sequence given by flags or the sidecar."""
    from nisca.data.dce_convert import sequence_from_sidecar, signal_scene_to_concentration

    r1 = args.r1 if args.r1 is not None else (sequence_from_sidecar(args.data).r1 or 4.5)
    t10 = args.t10
    if t10 is not None and not Path(t10).exists():
        try:
            t10 = float(t10)
        except ValueError:
            raise NiscaError(f"--t10 must be seconds or an existing NIfTI file, got {args.t10!r}") from None
    return signal_scene_to_concentration(
        scene, t10_s=t10, flip_angle_deg=args.flip_angle, tr_s=args.tr,
        r1=r1, n_baseline=args.baseline_frames)
