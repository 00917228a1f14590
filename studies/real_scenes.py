"""Every method on the real hyperspectral scenes: aRMSE (%) and SAD (degrees), mean and std over seeds.

Scenes: Samson (K = 3), scored against BOTH ground truths the file ships ("original", the 2014 GT,
and "misicnet", the later version the MiSiCNet/DeepTrans-HSU papers use); the Urban 34 x 78 sub-image
(its 4-endmember GT crop, K = 4; mostly grass and tree); and every catalog scene already in the data
cache (`nisca data fetch NAME`), against its primary ground truth. Each method is fitted once per seed
(the fit never sees any truth) and then scored against each truth version. HySUPP conventions: the
components are matched by the Hungarian assignment on abundance MSE and the endmembers take the same
permutation; aRMSE is over all pixels and endmembers; SAD is the mean over endmembers.

Plain Python (no Ray):

    python studies/real_scenes.py [--quick] [--seeds 5] [--methods vca,mves,...] [--max-epochs N]
                                  [--data ../shared/data] [--out docs/real_scenes.md] [--csv FILE]

--quick: one seed, 600 random pixels per scene (seeded), one epoch for trained methods: a smoke run
whose numbers mean nothing. --max-epochs caps NISCA, VASCA and CNAE (default: each method's own).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nisca.data.catalog import shared_data_dir
from nisca.data.scene import Scene, Truth
from nisca.errors import NiscaError

DEFAULT_DATA = shared_data_dir()
QUICK_PIXELS = 600
# Published / reference figures (aRMSE %, SAD deg) shown beside ours, with where they come from.
REFERENCES: dict[tuple[str, str], list[tuple[str, float, float, str]]] = {
    ("Samson", "original"): [
        ("vca", 27.7, 4.6, "VCA + FCLS, 5 seeds, ../shared/data/hyperspectral/README.md"),
    ],
    ("Samson", "misicnet"): [
        ("vca", 14.3, 6.0, "VCA + FCLS, 5 seeds, ../shared/data/hyperspectral/README.md"),
    ],
}


@dataclass
class RealScene:
    """A scene to fit (its truth only sets K) and the truth versions to score the fit against."""

    name: str
    scene: Scene
    truths: dict[str, Truth] = field(default_factory=dict)


def load_real_scenes(data_dir: Path, quick: bool) -> list[RealScene]:
    """Samson (both GTs), the Urban sub-image (4-endmember GT) and the cached catalog scenes."""
    from nisca.data import catalog, io

    found: list[RealScene] = []
    hyper = data_dir / "hyperspectral"
    samson = hyper / "Samson.npz"
    if samson.is_file():
        scene = io.load_scene(samson, truth_version="original")
        truths = {version: io.load_ground_truth(samson, version) for version in ("original", "misicnet")}
        found.append(RealScene("Samson", scene, truths))
    urban = hyper / "Urban_subimage_34x78.npz"
    if urban.is_file():
        scene = io.load_scene(urban, truth_version="4")
        found.append(RealScene("Urban sub-image 34x78", scene, {"4": scene.truth}))
    for name in catalog.known_names():
        if catalog.available_scene(name) is not None:
            scene = catalog.load_catalog_scene(name)
            found.append(RealScene(f"{name} (catalog)", scene, {scene.truth.label: scene.truth}))
    if not found:
        raise NiscaError(f"no real scene found under {hyper} or in the data cache; set --data or NISCA_SHARED_DATA")
    return [_subsample(item, QUICK_PIXELS) for item in found] if quick else found


def _subsample(item: RealScene, n_pixels: int) -> RealScene:
    """A seeded random subset of pixels, truths sliced alike (for --quick only)."""
    scene = item.scene
    if scene.n_pixels <= n_pixels:
        return item
    rows = np.sort(np.random.default_rng(0).choice(scene.n_pixels, size=n_pixels, replace=False))

    def cut(truth: Truth) -> Truth:
        return Truth(abundances=truth.abundances[rows], endmembers=truth.endmembers, label=truth.label)

    truths = {label: cut(truth) for label, truth in item.truths.items()}
    small = Scene(scene.Y[rows], name=f"{scene.name}-quick", truth=cut(scene.truth))
    return RealScene(item.name, small, truths)


def run_study(items: list[RealScene], methods: list[str], seeds: list[int], max_epochs: int | None,
              overrides: dict[str, object] | None = None) -> list[dict]:
    """One fit per (scene, method, seed); one row per truth version it is scored against. `overrides` are
    config keys set on every method that has them (e.g. {"prior": "learn"}); a key none has is an error."""
    from nisca.fit import fit
    from nisca.methods import get_method, overrides_by_method
    from nisca.metrics import score

    per_method = overrides_by_method(methods, overrides or {})
    rows = []
    for item in items:
        K = item.scene.truth.n_components
        for method in methods:
            for seed in seeds:
                config = {"latent_dim": K, "seed": seed}
                if get_method(method).trained and max_epochs is not None:
                    config["max_epochs"] = max_epochs
                config.update(per_method[method])
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # identifiability / convergence notes: K, N are stated
                    result = fit(method, item.scene, config, progress_bar=False)
                purest = result.extras.get("endmembers_purest")
                for label, truth in item.truths.items():
                    metrics = score(item.scene.with_truth(truth), abundances=result.abundances,
                                    endmembers=result.endmembers)
                    if purest is not None:
                        metrics["sad_purest_deg"] = score(item.scene.with_truth(truth), abundances=result.abundances,
                                                          endmembers=purest)["sad_deg"]
                    rows.append({
                        "scene": item.name, "truth": label, "method": method, "seed": seed, "K": K,
                        "pixels": item.scene.n_pixels, "channels": item.scene.n_channels,
                        "armse_pct": 100.0 * metrics["abundance_rmse"],
                        "sad_deg": metrics.get("sad_deg", float("nan")),
                        "sad_purest_deg": metrics.get("sad_purest_deg", float("nan")),
                        "wall_time_s": result.wall_time_s, "epochs": result.epochs,
                    })
                print(f"{item.name:24s} {method:6s} seed {seed}: "
                      + ", ".join(f"{r['truth']}: {r['armse_pct']:.1f} % / {r['sad_deg']:.1f} deg"
                                  for r in rows[-len(item.truths):])
                      + f" ({result.wall_time_s:.1f} s)", flush=True)
    return rows


def _cell(values: np.ndarray, digits: int) -> str:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return "-"
    return f"{values.mean():.{digits}f} ± {values.std():.{digits}f}"


def markdown(rows: list[dict], command: str, seeds: list[int], quick: bool) -> str:
    """One table per (scene, truth version): mean ± std over seeds, reference figures beside ours."""
    import pandas as pd

    frame = pd.DataFrame(rows)
    lines = [
        "# Real scenes: every method, aRMSE (%) and SAD (degrees)",
        "",
        f"Command: `{command}`. Seeds: {', '.join(map(str, seeds))} (mean ± std over seeds; std is the"
        " population std). HySUPP conventions: Hungarian matching on abundance MSE, the same permutation"
        " for the endmembers; aRMSE over all pixels and endmembers; SAD averaged over endmembers."
        " Fits never see a ground truth; each fit is scored against every truth version listed.",
    ]
    if quick:
        lines += ["", f"**--quick smoke run** ({QUICK_PIXELS} pixels per scene, one epoch): not results."]
    for (scene_name, truth), part in frame.groupby(["scene", "truth"], sort=False):
        first = part.iloc[0]
        lines += ["", f"## {scene_name}, ground truth {truth!r} (K = {first.K}, {first.pixels} pixels,"
                      f" {first.channels} channels)", "",
                  "| method | aRMSE (%) | SAD (deg) | SAD, purest pixels (deg) | wall time (s) | epochs |",
                  "|---|---|---|---|---|---|"]
        for method, group in part.groupby("method", sort=False):
            lines.append(f"| {method} | {_cell(group.armse_pct.to_numpy(), 1)} | {_cell(group.sad_deg.to_numpy(), 1)}"
                         f" | {_cell(group.sad_purest_deg.to_numpy(), 1)}"
                         f" | {_cell(group.wall_time_s.to_numpy(), 1)} | {int(group.epochs.max())} |")
        for method, armse, sad, source in REFERENCES.get((scene_name, truth), []):
            lines.append(f"| {method} (reference: {source}) | {armse:.1f} | {sad:.1f} | | | |")
    lines += ["", "SAD, purest pixels: the variational methods' second endmember estimate, the mean spectrum of each"
              " component's 20 purest pixels (nisca.models.nisca.purest_pixel_endmembers).",
              "", "Wall times were measured on a shared machine; treat them as rough."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from nisca.config import parse_assignment
    from nisca.methods import METHODS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 seed, 600 pixels, 1 epoch")
    parser.add_argument("--seeds", type=int, default=5, help="number of seeds (first .. first + N - 1)")
    parser.add_argument("--first-seed", type=int, default=0, help="the first seed (to split seeds over runs)")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated method names")
    parser.add_argument("--max-epochs", type=int, default=None, help="cap for NISCA, VASCA and CNAE")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder")
    parser.add_argument("--out", type=Path, default=None, help="write the Markdown table here")
    parser.add_argument("--csv", type=Path, default=None, help="write the per-seed rows here")
    parser.add_argument("--scenes", default=None, help="comma-separated name prefixes (e.g. Samson); default all")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config key for the trained methods that have it (value parsed as JSON)")
    args = parser.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    try:
        unknown = [m for m in methods if m not in METHODS]
        if unknown:
            raise NiscaError(f"unknown method(s) {', '.join(unknown)}; known: {', '.join(METHODS)}")
        seeds = [args.first_seed] if args.quick else list(range(args.first_seed, args.first_seed + args.seeds))
        max_epochs = 1 if args.quick else args.max_epochs
        overrides = dict(parse_assignment(text) for text in args.overrides)
        items = load_real_scenes(args.data, args.quick)
        if args.scenes:
            prefixes = tuple(name.strip() for name in args.scenes.split(",") if name.strip())
            items = [item for item in items if item.name.startswith(prefixes)]
            if not items:
                raise NiscaError(f"no scene matches --scenes {args.scenes!r}")
        start = time.perf_counter()
        rows = run_study(items, methods, seeds, max_epochs, overrides)
    except NiscaError as error:
        print(f"real_scenes: error: {error}", file=sys.stderr)
        return 2
    command = "python studies/real_scenes.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    text = markdown(rows, command.strip(), seeds, args.quick)
    text += f"\nTotal wall time: {time.perf_counter() - start:.0f} s.\n"
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    if args.csv is not None:
        import pandas as pd

        args.csv.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).to_csv(args.csv, index=False)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
