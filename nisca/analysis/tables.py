"""pandas tables of a study: leaderboard, configurations over seeds, sweeps, early stops, failures.

Selection (the best trial, the best configuration) uses only the study's metric, e.g. the validation
loss; ground-truth metrics are averaged and shown beside it, never used to choose.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from nisca.analysis.load import StudyResults

# Metrics shown in tables and plots when present, in this order (the study metric always comes first).
DISPLAY_METRICS = (
    "val_loss",
    "abundance_rmse",
    "sad_deg",
    "r2_nonlinearity",
    "subspace_distance",
    "amari_distance",
    "reconstruction_rmse",
    "psnr_db",
    "wall_time_s",
)
# The subset shown in report tables (a page is only so wide).
SHORT_METRICS = ("val_loss", "abundance_rmse", "sad_deg", "r2_nonlinearity", "reconstruction_rmse")
# Which direction is better, for labels ("lower is better"); unknown metrics default to lower.
HIGHER_IS_BETTER = frozenset({"r2_nonlinearity", "psnr_db", "elbo"})
# Truth-free metrics that rank a method which does not report the study metric.
FALLBACK_METRICS = ("reconstruction_rmse",)
# Config keys that describe the data rather than the method: a study that varies one is a sweep.
SWEEP_KEYS = ("snr_db", "snr", "latent_dim", "samples", "n_samples", "pixels", "data_size", "channels", "nonlinearity",
              "truth_version", "truth_k")
# Readable axis labels with units for well-known names.
LABELS = {
    "val_loss": "validation loss (negative ELBO)",
    "train_loss": "training loss (negative ELBO)",
    "abundance_rmse": "abundance RMSE (fraction)",
    "abundance_mse": "abundance MSE (fraction²)",
    "sad_deg": "spectral angle distance (degrees)",
    "sad_purest_deg": "spectral angle distance of the purest-pixel endmembers (degrees)",
    "r2_nonlinearity": "R² of the residual nonlinearity",
    "subspace_distance": "subspace distance",
    "amari_distance": "Amari distance",
    "reconstruction_rmse": "reconstruction RMSE (data units)",
    "psnr_db": "PSNR (dB)",
    "wall_time_s": "wall time (s)",
    "snr_db": "SNR (dB)",
    "latent_dim": "K (number of components)",
    "samples": "samples (pixels)",
    "n_samples": "samples (pixels)",
    "epochs": "epochs trained",
}


def label(name: str) -> str:
    """Axis label with units for a metric or config name; 'nisca/lr_encoder' reads 'lr_encoder (nisca)'."""
    if name in LABELS:
        return LABELS[name]
    owner, _, last = name.rpartition("/")
    text = LABELS.get(last, last)
    return f"{text} ({owner})" if owner and owner != "data" else text


def display_metrics(trials: pd.DataFrame, metric: str, short: bool = False) -> list[str]:
    """The study metric, then the well-known metrics that the trials report (`short`: the few that
    fit a report table; the CSVs keep them all)."""
    out = [metric]
    for name in SHORT_METRICS if short else DISPLAY_METRICS:
        if name != metric and name in trials and trials[name].notna().any():
            out.append(name)
    return out


def rankable(trials: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Trials that may be ranked: not errored, with a finite value of the study metric."""
    if metric not in trials:
        return trials.iloc[0:0]
    values = pd.to_numeric(trials[metric], errors="coerce")
    ok = (trials["status"] != "ERROR") & values.notna() & np.isfinite(values.fillna(np.nan).astype(float))
    return trials[ok]


def selection_metric(trials: pd.DataFrame, metric: str, mode: str, preferred: str | None = None) -> tuple[str, str]:
    """What ranks these trials: the metric the study runner recorded for this method (`preferred`),
    else the study metric, else for a method that never reports it (a classic method without a
    validation loss) a truth-free fit-to-data metric. Never ground truth."""
    if preferred and preferred != metric and not rankable(trials, preferred).empty:
        return preferred, "max" if preferred in HIGHER_IS_BETTER else "min"
    if not rankable(trials, metric).empty:
        return metric, mode
    for name in FALLBACK_METRICS:
        if not rankable(trials, name).empty:
            return name, "max" if name in HIGHER_IS_BETTER else "min"
    return metric, mode


def rank_trials(trials: pd.DataFrame, metric: str, mode: str, preferred: str | None = None) -> pd.DataFrame:
    """Rankable trials sorted best first by the selection metric (ties broken by trial id)."""
    metric, mode = selection_metric(trials, metric, mode, preferred)
    ranked = rankable(trials, metric)
    return ranked.sort_values([metric, "trial_id"], ascending=[mode == "min", True], kind="stable")


