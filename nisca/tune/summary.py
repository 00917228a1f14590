"""The end of a study run: the best trials per method, as a pandas table, and where to go next.

Each method's best trial is chosen by its selection metric (the study's metric, `val_loss` by
default; classic methods in a mixed grid study by `reconstruction_rmse`, from Y alone). Truth
metrics are shown beside it for reading only: they never choose.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SHOWN_TRUTH = ("abundance_rmse", "sad_deg", "r2_nonlinearity")


def best_per_method(results: Any, selection: Mapping[str, str], mode: str, top: int = 1) -> Any:
    """A DataFrame of the `top` best completed trials of each method (by that method's selection metric)."""
    import pandas as pd

    frame = results.get_dataframe()
    if frame.empty or "config/method" not in frame:
        return pd.DataFrame()
    rows = []
    for method, metric in selection.items():
        part = frame[frame["config/method"] == method]
        if metric not in part:
            continue
        part = part[part[metric].notna()]
        if "completed" in part:
            done = part[part["completed"] == 1]
            part = done if not done.empty else part
        part = part.sort_values(metric, ascending=(mode == "min")).head(top)
        for _, row in part.iterrows():
            entry = {"method": method, "trial_id": row.get("trial_id"), "scene": row.get("config/scene"),
                     "seed": row.get("config/seed"), "selected_by": metric, "score": row[metric],
                     "epochs": row.get("epoch")}
            params = {key.split("/", 2)[2]: row[key] for key in frame.columns
                      if key.startswith(f"config/{method}/") and _present(row[key])}
            entry["params"] = ", ".join(f"{k}={_short(v)}" for k, v in sorted(params.items()))
            for key in SHOWN_TRUTH:
                if key in row and _present(row[key]):
                    entry[key] = row[key]
            rows.append(entry)
    return pd.DataFrame(rows)


def _present(value: Any) -> bool:
    try:
        import pandas as pd

        return not bool(pd.isna(value))
    except (TypeError, ValueError):
        return True


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def print_summary(results: Any, selection: Mapping[str, str], mode: str, experiment: str, echo=print) -> None:
    """Print the best trial of each method and the report command."""
    import pandas as pd

    table = best_per_method(results, selection, mode)
    if table.empty:
        echo("no trial reported a selection metric")
    else:
        with pd.option_context("display.width", 160, "display.max_columns", 20, "display.max_colwidth", 60):
            echo("best trial per method (selected without ground truth; truth metrics shown for reading only):")
            echo(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    echo(f"analyse it: nisca report {experiment}")
