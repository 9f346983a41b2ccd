"""Evaluation of learned options against ground truth: matched accuracy, boundary F1, usage, the Room score."""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from bnpo.envs.room import room_score_state


def _as_numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def hungarian_accuracy(predicted, truth) -> tuple[float, dict[int, int]]:
    """Per-step accuracy after the best one-to-one matching of predicted to true options.

    The matching maximises the number of agreeing steps (``scipy.optimize.linear_sum_assignment``); predicted options
    left unmatched count as errors.

    Args:
        predicted: (...) int predicted options.
        truth: (...) int true options, same shape.

    Returns:
        (accuracy, mapping predicted -> true).

    Example:
        >>> hungarian_accuracy([1, 1, 0, 0], [0, 0, 1, 1])[0]
        1.0
    """
    pred, true = _as_numpy(predicted).reshape(-1), _as_numpy(truth).reshape(-1)
    if pred.shape != true.shape:
        raise ValueError(f"predicted and truth must have the same size, got {pred.shape} and {true.shape}")
    counts = np.zeros((pred.max() + 1, true.max() + 1), dtype=np.int64)
    np.add.at(counts, (pred, true), 1)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return float(counts[rows, cols].sum() / pred.size), {int(r): int(c) for r, c in zip(rows, cols, strict=True)}


def boundaries_from_options(options) -> np.ndarray:
    """(N, T) bool: True where the option changes (t >= 1)."""
    options = _as_numpy(options)
    out = np.zeros(options.shape, dtype=bool)
    out[:, 1:] = options[:, 1:] != options[:, :-1]
    return out


def boundary_f1(predicted, truth, *, tolerance: int = 1) -> float:
    """F1 of predicted segment boundaries against true ones, a match allowed within ``tolerance`` steps.

    Each true boundary is matched to at most one predicted boundary in the same trajectory (greedy, nearest first).
    Boundaries at t = 0 are ignored. When neither side has any boundary, the F1 is 1.

    Args:
        predicted: (N, T) bool predicted boundaries.
        truth: (N, T) bool true boundaries.
        tolerance: allowed offset in steps.

    Returns:
        F1 pooled over all trajectories.
    """
    pred, true = _as_numpy(predicted).astype(bool), _as_numpy(truth).astype(bool)
    tp = fp = fn = 0
    for p_row, t_row in zip(pred, true, strict=True):
        p_idx = list(np.flatnonzero(p_row[1:]) + 1)
        t_idx = list(np.flatnonzero(t_row[1:]) + 1)
        pairs = sorted((abs(p - t), p, t) for p in p_idx for t in t_idx if abs(p - t) <= tolerance)
        used_p, used_t = set(), set()
        for _, p, t in pairs:
            if p not in used_p and t not in used_t:
                used_p.add(p)
                used_t.add(t)
        tp += len(used_p)
        fp += len(p_idx) - len(used_p)
        fn += len(t_idx) - len(used_t)
    if tp + fp + fn == 0:
        return 1.0
    return 2 * tp / (2 * tp + fp + fn)


def option_usage(options, n_options: int) -> np.ndarray:
    """(K,) fraction of steps assigned to each option."""
    counts = np.bincount(_as_numpy(options).reshape(-1), minlength=n_options).astype(np.float64)
    return counts / counts.sum()


def room_score(model, n_rooms: int) -> float:
    """The Room score (reference §2.1): mean over rooms r of max_k pi_k(r | (4, 0, no hint)).

    K options score at most K / V.
    """
    state = room_score_state()
    with torch.no_grad():
        probs = model.log_pi_all(torch.as_tensor(state, device=model.device)).exp()  # K x (V + 1)
    return float(probs[:, 1:].max(dim=0).values.mean())


def room_coverage(model, n_rooms: int) -> list[int]:
    """Rooms 1..V that are the argmax action of some option at (4, 0, no hint)."""
    state = room_score_state()
    with torch.no_grad():
        best = model.log_pi_all(torch.as_tensor(state, device=model.device)).argmax(-1)
    return sorted({int(r) for r in best.tolist() if r >= 1})


def landmark_terminations(model, windows: dict) -> list[dict]:
    """The Landmarks termination check (reference §6, item 11): beta_k > 0.5 at its landmark and < 0.2 elsewhere.

    Each learned option is matched to a landmark by :func:`hungarian_accuracy` on its Viterbi segmentation. beta is
    read where it acts, beta_{h_{t-1}}(s_t) at steps t >= 1 of the segment the option explains, and the "elsewhere"
    fraction is weighted by those visits (beta in cells an option never or rarely reaches is not determined by the
    data); the unweighted fraction over all 49 cells is reported too.

    Args:
        model: a fitted ``OptionModel`` on Landmarks observations (one-hot x then one-hot y, 14 floats).
        windows: ``Dataset.windows()`` of Landmarks data (``states``, ``actions``, ``options``).

    Returns:
        one dict per matched option: ``option``, ``landmark``, ``beta_min_at_landmark`` and ``beta_mean_at_landmark``
        (over its visits there; NaN when it never acts there), ``low_elsewhere`` (fraction of its other visits with
        beta < 0.2) and ``low_all_cells`` (fraction of the other 48 cells).
    """
    from bnpo.envs.landmarks import LANDMARKS, SIZE

    states = windows["states"]
    options, _ = model.segment(states, windows["actions"])
    _, mapping = hungarian_accuracy(options, windows["options"])
    xy = torch.stack([states[..., :SIZE].argmax(-1), states[..., SIZE:].argmax(-1)], -1)[:, 1:]
    with torch.no_grad():
        beta = model.beta(states.to(model.device)).cpu()[:, 1:]
        eye = torch.eye(SIZE)
        cells = torch.stack([torch.cat([eye[x], eye[y]]) for x in range(SIZE) for y in range(SIZE)])
        beta_cells = model.beta(cells.to(model.device)).cpu().numpy()  # (49, K), row x * SIZE + y
    rows = []
    for k, landmark in sorted(mapping.items()):
        if k >= model.n_options or landmark >= len(LANDMARKS):
            continue
        x, y = LANDMARKS[landmark]
        active = options[:, :-1] == k
        at_landmark = (xy == torch.tensor([x, y])).all(-1)
        there = beta[..., k][active & at_landmark]
        others = beta[..., k][active & ~at_landmark]
        rows.append(
            {
                "option": int(k),
                "landmark": int(landmark),
                "beta_min_at_landmark": float(there.min()) if there.numel() else float("nan"),
                "beta_mean_at_landmark": float(there.mean()) if there.numel() else float("nan"),
                "low_elsewhere": float((others < 0.2).float().mean()) if others.numel() else float("nan"),
                "low_all_cells": float((np.delete(beta_cells[:, k], x * SIZE + y) < 0.2).mean()),
            }
        )
    return rows