def best_trials(results: StudyResults) -> pd.DataFrame:
    """The single best trial of each study and method by the study's metric."""
    rows = []
    for study in results.studies:
        trials = results.trials[results.trials["study"] == study.name]
        for method, group in trials.groupby("method", sort=True):
            ranked = rank_trials(group, study.metric, study.mode, study.selection.get(str(method)))
            if not ranked.empty:
                rows.append(ranked.iloc[0])
    return pd.DataFrame(rows).reset_index(drop=True) if rows else results.trials.iloc[0:0]


def configurations(results: StudyResults) -> pd.DataFrame:
    """Every configuration of every method (all hyperparameters but the seed), mean and std over seeds.

    Columns: study, method, configuration (readable), n_trials, n_failed, rank (1 = best by the
    study metric's mean), then <metric>_mean, <metric>_std for each displayed metric.
    """
    frames = []
    for study in results.studies:
        trials = results.trials[results.trials["study"] == study.name]
        metrics = display_metrics(trials, study.metric)
        for method, group in trials.groupby("method", sort=True):
            keys = _config_keys(group, results.hyperparameters.get(study.name, []))
            frames.append(_method_configurations(study.name, str(method), group, keys, metrics, study.metric,
                                                 study.mode, study.selection.get(str(method))))
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True, sort=False)


def leaderboard(results: StudyResults) -> pd.DataFrame:
    """Per study and method: the best configuration, its trials' mean and std over seeds, best trial id."""
    configs = configurations(results)
    if configs.empty:
        return configs
    board = configs[configs["rank"] == 1].copy()
    best = best_trials(results)
    best_id = {(r["study"], r["method"]): r["trial_id"] for _, r in best.iterrows()}
    board.insert(board.columns.get_loc("configuration") + 1, "best_trial", [
        best_id.get((s, m), "") for s, m in zip(board["study"], board["method"])
    ])
    board = board.drop(columns=["rank"])
    order = []
    for study in results.studies:
        part = board[board["study"] == study.name]
        column = f"{study.metric}_mean"
        if column in part:
            part = part.sort_values(column, ascending=study.mode == "min", na_position="last", kind="stable")
        order.append(part)
    return pd.concat(order, ignore_index=True)


def stopped_trials(results: StudyResults) -> pd.DataFrame:
    """Trials the scheduler (ASHA) ended early: epochs reached and the study metric when stopped."""
    columns = ["study", "trial_id", "method", "seed", "epochs", "best_epoch"]
    stopped = results.trials[results.trials["stopped_early"]]
    extra = []
    for study in results.studies:
        extra += [study.metric, f"best_{study.metric}"]
    keep = columns + [c for c in dict.fromkeys(extra) if c in stopped]
    return stopped[keep].sort_values(["study", "method", "epochs", "trial_id"], ignore_index=True)


def failed_trials(results: StudyResults) -> pd.DataFrame:
    """Trials that ended in ERROR (or never finished), with the reason Ray recorded."""
    failed = results.trials[results.trials["status"] != "TERMINATED"]
    keep = ["study", "trial_id", "method", "seed", "status", "epochs", "error"]
    keep += [h for s in results.studies for h in results.hyperparameters.get(s.name, []) if h in failed]
    return failed[list(dict.fromkeys(keep))].sort_values(["study", "trial_id"], ignore_index=True)


def sweep_variables(results: StudyResults, study: str) -> list[str]:
    """Columns of a study that vary a property of the data (SNR, K, size, nonlinearity), one per
    property: a K searched as the trial's latent_dim or as the scene's latent_dim is one sweep."""
    searched = results.hyperparameters.get(study, [])
    found: dict[str, str] = {}
    trials = results.trials[results.trials["study"] == study]
    for column in searched:
        key = column.rsplit("/", 1)[-1]
        if key not in SWEEP_KEYS:
            continue
        if key in ("truth_k", "truth_version") and "latent_dim" in {c.rsplit("/", 1)[-1] for c in searched}:
            continue  # the same K, named twice
        duplicate = any(trials[column].astype(str).equals(trials[other].astype(str)) for other in found.values())
        if not duplicate:
            found.setdefault(key, column)
    return list(found.values())


