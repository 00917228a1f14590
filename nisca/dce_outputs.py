"""DCE-MRI outputs of a fit: the estimated class curves (endmembers) against time in seconds.

For a scene whose axis is frame times (`axis_name == "time_s"`), each estimated component is a tissue
class's enhancement curve. `write_class_curves` writes them as `class_curves.csv` (a `time_s` column,
then one column per component, in the data's units: signal, or mM after conversion) and
`class_curves.png` (all curves against time). Component names come from the same rule as the
fraction-map files (nisca.data.io.component_names_for), so `abundance_<name>.nii.gz` and the CSV
column `<name>` describe the same class.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nisca.data.scene import Scene
from nisca.errors import DataError
from nisca.fit import FitResult


def is_dce_scene(scene: Scene) -> bool:
    """True for time series with frame times in seconds (what write_class_curves needs)."""
    return scene.axis_name == "time_s" and scene.axis is not None


def write_class_curves(result: FitResult, scene: Scene, out_dir: str | Path) -> list[Path]:
    """Write `class_curves.csv` and `class_curves.png` for a DCE fit; returns the paths written.

    Nothing is written (empty list) when the method estimated no endmembers. A scene without frame
    times, or endmembers that do not match its frames, is a DataError naming the scene.
    """
    import pandas as pd

    from nisca.data.io import component_names_for

    if result.endmembers is None:
        return []
    if not is_dce_scene(scene):
        raise DataError(f"{scene.name}: class curves need frame times in seconds (axis_name 'time_s'), "
                        f"the scene's axis is {scene.axis_name!r}")
    curves = np.asarray(result.endmembers, dtype=np.float64)
    times = np.asarray(scene.axis, dtype=np.float64)
    if curves.ndim != 2 or curves.shape[0] != times.shape[0]:
        raise DataError(f"{scene.name}: endmembers of shape {curves.shape} do not match {times.shape[0]} frames")
    names = component_names_for(scene, curves.shape[1])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    table = pd.DataFrame({"time_s": times, **{name: curves[:, k] for k, name in enumerate(names)}})
    csv_path = out / "class_curves.csv"
    table.to_csv(csv_path, index=False)

    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    unit = scene.provenance.get("units", "signal (a.u.)")
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    for k, name in enumerate(names):
        ax.plot(times, curves[:, k], marker=".", label=name)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("concentration (mM)" if unit == "mM" else unit)
    ax.set_title(f"{result.method}: estimated class curves ({scene.name})")
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    png_path = out / "class_curves.png"
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return [csv_path, png_path]
