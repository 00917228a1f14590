"""Pictures of a fit (matplotlib, Agg backend): abundance maps, endmember spectra, learned nonlinearities."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

MAX_CURVE_PANELS = 16  # wide scenes show this many channels, evenly spaced


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _grid(n: int, max_cols: int = 4) -> tuple[int, int]:
    cols = min(n, max_cols)
    return math.ceil(n / cols), cols


def plot_abundance_maps(abundances: np.ndarray, rows: int, cols: int, path: str | Path) -> Path:
    """One image per component (fractions in [0, 1]) for a rows x cols scene in row-major order."""
    plt = _pyplot()
    K = abundances.shape[1]
    maps = np.asarray(abundances).reshape(rows, cols, K)
    n_rows, n_cols = _grid(K)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(3.2 * n_cols, 3.0 * n_rows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k >= K:
            ax.axis("off")
            continue
        image = ax.imshow(maps[:, :, k], vmin=0.0, vmax=1.0, cmap="viridis")
        ax.set_title(f"component {k + 1}")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8, label="abundance")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def plot_endmembers(
    endmembers: np.ndarray, path: str | Path, axis: np.ndarray | None = None, axis_name: str | None = None
) -> Path:
    """Endmember spectra (channels x K) against the axis values (wavelengths, times) or channel index."""
    plt = _pyplot()
    N, K = endmembers.shape
    x = np.arange(1, N + 1) if axis is None else np.asarray(axis)
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    marker = "o" if N <= 20 else None
    for k in range(K):
        ax.plot(x, endmembers[:, k], marker=marker, label=f"endmember {k + 1}")
    ax.set_xlabel(axis_name.replace("_", " ") if axis_name else "channel")
    ax.set_ylabel("value (data units)")
    ax.set_title("estimated endmembers f(A e_k)")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def plot_nonlinearities(curves: dict[str, np.ndarray], path: str | Path) -> Path:
    """The learned f_n against the channel's linear input (A z)_n, up to MAX_CURVE_PANELS channels."""
    plt = _pyplot()
    inputs, outputs = np.asarray(curves["inputs"]), np.asarray(curves["outputs"])
    N = inputs.shape[1]
    channels = np.unique(np.linspace(0, N - 1, min(N, MAX_CURVE_PANELS)).round().astype(int))
    n_rows, n_cols = _grid(len(channels))
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(3.0 * n_cols, 2.6 * n_rows), squeeze=False)
    for ax, n in zip(axes.flat, list(channels) + [None] * (axes.size - len(channels))):
        if n is None:
            ax.axis("off")
            continue
        ax.plot(inputs[:, n], outputs[:, n])
        ax.set_title(f"channel {n + 1}", fontsize="small")
        ax.tick_params(labelsize="x-small")
    fig.supxlabel("linear input (A z)_n")
    fig.supylabel("f_n (data units)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