def sweep_table(results: StudyResults, study: str, variable: str) -> pd.DataFrame:
    """For each method and level of `variable`: the best configuration at that level (by the study
    metric, over seeds) and its mean and std of every displayed metric. Long format, one row each."""
    spec = results.study(study)
    trials = results.trials[results.trials["study"] == study]
    metrics = display_metrics(trials, spec.metric)
    # the scene and its other recorded properties go with the level; the rest is the configuration
    others = [h for h in results.hyperparameters.get(study, [])
              if h != variable and h != "scene" and not h.startswith("data/")]
    rows = []
    for (method, level), group in trials.groupby(["method", variable], sort=True, dropna=True):
        keys = _config_keys(group, others)
        configs = _method_configurations(study, str(method), group, keys, metrics, spec.metric, spec.mode,
                                         spec.selection.get(str(method)))
        best = configs[configs["rank"] == 1]
        if best.empty:
            continue
        row = best.iloc[0].to_dict()
        row[variable] = level
        rows.append(row)
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame(rows)
    front = ["study", "method", variable, "configuration", "n_trials", "n_failed"]
    return frame[front + [c for c in frame.columns if c not in front and c != "rank"]]


def mean_std_view(table: pd.DataFrame, metrics: Sequence[str], digits: int = 4) -> pd.DataFrame:
    """A copy for reading: each <m>_mean/<m>_std pair becomes one 'mean ± std' text column named m."""
    view = table.copy()
    for metric in metrics:
        mean, std = f"{metric}_mean", f"{metric}_std"
        if mean not in view:
            continue
        position = view.columns.get_loc(mean)
        text = [format_mean_std(m, s, digits) for m, s in zip(view[mean], view.get(std, [math.nan] * len(view)))]
        view = view.drop(columns=[c for c in (mean, std) if c in view])
        view.insert(position, metric, text)
    return view


def format_mean_std(mean: float, std: float, digits: int = 4) -> str:
    """'0.1234 ± 0.0012' (std omitted for a single value; '—' when there is no value)."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "—"
    if std is None or (isinstance(std, float) and math.isnan(std)):
        return f"{mean:.{digits}g}"
    return f"{mean:.{digits}g} ± {std:.2g}"


def _config_keys(group: pd.DataFrame, searched: Sequence[str]) -> list[str]:
    """Searched hyperparameters that this method's trials actually set."""
    return [h for h in searched if h in group and group[h].notna().any()]


def _method_configurations(
    study: str, method: str, group: pd.DataFrame, keys: list[str], metrics: list[str], metric: str, mode: str,
    preferred: str | None = None,
) -> pd.DataFrame:
    rows = []
    grouped = group.groupby(keys, sort=False, dropna=False) if keys else [((), group)]
    for values, part in grouped:
        values = values if isinstance(values, tuple) else (values,)
        ok = part[part["status"] != "ERROR"]
        row: dict[str, object] = {
            "study": study,
            "method": method,
            "configuration": ", ".join(f"{_strip(k, method)}={_short(v)}" for k, v in zip(keys, values)) or "(defaults)",
            "n_trials": int(len(part)),
            "n_failed": int((part["status"] == "ERROR").sum()),
            "seeds": ",".join(str(s) for s in sorted(part["seed"].dropna().unique())) if "seed" in part else "",
        }
        row.update(dict(zip(keys, values)))
        for name in metrics:
            values_m = pd.to_numeric(ok[name], errors="coerce").dropna() if name in ok else pd.Series(dtype=float)
            row[f"{name}_mean"] = float(values_m.mean()) if not values_m.empty else math.nan
            row[f"{name}_std"] = float(values_m.std(ddof=1)) if len(values_m) > 1 else math.nan
        rows.append(row)
    frame = pd.DataFrame(rows)
    ranked_by, by_mode = selection_metric(group, metric, mode, preferred)
    if f"{ranked_by}_mean" not in frame:
        values = group.groupby(keys, sort=False, dropna=False)[ranked_by] if keys else None
        frame[f"{ranked_by}_mean"] = (
            [float(pd.to_numeric(v, errors="coerce").mean()) for _, v in values] if values is not None
            else [float(pd.to_numeric(group[ranked_by], errors="coerce").mean())]
        ) if ranked_by in group else math.nan
    order = frame[f"{ranked_by}_mean"].rank(method="first", ascending=by_mode == "min", na_option="keep")
    if order.isna().all() and len(frame) == 1:
        order, ranked_by = pd.Series([1.0]), "(only configuration)"
    frame.insert(2, "rank", order.astype("Int64"))
    frame.insert(3, "ranked_by", ranked_by)
    return frame.sort_values("rank", na_position="last", kind="stable", ignore_index=True)


def _strip(key: str, method: str) -> str:
    """'nisca/lr_encoder' reads 'lr_encoder' in a row that is about nisca already."""
    return key[len(method) + 1:] if key.startswith(f"{method}/") else key


def _short(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)
