"""`nisca fit METHOD --data FILE --latent-dim K --out DIR ...`: fit one method and write the contract files.

Settings come from `--config FILE` (YAML or JSON) and are overridden by the flags. `--max-epochs` and
`--device` apply to trained methods only.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path


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
    from nisca.data.io import load_scene
    from nisca.fit import fit
    from nisca.identifiability import IdentifiabilityWarning, identifiability_problem
    from nisca.outputs import write_fit_outputs

    settings = settings_from_args(args)
    scene = load_scene(args.data, mask=args.mask, truth_version=args.truth_version)
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
