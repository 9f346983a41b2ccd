"""Figures: trajectories coloured by option, option usage over training, K over training (PNG, matplotlib Agg)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from sixlab_shared import atomic_write_with


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_segmentation(
    path: str | os.PathLike[str],
    predicted: np.ndarray,
    truth: np.ndarray | None = None,
    *,
    mapping: dict[int, int] | None = None,
    title: str = "segmentation",
) -> None:
    """Trajectories as rows of coloured steps, one colour per option; ground truth drawn beside when given.

    Args:
        path: PNG to write (atomically).
        predicted: (N, T) predicted options.
        truth: (N, T) true options, optional.
        mapping: predicted -> true option (Hungarian); predicted options are recoloured to match the truth.
        title: figure title.
    """
    plt = _pyplot()
    predicted = np.asarray(predicted)
    if mapping:
        unmatched = iter(range(int(max(predicted.max(), max(mapping.values()))) + 1, 10_000))
        lookup = {k: mapping.get(k, None) for k in np.unique(predicted).tolist()}
        lookup = {k: (v if v is not None else next(unmatched)) for k, v in lookup.items()}
        predicted = np.vectorize(lookup.get)(predicted)
    panels = [("learned options (Viterbi)", predicted)] + (
        [("ground truth", np.asarray(truth))] if truth is not None else []
    )
    n, steps = predicted.shape
    fig, axes = plt.subplots(1, len(panels), figsize=(2.5 + 0.18 * steps * len(panels), 1.0 + 0.3 * n), squeeze=False)
    vmax = max(int(p.max()) for _, p in panels)
    for ax, (name, values) in zip(axes[0], panels, strict=True):
        ax.imshow(values, cmap="tab10", vmin=0, vmax=max(vmax, 9), aspect="auto", interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step t")
        ax.set_ylabel("trajectory")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    atomic_write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)


def plot_training(path: str | os.PathLike[str], history: Sequence[dict[str, Any]]) -> None:
    """Two panels: per-option usage (relaxed, averaged per epoch) and K, both against the epoch.

    Args:
        path: PNG to write (atomically).
        history: ``FitResult.history`` records (``epoch``, ``options/K``, ``options/usage``).
    """
    plt = _pyplot()
    epochs = np.array([r["epoch"] for r in history])
    k_max = max(r["options/K"] for r in history)
    usage = np.zeros((len(history), k_max))
    for i, record in enumerate(history):
        usage[i, : len(record["options/usage"])] = record["options/usage"]
    fig, (ax_usage, ax_k) = plt.subplots(1, 2, figsize=(10, 3.5))
    ax_usage.stackplot(epochs, usage.T, labels=[f"option {k}" for k in range(k_max)], colors=plt.cm.tab10.colors)
    ax_usage.set_xlabel("epoch")
    ax_usage.set_ylabel("usage")
    ax_usage.set_ylim(0, 1)
    ax_usage.set_title("option usage over training")
    ax_usage.legend(fontsize=7, loc="upper right")
    ax_k.step(epochs, [r["options/K"] for r in history], where="post")
    ax_k.set_xlabel("epoch")
    ax_k.set_ylabel("K")
    ax_k.set_title("number of options K")
    fig.tight_layout()
    atomic_write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)


def plot_downstream(path: str | os.PathLike[str], result: dict[str, Any]) -> None:
    """Success rate against primitive environment steps, mean ± std over seeds, one line per condition.

    Args:
        path: PNG to write (atomically).
        result: :func:`bnpo.downstream.compare` output.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.8))
    labels = {
        "options": "primitive actions + options",
        "primitive": "primitive actions only",
        "untrained_options": "primitive + untrained options (control)",
    }
    for condition in labels:
        if condition not in result:
            continue
        runs = result[condition]["runs"]
        steps = np.asarray(runs[0]["curve"]["steps"])
        rates = np.array([r["curve"]["success"] for r in runs])
        mean, std = rates.mean(0), rates.std(0)
        label = f"{labels[condition]}: AUC {result[condition]['auc_mean']:.3f} ± {result[condition]['auc_std']:.3f}"
        ax.plot(steps, mean, label=label)
        ax.fill_between(steps, mean - std, mean + std, alpha=0.2)
    seeds = len(next(result[c] for c in ("options", "primitive") if c in result)["runs"])
    ax.set_xlabel("primitive environment steps")
    ax.set_ylabel("success rate of training episodes")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"{result['env']}: mean ± std over {seeds} seeds", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    atomic_write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
