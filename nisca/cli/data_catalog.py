"""`nisca data list | fetch NAME | import NAME FILE... | info FILE | build-urban`: the benchmark catalog,
file summaries and the semi-real Urban builder. Heavy imports happen inside the handlers."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

NONLINEARITY_CHOICES = ("thesis", "original", "linear", "random_monotone")


def register(data_subparsers: argparse._SubParsersAction) -> None:
    """Add the catalog subcommands to `nisca data`."""
    parser = data_subparsers.add_parser("list", help="the benchmark catalog and what is cached")
    parser.set_defaults(handler=run_list)

    parser = data_subparsers.add_parser("fetch", help="download a benchmark scene into the cache")
    parser.add_argument("name", metavar="NAME")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per connection (default 10)")
    parser.set_defaults(handler=run_fetch)

    parser = data_subparsers.add_parser("import", help="convert downloaded files of a benchmark into the cache")
    parser.add_argument("name", metavar="NAME")
    parser.add_argument("files", metavar="FILE", nargs="+", help="the image .mat and any ground-truth .mat files")
    parser.set_defaults(handler=run_import)

    parser = data_subparsers.add_parser("info", help="a JSON summary of a scene file")
    parser.add_argument("file", metavar="FILE")
    parser.add_argument("--mask", metavar="MASK", help="NIfTI mask choosing the voxels of a 4-D volume")
    parser.set_defaults(handler=run_info)

    parser = data_subparsers.add_parser(
        "build-urban", help="semi-real Urban: Y = f(E A) + noise from Urban's ground truth")
    parser.add_argument("--latent-dim", type=int, choices=(4, 5, 6), default=4)
    parser.add_argument("--snr", type=_snr, default=30.0, metavar="DB", help="dB, or 'inf' for noiseless")
    parser.add_argument("--nonlinearity", choices=NONLINEARITY_CHOICES, default="thesis")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, metavar="FILE", help=".npz or .h5 scene file to write")
    parser.add_argument("--crop", type=int, nargs=2, metavar=("ROWS", "COLS"), help="keep a ROWS x COLS corner")
    parser.add_argument("--offset", type=int, nargs=2, default=(0, 0), metavar=("ROW0", "COL0"))
    parser.add_argument("--ground-truth", metavar="FILE", help="Urban ground truth (default: cache, then shared data)")
    parser.set_defaults(handler=run_build_urban)


def _snr(text: str) -> float | None:
    value = float(text)
    return None if math.isinf(value) and value > 0 else value


def _log(message: str) -> None:
    print(message, file=sys.stderr)


def run_list(args: argparse.Namespace) -> int:
    from nisca.data.catalog import cache_dir, catalog_status

    print(f"cache: {cache_dir()}")
    for row in catalog_status():
        versions = ",".join(row["truth_versions"]) or "-"
        print(f"{row['name']:<8} {'cached' if row['cached'] else 'not cached':<11} truth: {versions:<17} "
              f"{row['description']}")
    return 0


def run_fetch(args: argparse.Namespace) -> int:
    from nisca.data.catalog import fetch

    print(fetch(args.name, timeout=args.timeout, log=_log))
    return 0


def run_import(args: argparse.Namespace) -> int:
    from nisca.data.catalog import import_files

    print(import_files(args.name, args.files, log=_log))
    return 0


def scene_summary(path: str, mask: str | None = None) -> dict[str, Any]:
    """What `nisca data info` prints: pixels, channels, geometry, axis, truth and checksum."""
    from nisca.data import io
    from nisca.data.scene import ImageGeometry, VolumeGeometry

    scene = io.load_scene(path, mask=mask)
    geometry: dict[str, Any] | None = None
    if isinstance(scene.geometry, ImageGeometry):
        geometry = {"kind": "image", "rows": scene.geometry.rows, "cols": scene.geometry.cols}
    elif isinstance(scene.geometry, VolumeGeometry):
        header = scene.geometry.header
        geometry = {"kind": "volume", "volume_shape": list(scene.geometry.volume_shape),
                    "voxels_in_mask": int(scene.geometry.mask.sum()),
                    "affine": scene.geometry.affine.round(6).tolist(),
                    "voxel_size": None if header is None else [float(z) for z in header.get_zooms()[:3]]}
    truth = scene.truth
    return {
        "file": scene.provenance["file"],
        "format": scene.provenance["format"],
        "sha256": scene.provenance["sha256"],
        "name": scene.name,
        "pixels": scene.n_pixels,
        "channels": scene.n_channels,
        "geometry": geometry,
        "axis": None if scene.axis is None else {
            "name": scene.axis_name, "first": float(scene.axis[0]), "last": float(scene.axis[-1])},
        "y_range": [float(scene.Y.min()), float(scene.Y.max())],
        "y_scale": scene.provenance.get("y_scale", 1.0),
        "truth": None if truth is None else {
            "K": truth.n_components, "version": truth.label,
            "versions": scene.provenance.get("truth_versions", [truth.label]),
            "abundances": truth.abundances is not None, "endmembers": truth.endmembers is not None,
            "endmember_names": scene.provenance.get("endmember_names")},
        "preprocessing": scene.provenance.get("preprocessing", []),
    }


def run_info(args: argparse.Namespace) -> int:
    print(json.dumps(scene_summary(args.file, args.mask), indent=2))
    return 0


def run_build_urban(args: argparse.Namespace) -> int:
    from nisca.data.io import file_format, save_scene
    from nisca.data.semireal import build_semireal_urban
    from nisca.errors import DataError

    if file_format(args.out) not in ("npz", "hdf5"):
        raise DataError(f"{args.out}: write the semi-real scene as .npz or .h5")
    scene = build_semireal_urban(args.latent_dim, args.snr, args.nonlinearity, args.seed,
                                 crop=tuple(args.crop) if args.crop else None, offset=tuple(args.offset),
                                 ground_truth=args.ground_truth)
    path = save_scene(scene, args.out)
    print(json.dumps({"out": str(path), "name": scene.name, "pixels": scene.n_pixels,
                      "channels": scene.n_channels, "K": args.latent_dim,
                      "noise_variance": scene.truth.noise_variance}, indent=2))
    return 0
