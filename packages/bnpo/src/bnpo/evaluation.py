"""Scoring a fitted model: the evaluation report (exact log-likelihood, Viterbi usage, accuracy and boundary F1
against ground truth, the Room score) and the restart-selection criterion."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from bnpo import metrics
from bnpo.model import OptionModel


def viterbi_usage(
    model: OptionModel, states: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor | None = None
) -> np.ndarray:
    """(K,) float64 fraction of (real) steps the Viterbi segmentation assigns to each option."""
    options, _ = model.segment(states, actions, mask)
    if mask is not None:
        options = options[mask.bool()]
    return metrics.option_usage(options.cpu(), model.n_options)


def selection_score(
    model: OptionModel, states: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor | None = None
) -> float:
    """The restart-selection criterion: mean exact log p(a | s) per (real) step (forward algorithm), float64.

    Args:
        model: a fitted model.
        states: (B, T, obs_dim) float32.
        actions: (B, T) int64 or (B, T, A) float32.
        mask: (B, T) bool real steps of padded episodes (None: all).
    """
    device = model.device
    with torch.no_grad():
        loglik = model.log_likelihood(states.to(device), actions.to(device), None if mask is None else mask.to(device))
    steps = states.shape[0] * states.shape[1] if mask is None else int(mask.sum())
    return float(loglik.sum()) / steps


def evaluate(
    model: OptionModel, windows: dict[str, torch.Tensor], *, n_rooms: int | None = None, used_threshold: float = 0.02
) -> dict[str, Any]:
    """Scores of a fitted model on fixed-length windows or padded episodes.

    Args:
        model: fitted model.
        windows: ``Dataset.windows()`` or ``Dataset.padded()`` output (``options`` and ``mask`` optional; with a
            mask, padded steps count nowhere).
        n_rooms: V, to add the Room score when the data come from Room(V).
        used_threshold: an option counts as used when Viterbi assigns it at least this fraction of steps.

    Returns:
        dict with ``K``, ``usage`` (Viterbi, per option), ``used_options``, ``loglik_per_traj`` and
        ``loglik_per_step`` (exact, forward algorithm); with ground truth ``accuracy`` (Hungarian-matched) and
        ``boundary_f1`` (+-1 step); with ``n_rooms`` ``room_score`` and ``rooms_covered``.
    """
    device = model.device
    states, actions = windows["states"].to(device), windows["actions"].to(device)
    mask = windows.get("mask")
    mask = None if mask is None or bool(mask.all()) else mask.to(device)
    loglik = model.log_likelihood(states, actions, mask)
    options, _ = model.segment(states, actions, mask)
    options = options.cpu()
    real = options if mask is None else options[mask.cpu()]  # steps that exist (padding excluded)
    usage = metrics.option_usage(real, model.n_options)
    steps = real.numel()
    result: dict[str, Any] = {
        "K": model.n_options,
        "usage": [round(float(u), 4) for u in usage],
        "used_options": int((usage >= used_threshold).sum()),
        "loglik_per_traj": float(loglik.mean()),
        "loglik_per_step": float(loglik.sum() / steps),
    }
    if "options" in windows:
        truth = windows["options"]
        real_truth = truth if mask is None else truth[mask.cpu()]
        result["accuracy"] = metrics.hungarian_accuracy(real, real_truth)[0]
        # padded steps repeat the last real step (data) and keep its option (Viterbi): no boundary inside padding
        result["boundary_f1"] = metrics.boundary_f1(
            metrics.boundaries_from_options(options), metrics.boundaries_from_options(truth)
        )
    if n_rooms is not None:
        result["room_score"] = metrics.room_score(model, n_rooms)
        result["rooms_covered"] = len(metrics.room_coverage(model, n_rooms))
    return result
