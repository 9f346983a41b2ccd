"""PNG figures for the experiments (matplotlib, Agg backend, written atomically)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sixlab_shared import atomic_write_bytes

__all__ = [
    "plot_curves",
    "plot_function_draws",
    "plot_heatmaps",
    "plot_reliability",
    "plot_weights",
]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def plot_function_draws(
    path: Path,
    x_grid: np.ndarray,
    draws: np.ndarray,
    x_train: np.ndarray,
    y_train: np.ndarray,
    *,
    band: tuple[np.ndarray, np.ndarray] | None = None,
    band_label: str = "±2σ",
    title: str = "",
) -> Path:
    """Member functions ``draws`` ``(M, G)`` over ``x_grid`` with the training data and an optional band."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for row in draws:
        ax.plot(x_grid, row, color="tab:blue", alpha=0.35, lw=1)
    if band is not None:
        ax.fill_between(x_grid, band[0], band[1], color="tab:orange", alpha=0.25, label=band_label)
    ax.scatter(x_train, y_train, color="black", s=14, zorder=3, label="training data")
    ax.set(xlabel="x", ylabel="f(x)", title=title)
    ax.legend(loc="best", fontsize=8)
    return _save(fig, path)


def plot_curves(
    path: Path,
    x: Sequence[float],
    curves: dict[str, Sequence[float]],
    *,
    xlabel: str,
    ylabel: str,
    title: str = "",
    logx: bool = False,
) -> Path:
    """Several named curves over the same x."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for label, values in curves.items():
        ax.plot(list(x), list(values), marker="o", ms=3, label=label)
    if logx:
        ax.set_xscale("log")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_reliability(path: Path, bins: dict[str, list[float]], *, title: str = "") -> Path:
    """Reliability diagram from :func:`eb_ensembles.metrics.reliability_bins`."""
    plt = _pyplot()
    lower = np.asarray(bins["lower"][:-1])
    width = lower[1] - lower[0] if lower.size > 1 else 1.0
    count = np.asarray(bins["count"][:-1]) + 0.0
    count[-1] += bins["count"][-1]  # fold the "confidence == 1" bucket into the top bin for display
    acc = np.asarray(bins["accuracy"][:-1])
    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    ax.bar(
        lower, np.where(count > 0, acc, 0), width=width, align="edge", edgecolor="black", alpha=0.7, label="accuracy"
    )
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    ax.set(xlabel="confidence", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1), title=title)
    ax.legend(fontsize=8, loc="upper left")
    return _save(fig, path)


def plot_weights(path: Path, weights: dict[str, Sequence[float]], *, title: str = "") -> Path:
    """Bar chart of mixture weights per member for several named weightings."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    names = list(weights)
    m = len(next(iter(weights.values())))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        ax.bar(np.arange(m) + i * width, list(weights[name]), width=width, label=name)
    ax.set(xlabel="member", ylabel="weight", title=title)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_heatmaps(
    path: Path, panels: dict[str, np.ndarray], extent: tuple[float, float, float, float], *, xlabel: str, ylabel: str
) -> Path:
    """Side-by-side heatmaps (e.g. prior weights on a 2-D grid at several EM iterations)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.2), squeeze=False)
    for ax, (title, grid) in zip(axes[0], panels.items(), strict=True):
        ax.imshow(grid.T, origin="lower", extent=extent, aspect="auto", cmap="viridis")
        ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    return _save(fig, path)
