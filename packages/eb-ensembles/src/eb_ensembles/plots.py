"""PNG figures for the experiments (matplotlib, Agg backend, written atomically)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sixlab_shared import atomic_write_bytes

__all__ = [
    "plot_bands",
    "plot_curves",
    "plot_draw_panels",
    "plot_map_grid",
    "plot_reliability_grid",
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
    logy: bool = False,
    errors: dict[str, Sequence[float]] | None = None,
) -> Path:
    """Several named curves over the same x, with optional ± error bars (e.g. std over seeds)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for label, values in curves.items():
        err = None if errors is None else errors.get(label)
        ax.errorbar(
            list(x), list(values), yerr=None if err is None else list(err), marker="o", ms=3, capsize=2, label=label
        )
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
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
    _annotate_counts(ax, lower, width, count)
    ax.set(xlabel="confidence", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1.08), title=title)
    ax.legend(fontsize=8, loc="upper left")
    return _save(fig, path)


def _annotate_counts(ax, lower: np.ndarray, width: float, count: np.ndarray) -> None:
    """Write each non-empty bin's count above it (how many points the bar stands on)."""
    for left, c in zip(lower, count, strict=True):
        if c > 0:
            ax.text(left + width / 2, 1.01, str(int(c)), ha="center", va="bottom", fontsize=5, rotation=90)


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
        image = ax.imshow(grid.T, origin="lower", extent=extent, aspect="auto", cmap="viridis")
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    return _save(fig, path)


def plot_bands(
    path: Path,
    x_grid: np.ndarray,
    panels: dict[str, tuple[np.ndarray, np.ndarray]],
    x_train: np.ndarray,
    y_train: np.ndarray,
    *,
    truth: np.ndarray | None = None,
    title: str = "",
) -> Path:
    """One panel per method: predictive mean and ±2 sd band ``panels[name] = (mean (G,), sd (G,))``."""
    plt = _pyplot()
    cols = min(4, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 2.7 * rows), squeeze=False, sharex=True, sharey=True)
    for ax, (name, (mean, sd)) in zip(axes.flat, panels.items(), strict=False):
        ax.fill_between(x_grid, mean - 2 * sd, mean + 2 * sd, color="tab:orange", alpha=0.3, label="±2 sd")
        ax.plot(x_grid, mean, color="tab:blue", lw=1.2, label="mean")
        if truth is not None:
            ax.plot(x_grid, truth, "k--", lw=0.8, label="truth")
        ax.scatter(x_train, y_train, color="black", s=6, zorder=3)
        ax.set_title(name, fontsize=9)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=6, loc="upper left")
    fig.suptitle(title, fontsize=10, y=1.02)
    return _save(fig, path)


def plot_draw_panels(
    path: Path, x_grid: np.ndarray, panels: dict[str, np.ndarray], x_train: np.ndarray, y_train: np.ndarray
) -> Path:
    """Side-by-side function draws ``(S, G)`` per panel (e.g. ensemble atoms, prior draws, posterior draws)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.0), squeeze=False)
    for ax, (name, draws) in zip(axes[0], panels.items(), strict=True):
        for row in draws:
            ax.plot(x_grid, row, color="tab:blue", alpha=0.3, lw=0.8)
        ax.scatter(x_train, y_train, color="black", s=6, zorder=3)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("x")
    return _save(fig, path)


def plot_map_grid(
    path: Path,
    rows: dict[str, dict[str, np.ndarray]],
    extent: tuple[float, float, float, float],
    points: tuple[np.ndarray, np.ndarray] | None = None,
) -> Path:
    """A grid of heatmaps ``rows[row][column]`` (e.g. entropy / MI × method), one colour bar per row."""
    plt = _pyplot()
    row_names = list(rows)
    col_names = list(rows[row_names[0]])
    fig, axes = plt.subplots(
        len(row_names), len(col_names), figsize=(2.6 * len(col_names) + 0.8, 2.4 * len(row_names)), squeeze=False
    )
    for r, row in enumerate(row_names):
        vmax = max(float(np.max(rows[row][c])) for c in col_names) or 1.0
        image = None
        for c, col in enumerate(col_names):
            ax = axes[r, c]
            image = ax.imshow(
                rows[row][col].T, origin="lower", extent=extent, aspect="auto", cmap="magma", vmin=0, vmax=vmax
            )
            if points is not None:
                ax.scatter(points[0][:, 0], points[0][:, 1], c=points[1], s=1, cmap="coolwarm", alpha=0.5)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(col, fontsize=9)
            if c == 0:
                ax.set_ylabel(row, fontsize=9)
        fig.colorbar(image, ax=list(axes[r]), fraction=0.02, pad=0.01)
    return _save(fig, path)


def plot_reliability_grid(path: Path, panels: dict[str, dict[str, list[float]]], *, title: str = "") -> Path:
    """One reliability diagram per method (from :func:`eb_ensembles.metrics.reliability_bins`), with bin counts."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 2.8), squeeze=False, sharey=True)
    for ax, (name, bins) in zip(axes[0], panels.items(), strict=True):
        lower = np.asarray(bins["lower"][:-1])
        width = lower[1] - lower[0] if lower.size > 1 else 1.0
        count = np.asarray(bins["count"][:-1]) + 0.0
        count[-1] += bins["count"][-1]
        acc = np.asarray(bins["accuracy"][:-1])
        ax.bar(lower, np.where(count > 0, acc, 0), width=width, align="edge", edgecolor="black", alpha=0.7)
        ax.plot([0, 1], [0, 1], "k--", lw=1)
        _annotate_counts(ax, lower, width, count)
        ax.set(xlim=(0, 1), ylim=(0, 1.12), xlabel="confidence")
        ax.set_title(name, fontsize=9)
    axes[0, 0].set_ylabel("accuracy")
    fig.suptitle(title, fontsize=10, y=1.06)  # above the panel titles and the bin counts
    return _save(fig, path)
