"""The files of the `nisca fit` contract, written from a FitResult (used by the CLI and by studies).

    abundances.npy        float32 (pixels, K), rows on the simplex
    abundances_mode.npy   float32 (pixels, K), softmax([mu, 0]) (variational methods; under `objective:
                          lattice`, which trains no encoder, the posterior mode on the lattice)
    endmembers.npy        float32 (channels, K), when the method estimates endmembers
    endmembers_purest.npy float32 (channels, K), mean spectrum of each component's purest pixels
                          (variational methods; nisca.models.nisca.purest_pixel_endmembers)
    curves.npz            the learned f_n: inputs and outputs (M, N), when the method has them
    metrics.json          flat name -> float (NaN written as null)
    config.json           the resolved config, method included
    checkpoint.ckpt       the selected Lightning checkpoint (trained methods)
    abundance_maps.png    image scenes; endmembers.png; nonlinearities.png
    class_curves.csv/.png time-series scenes (DCE-MRI): the estimated class curves against time in seconds
    + nisca.data.io.write_abundances(...) for scenes with an image or NIfTI geometry
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from nisca.data.scene import ImageGeometry, Scene, VolumeGeometry
from nisca.fit import FitResult


def _json_ready(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(item) for item in value]
    return value


def write_fit_outputs(result: FitResult, scene: Scene, out_dir: str | Path) -> list[Path]:
    """Write every contract file of `result` for `scene` into out_dir; returns the paths written."""
    from nisca import plots
    from nisca.data.io import write_abundances
    from nisca.dce_outputs import is_dce_scene, write_class_curves

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def save(name: str, array: np.ndarray) -> None:
        np.save(out / name, np.asarray(array, dtype=np.float32))
        written.append(out / name)

    def dump(name: str, payload: dict[str, Any]) -> None:
        (out / name).write_text(json.dumps(_json_ready(payload), indent=2, sort_keys=True) + "\n")
        written.append(out / name)

    save("abundances.npy", result.abundances)
    if "abundances_mode" in result.extras:
        save("abundances_mode.npy", result.extras["abundances_mode"])
    if result.endmembers is not None:
        save("endmembers.npy", result.endmembers)
    if "endmembers_purest" in result.extras:
        save("endmembers_purest.npy", result.extras["endmembers_purest"])
    if result.curves is not None:
        np.savez(out / "curves.npz", **{key: np.asarray(value) for key, value in result.curves.items()})
        written.append(out / "curves.npz")
    metrics = {key: float(value) for key, value in result.metrics.items()}
    metrics.update(epochs=float(result.epochs), wall_time_s=float(result.wall_time_s))
    dump("metrics.json", metrics)
    dump("config.json", {**result.config, "scene": scene.name, "truth_label": _truth_label(scene)})
    if result.checkpoint_path:
        target = out / "checkpoint.ckpt"
        if Path(result.checkpoint_path).resolve() != target.resolve():
            shutil.copyfile(result.checkpoint_path, target)
        written.append(target)

    if isinstance(scene.geometry, ImageGeometry):
        written.append(plots.plot_abundance_maps(
            result.abundances, scene.geometry.rows, scene.geometry.cols, out / "abundance_maps.png"))
    if result.endmembers is not None:
        written.append(plots.plot_endmembers(result.endmembers, out / "endmembers.png", scene.axis, scene.axis_name))
    if result.curves is not None:
        written.append(plots.plot_nonlinearities(result.curves, out / "nonlinearities.png"))
    if isinstance(scene.geometry, (ImageGeometry, VolumeGeometry)):
        written.extend(write_abundances(scene, result.abundances, out))
    if is_dce_scene(scene):
        written.extend(write_class_curves(result, scene, out))  # class curves against time (CSV + plot)
    return written


def _truth_label(scene: Scene) -> str | None:
    return None if scene.truth is None else scene.truth.label
