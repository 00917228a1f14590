"""matplotlib figures of a study: each function returns a Figure (pyplot-managed, so a notebook shows
it inline; `nisca report` selects the Agg backend and closes each figure once saved).

Figures label their axes with units (`tables.label`) and say which trial and which data they show.
Estimated components are put in the order of the true ones (Hungarian matching) for display only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from nisca.analysis.outputs import TrialOutputs
from nisca.analysis.tables import label

MAX_CHANNEL_PANELS = 12  # learned nonlinearities: at most this many channels, evenly spaced
STYLE = {"axes.grid": True, "grid.alpha": 0.3, "font.size": 10}


def method_colors(methods: Sequence[str]) -> dict[str, tuple]:
    """One stable colour per method (sorted names on the tab10 cycle)."""
    cmap = plt.get_cmap("tab10")
    return {m: cmap(i % 10) for i, m in enumerate(sorted(set(map(str, methods))))}


def hyperparameter_figure(trials: pd.DataFrame, hyperparameter: str, metrics: Sequence[str], title: str) -> Figure:
    """Each metric against one searched hyperparameter, one point per trial, coloured by method."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.6), squeeze=False)
    colors = method_colors(trials["method"].dropna())
    trials = trials[trials[hyperparameter].notna()]  # only the methods that have this hyperparameter
    values = trials[hyperparameter]
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    categories = sorted(values.dropna().astype(str).unique()) if not numeric else []
    for ax, metric in zip(axes[0], metrics):
        for method, group in trials.groupby("method", sort=True):
            ok = group[group["status"] != "ERROR"]
            y = pd.to_numeric(ok.get(metric), errors="coerce") if metric in ok else pd.Series(dtype=float)
            if y.dropna().empty:
                continue
            if numeric:
                x = ok[hyperparameter].astype(float)
            else:
                x = ok[hyperparameter].astype(str).map({c: i for i, c in enumerate(categories)})
                x = x + np.random.default_rng(0).uniform(-0.12, 0.12, len(x))  # jitter: no hidden overlaps
            stopped = ok["stopped_early"].to_numpy(dtype=bool)
            ax.scatter(x[~stopped], y[~stopped], color=colors[str(method)], label=str(method), s=28)
            if stopped.any():
                ax.scatter(x[stopped], y[stopped], facecolors="none", edgecolors=colors[str(method)], s=28,
                           label=f"{method} (stopped early)")
        if numeric and (_log_scale(values) or _is_rate(hyperparameter)) and (values.astype(float) > 0).all():
            ax.set_xscale("log")
        elif numeric:
            ax.xaxis.set_major_locator(MaxNLocator(nbins=4))
        if categories:
            ax.set_xticks(range(len(categories)), categories, rotation=20)
        ax.set_xlabel(label(hyperparameter))
        ax.set_ylabel(label(metric))
    _legend(fig, axes[0])
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def learning_curves_figure(epochs: pd.DataFrame, trials: pd.DataFrame, metric: str, mode: str, top: int,
                           title: str) -> Figure | None:
    """The study metric (and training loss) per epoch for the `top` best trials of each trained method."""
    if epochs.empty or metric not in epochs:
        return None
    panels = [metric] + (["train_loss"] if "train_loss" in epochs and metric != "train_loss" else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(6.0 * len(panels), 4.2), squeeze=False)
    colors = method_colors(trials["method"].dropna())
    chosen = _top_trials(trials, epochs, metric, mode, top)
    stopped = set(trials.loc[trials["stopped_early"], "trial_id"])
    for ax, panel in zip(axes[0], panels):
        for trial_id, method in chosen:
            curve = epochs[epochs["trial_id"] == trial_id]
            ax.plot(curve["epoch"], curve[panel], color=colors[str(method)], linestyle="--" if trial_id in stopped else "-",
                    marker="o" if len(curve) < 3 else None, markersize=3, alpha=0.85, label=str(method))
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label(panel))
        if _log_scale(epochs[panel]):
            ax.set_yscale("log")
    handles = [plt.Line2D([], [], color=c, label=m) for m, c in colors.items() if m in {str(x) for _, x in chosen}]
    handles.append(plt.Line2D([], [], color="grey", linestyle="--", label="stopped early (ASHA)"))
    axes[0][-1].legend(handles=handles, fontsize=8, loc="best")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def scheduler_figure(trials: pd.DataFrame, metric: str, title: str) -> Figure:
    """What the scheduler did: how many trials ended at each epoch, by outcome, and the metric there."""
    palette = {"completed": "tab:green", "stopped early": "tab:orange", "failed": "tab:red",
               "interrupted": "tab:grey"}
    outcome = trials["outcome"].where(trials["outcome"].isin(list(palette)), "interrupted").to_numpy()
    reached = trials["epochs"].fillna(0).astype(int).to_numpy()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    epochs = np.arange(reached.min(initial=0), reached.max(initial=0) + 1)
    bottom = np.zeros(len(epochs))
    for name, color in palette.items():
        counts = np.array([np.sum((reached == e) & (outcome == name)) for e in epochs])
        if counts.any():
            axes[0].bar(epochs, counts, bottom=bottom, color=color, label=name, width=0.7)
            bottom += counts
    axes[0].set_xlabel("epochs reached")
    axes[0].set_ylabel("trials")
    axes[0].xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].yaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].legend(fontsize=8)
    values = pd.to_numeric(trials[metric], errors="coerce") if metric in trials else pd.Series(np.nan, index=trials.index)
    for name, color in palette.items():
        pick = outcome == name
        if pick.any():
            axes[1].scatter(reached[pick], values[pick], color=color, label=name, s=24)
    axes[1].set_xlabel("epochs reached")
    axes[1].set_ylabel(f"{metric} at the last report")
    axes[1].xaxis.set_major_locator(MaxNLocator(integer=True))
    if _log_scale(values):
        axes[1].set_yscale("log")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def sweep_figure(table: pd.DataFrame, variable: str, metrics: Sequence[str], title: str) -> Figure:
    """Mean ± std over seeds of each metric against the swept variable, one line per method."""
    metrics = [m for m in metrics if f"{m}_mean" in table and table[f"{m}_mean"].notna().any()]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.4 * len(metrics), 3.8), squeeze=False)
    colors = method_colors(table["method"])
    numeric = pd.api.types.is_numeric_dtype(table[variable])
    levels = sorted(table[variable].unique()) if numeric else sorted(table[variable].astype(str).unique())
    for ax, metric in zip(axes[0], metrics):
        for method, group in table.groupby("method", sort=True):
            x = group[variable] if numeric else group[variable].astype(str).map(levels.index)
            ax.errorbar(x, group[f"{metric}_mean"], yerr=group[f"{metric}_std"].fillna(0.0), capsize=3,
                        marker="o", color=colors[str(method)], label=str(method))
        ax.set_xlabel(label(variable))
        ax.set_ylabel(label(metric))
        if not numeric:
            ax.set_xticks(range(len(levels)), levels)
    _legend(fig, axes[0])
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def abundance_figure(outputs: TrialOutputs, title: str) -> Figure:
    """Estimated abundances beside the truth: maps for image scenes, else estimate-vs-truth scatter."""
    est = _display_order(outputs)
    truth = outputs.truth.abundances if outputs.truth is not None and outputs.truth.abundances is not None else None
    K = est.shape[1]
    shape = image_shape(outputs)
    if shape is not None:
        rows = 2 if truth is not None else 1
        fig, axes = plt.subplots(rows, K, figsize=(2.6 * K + 1.2, 2.6 * rows + 0.8), squeeze=False)
        for k in range(K):
            image = axes[0][k].imshow(est[:, k].reshape(shape), vmin=0, vmax=1, cmap="viridis")
            axes[0][k].set_title(f"component {k}", fontsize=10)
            if truth is not None:
                axes[1][k].imshow(truth[:, k].reshape(shape), vmin=0, vmax=1, cmap="viridis")
        for ax in axes.ravel():
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
        axes[0][0].set_ylabel("estimated")
        if truth is not None:
            axes[1][0].set_ylabel("ground truth")
        fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8, label="abundance (fraction)")
    elif truth is not None:
        fig, axes = plt.subplots(1, K, figsize=(3.2 * K, 3.4), squeeze=False)
        for k in range(K):
            ax = axes[0][k]
            ax.scatter(truth[:, k], est[:, k], s=3, alpha=0.4)
            ax.plot([0, 1], [0, 1], color="black", linewidth=0.8)
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1)
            ax.set_xlabel(f"true abundance, component {k}")
            ax.set_ylabel("estimated abundance")
    else:
        fig, axes = plt.subplots(1, K, figsize=(3.2 * K, 3.0), squeeze=False)
        for k in range(K):
            axes[0][k].hist(est[:, k], bins=30, range=(0, 1))
            axes[0][k].set_xlabel(f"estimated abundance, component {k}")
            axes[0][k].set_ylabel("pixels")
    fig.suptitle(title)
    if shape is None:
        fig.tight_layout()
    return fig


