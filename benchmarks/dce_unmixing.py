"""Fraction-map RMSE on the DCE-MRI phantom: NISCA recipes vs the linear blind methods (issue 8's check).

Data: nisca.data.dce_phantom.simulate_dce_phantom with its defaults (4 classes vessel/rim/core/healthy,
32 x 32 x 4 voxels, 60 frames every 5 s, FA 30 deg, TR 5 ms, Rician noise) at --snr dB, mixing "fast"
(one R1 per voxel: a post-nonlinear mixture) and "slow" (signals mix linearly), generator seeds --seeds.
Routes: "signal" unmixes the SPGR signal; "concentration" first converts it with the known sequence
parameters and the true T10 map (nisca.data.dce_convert, M0 from the pre-bolus frames, clip=True for noise).
Every method runs blind (fit() hides the truth); abundance_rmse is computed afterwards by nisca.metrics.
NISCA recipes differ only in nisca.models.nisca.CONFIG fields (no model code changes).

    python benchmarks/dce_unmixing.py [--seeds 0 1 2] [--snr 25] [--max-epochs 150] [--recipes ...] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

LINEAR = ("vca", "nmf", "mves")
RECIPES: dict[str, dict] = {
    "default": {},
    "monotone": {"monotone": True},
    "monotone-global": {"monotone": True, "standardize": "global"},
    "monotone-learn": {"monotone": True, "noise": "learn"},
    "plain-f": {"residual": False},
    "random-init": {"init": "random"},
    "fast-decoder": {"lr_decoder": 1e-2, "lr_encoder": 3e-3},
    "learn-noise": {"noise": "learn"},
    "raw-scale": {"standardize": "none", "monotone": True},
    "wide-encoder": {"encoder_hidden": (256, 256), "mc_samples": 4},
    "prior-learn": {"prior": "learn"},
    "prior-learn-monotone": {"prior": "learn", "monotone": True},
    "prior-learn-slow": {"prior": "learn", "lr_decoder": 3e-4},  # A and f stay nearer their VCA start
    "prior-learn-slow-f": {"prior": "learn", "lr_nonlinearity": 3e-4},
    "linear-first": {"linear_first": True},  # VASCA to early stopping, then f freed; lowest val loss kept
    "prior-learn-linear-first": {"prior": "learn", "linear_first": True},
    "mves-init": {"init": "mves"},  # A starts at MVES's simplex (the best linear method here)
    "mves-init-prior-learn": {"init": "mves", "prior": "learn"},
    "shared-f": {"shared_nonlinearity": True},  # one f for every frame (the SPGR equation is the same)
    "shared-f-prior-learn": {"shared_nonlinearity": True, "prior": "learn"},
    "shared-f-mves-prior-learn": {"shared_nonlinearity": True, "prior": "learn", "init": "mves"},
    "mves-init-prior-learn-slow": {"init": "mves", "prior": "learn", "lr_decoder": 3e-4},
    "mves-init-shared-noise": {"init": "mves", "noise": "learn-shared"},
    "mves-init-prior-learn-shared-noise": {"init": "mves", "prior": "learn", "noise": "learn-shared"},
    # the importance-weighted bound (objective iwae) with R = 8 samples, on the recipes above
    "iwae": {"objective": "iwae", "mc_samples": 8},
    "prior-learn-iwae": {"prior": "learn", "objective": "iwae", "mc_samples": 8},
    "mves-init-iwae": {"init": "mves", "objective": "iwae", "mc_samples": 8},
    "mves-init-prior-learn-iwae": {"init": "mves", "prior": "learn", "objective": "iwae", "mc_samples": 8},
    "shared-noise-iwae": {"noise": "learn-shared", "objective": "iwae", "mc_samples": 8},
    # three starts, the one with the lowest validation loss kept (blind)
    "mves-init-prior-learn-iwae-restarts": {"init": "mves", "prior": "learn", "objective": "iwae", "mc_samples": 8,
                                            "restarts": 3},
    "vca-once": {"vca_restarts": 1},  # the warm start before VCA restarts were added
    "vasca": {},  # the linear variational model (f = identity), for reference
    "vasca-prior-learn": {"prior": "learn"},
    "vasca-shared-noise": {"noise": "learn-shared"},
    "vasca-iwae": {"objective": "iwae", "mc_samples": 8},
    "vasca-prior-learn-iwae": {"prior": "learn", "objective": "iwae", "mc_samples": 8},
}


def scenes(mixing: str, seed: int, snr_db: float):
    """The signal scene and its concentration-domain twin (known sequence and T10 map)."""
    from nisca.data.dce_convert import signal_scene_to_concentration
    from nisca.data.dce_phantom import simulate_dce_phantom

    phantom = simulate_dce_phantom(seed=seed, snr_db=snr_db, mixing=mixing)
    seq = phantom.parameters["sequence"]
    conc = signal_scene_to_concentration(
        phantom.scene, t10_s=phantom.t10_map, flip_angle_deg=seq["FlipAngle_deg"],
        tr_s=seq["RepetitionTimeExcitation_s"], r1=seq["r1_per_s_per_mM"],
        n_baseline=phantom.parameters["acquisition"]["baseline_frames"], clip=True)
    return {"signal": phantom.scene, "concentration": conc}


def run_one(method: str, recipe: str, scene, seed: int, max_epochs: int) -> dict:
    from nisca.fit import fit

    config: dict = {"latent_dim": scene.truth.n_components, "seed": seed}
    if method in ("nisca", "vasca"):
        config.update(max_epochs=max_epochs, patience=max(10, max_epochs // 5), device="cpu")
        config.update(RECIPES[recipe])
    start = time.perf_counter()
    result = fit(method, scene, config, progress_bar=False)
    return {"rmse": float(result.metrics["abundance_rmse"]), "val_loss": float(result.metrics.get("val_loss", np.nan)),
            "seconds": time.perf_counter() - start, "epochs": result.epochs,
            **{key: result.metrics[key] for key in ("nonlinear_gain", "nonlinearity_kept") if key in result.metrics}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--snr", type=float, default=25.0)
    parser.add_argument("--max-epochs", type=int, default=150)
    parser.add_argument("--mixing", nargs="+", default=["fast", "slow"])
    parser.add_argument("--routes", nargs="+", default=["signal", "concentration"])
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--out", default=None, help="write the Markdown table here (and FILE.json with raw rows)")
    parser.add_argument("--from-json", nargs="+", default=None, metavar="FILE",
                        help="only summarize the raw rows of earlier runs (e.g. one run per mixing model)")
    args = parser.parse_args(argv)
    if args.from_json:
        rows = [row for path in args.from_json for row in json.loads(Path(path).read_text())]
        rows = list({(r["mixing"], r["seed"], r["route"], r["method"], r["recipe"]): r for r in rows}.values())
        args.mixing = list(dict.fromkeys(r["mixing"] for r in rows))
        args.routes = list(dict.fromkeys(r["route"] for r in rows))
        args.seeds = sorted({r["seed"] for r in rows})
        args.max_epochs = "/".join(map(str, sorted({r.get("max_epochs", "?") for r in rows}, key=str)))
        table = summarize(rows, args)
        print(table)
        if args.out:
            Path(args.out).write_text(table + "\n")
        return 0

    import torch

    torch.set_num_threads(1)
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)

    rows = []
    for mixing in args.mixing:
        for seed in args.seeds:
            built = scenes(mixing, seed, args.snr)
            for route in args.routes:
                scene = built[route]
                jobs = [(m, m) for m in LINEAR] + [("vasca" if r.startswith("vasca") else "nisca", r) for r in args.recipes]
                for method, recipe in jobs:
                    row = {"mixing": mixing, "seed": seed, "route": route, "method": method, "recipe": recipe,
                           "snr_db": args.snr, "max_epochs": args.max_epochs,
                           **run_one(method, recipe, scene, seed, args.max_epochs)}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    table = summarize(rows, args)
    print(table)
    if args.out:
        Path(args.out).write_text(table + "\n")
        Path(args.out).with_suffix(".json").write_text(json.dumps(rows, indent=1))
    return 0


def summarize(rows: list[dict], args: argparse.Namespace) -> str:
    """Mean (min-max over seeds) abundance RMSE per method/recipe, mixing model and route."""
    import pandas as pd

    frame = pd.DataFrame(rows)
    frame["name"] = np.where(frame["method"].isin(["nisca", "vasca"]), frame["method"] + ":" + frame["recipe"],
                             frame["method"])
    columns = [(m, r) for m in args.mixing for r in args.routes]
    lines = ["| method | " + " | ".join(f"{m} / {r}" for m, r in columns) + " |",
             "|---|" + "---|" * len(columns)]
    for name in dict.fromkeys(frame["name"]):
        cells = []
        for mixing, route in columns:
            part = frame[(frame["name"] == name) & (frame["mixing"] == mixing) & (frame["route"] == route)]["rmse"]
            cells.append("-" if part.empty else f"{part.mean():.3f} ({part.min():.3f}-{part.max():.3f})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    ratio = []
    for mixing, route in columns:
        sub = frame[(frame["mixing"] == mixing) & (frame["route"] == route)]
        linear = sub[sub["method"].isin(LINEAR)].groupby("method")["rmse"].mean()
        nisca = sub[sub["method"] == "nisca"].groupby("recipe")["rmse"].mean()
        if len(linear) and len(nisca):
            ratio.append(f"{mixing}/{route}: best linear {linear.idxmin()} {linear.min():.3f}, best NISCA recipe "
                         f"{nisca.idxmin()} {nisca.min():.3f}, ratio {nisca.min() / linear.min():.2f}")
    header = (f"DCE phantom (simulate_dce_phantom defaults, 4 classes), SNR {args.snr:g} dB, seeds {args.seeds}, "
              f"NISCA/VASCA max_epochs {args.max_epochs}. Cells: mean abundance_rmse (min-max over seeds).")
    return "\n".join([header, "", *lines, "", *(f"- {r}" for r in ratio)])


if __name__ == "__main__":
    sys.exit(main())
