"""Calibration of top-label confidences: ECE/MCE/L2 with torchmetrics' binning, adaptive (equal-mass) ECE, and the
bins of a reliability diagram (conventions: :mod:`eb_ensembles.metrics`)."""

from __future__ import annotations

import torch

from eb_ensembles.checks import InvalidInputError, check_labels, check_ndim, check_probabilities

__all__ = ["adaptive_calibration_error", "binary_calibration_error", "calibration_error", "reliability_bins"]

_NORMS = ("l1", "l2", "max")


def _binned(confidences: torch.Tensor, accuracies: torch.Tensor, n_bins: int):
    """Per-bin accuracy, confidence, proportion and count with torchmetrics' bucketing (n_bins + 1 buckets).

    Binning runs in float32, as torchmetrics does (it casts confidences with ``.float()``): a float64 confidence
    that sits on a bin edge (e.g. 0.4) lands in the same bin as there, because the float32 edge and the rounded
    confidence compare alike.
    """
    confidences = confidences.float()
    boundaries = torch.linspace(0, 1, n_bins + 1, dtype=confidences.dtype, device=confidences.device)
    index = torch.bucketize(confidences, boundaries, right=True) - 1  # conf == 1.0 lands in bucket n_bins
    size = n_bins + 1
    count = torch.zeros(size, dtype=confidences.dtype, device=confidences.device).scatter_add_(
        0, index, torch.ones_like(confidences)
    )
    conf_sum = torch.zeros_like(count).scatter_add_(0, index, confidences)
    acc_sum = torch.zeros_like(count).scatter_add_(0, index, accuracies.to(confidences.dtype))
    safe = count.clamp_min(1)
    return acc_sum / safe, conf_sum / safe, count / count.sum(), count


def _calibration_from(confidences: torch.Tensor, accuracies: torch.Tensor, n_bins: int, norm: str) -> float:
    if not isinstance(n_bins, int) or n_bins < 1:
        raise InvalidInputError(f"`n_bins` must be a positive integer, got {n_bins!r}")
    if norm not in _NORMS:
        raise InvalidInputError(f"`norm` must be one of {', '.join(_NORMS)}, got {norm!r}")
    acc, conf, prop, _ = _binned(confidences, accuracies, n_bins)
    gap = (acc - conf).abs()
    if norm == "l1":
        return float((gap * prop).sum())
    if norm == "max":
        return float(gap.max())
    return float(((gap**2) * prop).sum().sqrt())


def calibration_error(probs: torch.Tensor, labels: torch.Tensor, *, n_bins: int = 15, norm: str = "l1") -> float:
    """Top-label expected calibration error with torchmetrics' equal-width binning.

    ``norm="l1"`` is the ECE, ``"max"`` the MCE, ``"l2"`` the root of the proportion-weighted squared gaps.

    Args:
        probs: ``(N, K)`` probabilities (not logits).
        labels: ``(N,)`` integer classes.
        n_bins: number of equal-width bins on [0, 1].
        norm: ``"l1"``, ``"l2"`` or ``"max"``.

    Raises:
        InvalidInputError: bad shapes, non-probabilities, bad ``n_bins`` or ``norm``.

    Example:
        >>> calibration_error(torch.tensor([[0.75, 0.25], [0.75, 0.25]]), torch.tensor([0, 1]))
        0.25
    """
    check_ndim("probs", probs, 2, "(N, K)")
    check_probabilities("probs", probs)
    check_labels("labels", labels, probs.shape[0], probs.shape[1])
    confidences, predictions = probs.max(-1)
    return _calibration_from(confidences, predictions == labels, n_bins, norm)


def binary_calibration_error(
    positive_probs: torch.Tensor, labels: torch.Tensor, *, n_bins: int = 15, norm: str = "l1"
) -> float:
    """Calibration error of the positive-class probability (torchmetrics' ``BinaryCalibrationError`` convention).

    Args:
        positive_probs: ``(N,)`` probability of class 1.
        labels: ``(N,)`` in {0, 1}.
    """
    check_ndim("positive_probs", positive_probs, 1, "(N,)")
    check_probabilities("positive_probs", torch.stack([positive_probs, 1 - positive_probs], -1))
    check_labels("labels", labels, positive_probs.shape[0], 2)
    return _calibration_from(positive_probs, labels == 1, n_bins, norm)


def adaptive_calibration_error(probs: torch.Tensor, labels: torch.Tensor, *, n_bins: int = 15) -> float:
    """Adaptive (equal-mass) top-label ECE: sort confidences, split into ``n_bins`` groups of (nearly) equal size.

    Group sizes follow ``torch.tensor_split`` (the first ``N mod n_bins`` groups hold one more point), and the
    error is ``Σ_b (n_b / N) |acc_b - conf_b|``.
    """
    check_ndim("probs", probs, 2, "(N, K)")
    check_probabilities("probs", probs)
    check_labels("labels", labels, probs.shape[0], probs.shape[1])
    if not isinstance(n_bins, int) or n_bins < 1:
        raise InvalidInputError(f"`n_bins` must be a positive integer, got {n_bins!r}")
    confidences, predictions = probs.max(-1)
    order = confidences.argsort(stable=True)
    conf_sorted = confidences[order].to(torch.float64)
    acc_sorted = (predictions == labels)[order].to(torch.float64)
    total = 0.0
    n = confidences.shape[0]
    for conf_b, acc_b in zip(conf_sorted.tensor_split(n_bins), acc_sorted.tensor_split(n_bins), strict=True):
        if conf_b.numel():
            total += conf_b.numel() / n * abs(float(acc_b.mean() - conf_b.mean()))
    return total


def reliability_bins(probs: torch.Tensor, labels: torch.Tensor, *, n_bins: int = 15) -> dict[str, list[float]]:
    """Per-bin accuracy, mean confidence and count (the last bucket holds confidences equal to 1.0), for plots."""
    check_ndim("probs", probs, 2, "(N, K)")
    check_labels("labels", labels, probs.shape[0], probs.shape[1])
    confidences, predictions = probs.max(-1)
    acc, conf, _, count = _binned(confidences, predictions == labels, n_bins)
    edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64)
    return {
        "lower": edges.tolist(),
        "accuracy": acc.tolist(),
        "confidence": conf.tolist(),
        "count": count.tolist(),
    }