def endmember_figure(outputs: TrialOutputs, title: str) -> Figure | None:
    """Estimated endmember spectra against the reference, one panel per component."""
    if outputs.endmembers is None:
        return None
    perm = _permutation(outputs)
    est = outputs.endmembers[:, perm]
    truth = outputs.truth.endmembers if outputs.truth is not None else None
    K = est.shape[1]
    x, xlabel = _channel_axis(outputs, est.shape[0])
    fig, axes = plt.subplots(1, K, figsize=(3.4 * K, 3.2), squeeze=False)
    for k in range(K):
        ax = axes[0][k]
        ax.plot(x, est[:, k], label="estimated", color="tab:blue")
        if truth is not None:
            ax.plot(x, truth[:, k], label="reference", color="black", linestyle="--")
        ax.set_title(f"component {k}")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("endmember (data units)")
    axes[0][-1].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def nonlinearity_figure(outputs: TrialOutputs, title: str) -> Figure | None:
    """The learned per-channel functions f_n, for up to MAX_CHANNEL_PANELS evenly spaced channels."""
    if not outputs.curves or "inputs" not in outputs.curves or "outputs" not in outputs.curves:
        return None
    inputs, values = np.asarray(outputs.curves["inputs"]), np.asarray(outputs.curves["outputs"])
    if inputs.ndim == 1:
        inputs = np.repeat(inputs[:, None], values.shape[1], axis=1)
    N = values.shape[1]
    channels = np.unique(np.linspace(0, N - 1, min(N, MAX_CHANNEL_PANELS)).round().astype(int))
    cols = min(4, len(channels))
    rows = math.ceil(len(channels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.7 * rows), squeeze=False)
    axis_values, _ = _channel_axis(outputs, N)
    for ax, n in zip(axes.ravel(), channels):
        ax.plot(inputs[:, n], values[:, n], color="tab:purple")
        where = f" ({axis_values[n]:.0f})" if outputs.scene is not None and outputs.scene.axis is not None else ""
        ax.set_title(f"channel {n}{where}", fontsize=9)
        ax.set_xlabel("linear mixture (A z)_n")
        ax.set_ylabel("f_n (data units)")
    for ax in axes.ravel()[len(channels):]:
        ax.set_visible(False)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def residual_figure(outputs: TrialOutputs, title: str) -> Figure | None:
    """Per-pixel RMSE of the reconstruction: a map for image scenes, else a histogram."""
    found = outputs.residual()
    if found is None:
        return None
    residual, what = found
    shape = image_shape(outputs)
    if shape is not None:
        fig, ax = plt.subplots(figsize=(5.2, 4.4))
        image = ax.imshow(residual.reshape(shape), cmap="magma")
        ax.set_axis_off()
        fig.colorbar(image, ax=ax, label="RMSE over channels (data units)")
    else:
        fig, ax = plt.subplots(figsize=(6.4, 3.6))
        ax.hist(residual, bins=40, color="tab:red")
        ax.set_xlabel("per-pixel RMSE of Y - reconstruction (data units)")
        ax.set_ylabel("pixels")
    ax.set_title(f"{title}\nper-pixel RMSE of Y minus {what}", fontsize=10)
    fig.tight_layout()
    return fig


def _display_order(outputs: TrialOutputs) -> np.ndarray:
    return np.asarray(outputs.abundances)[:, _permutation(outputs)]


def _permutation(outputs: TrialOutputs) -> np.ndarray:
    """Estimated components in the order of the true ones (display only), identity without truth."""
    K = np.asarray(outputs.abundances).shape[1]
    truth = outputs.truth
    if truth is None or truth.abundances is None or truth.abundances.shape[1] != K:
        return np.arange(K)
    from nisca.metrics import match_components

    return match_components(truth.abundances, outputs.abundances)


def image_shape(outputs: TrialOutputs) -> tuple[int, int] | None:
    """(rows, cols) when the trial's scene is an image, else None (abundances are then not maps)."""
    from nisca.data.scene import ImageGeometry

    scene = outputs.scene
    if scene is not None and isinstance(scene.geometry, ImageGeometry):
        return scene.geometry.rows, scene.geometry.cols
    return None


def _channel_axis(outputs: TrialOutputs, n_channels: int) -> tuple[np.ndarray, str]:
    scene = outputs.scene
    if scene is not None and scene.axis is not None and len(scene.axis) == n_channels:
        name = scene.axis_name or "channel value"
        return np.asarray(scene.axis), {"wavelength_nm": "wavelength (nm)", "time_s": "time (s)"}.get(name, name)
    return np.arange(n_channels), "channel"


def _top_trials(trials: pd.DataFrame, epochs: pd.DataFrame, metric: str, mode: str, top: int) -> list[tuple[str, str]]:
    from nisca.analysis.tables import rank_trials

    chosen = []
    with_curves = trials[trials["trial_id"].isin(set(epochs["trial_id"]))]
    for method, group in with_curves.groupby("method", sort=True):
        column = f"best_{metric}" if f"best_{metric}" in group else metric
        ranked = rank_trials(group, column, mode)
        chosen += [(t, str(method)) for t in ranked["trial_id"].head(top)]
    return chosen


def _log_scale(values: pd.Series) -> bool:
    numbers = pd.to_numeric(values, errors="coerce").dropna()
    numbers = numbers[np.isfinite(numbers)]
    return bool(len(numbers) > 1 and (numbers > 0).all() and numbers.max() / numbers.min() > 30)


def _is_rate(name: str) -> bool:
    last = name.rsplit("/", 1)[-1].lower()
    return last.startswith("lr") or "learning_rate" in last or last.endswith("_lr")


def _legend(fig: Figure, axes: Sequence) -> None:
    """One legend (on the last panel) with each label once."""
    handles: dict[str, object] = {}
    for ax in axes:
        for handle, text in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(text, handle)
    if handles:
        axes[-1].legend(list(handles.values()), list(handles), fontsize=8, loc="best")
