"""Classification scores of an ensemble's predictive: the probability average, accuracy, NLL, Brier, and the summary
:func:`classification_metrics` (conventions: :mod:`eb_ensembles.metrics`)."""

from __future__ import annotations

import math

import torch

from eb_ensembles.checks import (
    InvalidInputError,
    check_labels,
    check_log_probabilities,
    check_ndim,
    check_probabilities,
)
from eb_ensembles.metrics.calibration import adaptive_calibration_error, calibration_error
from eb_ensembles.metrics.uncertainty import uncertainty_decomposition

__all__ = ["accuracy", "average_probs", "brier_score", "classification_metrics", "ensemble_nll", "nll"]


def average_probs(member_probs: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """The ensemble predictive ``p̄ = Σ_m w_m p_m``.

    Args:
        member_probs: ``(M, N, K)`` probabilities of each member.
        weights: ``(M,)`` non-negative weights summing to 1; uniform if ``None``.

    Returns:
        ``(N, K)`` averaged probabilities, same dtype.

    Raises:
        InvalidInputError: shapes do not match or the inputs are not probabilities.

    Example:
        >>> p = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])
        >>> average_probs(p).tolist()
        [[0.5, 0.5]]
    """
    check_ndim("member_probs", member_probs, 3, "(M, N, K)")
    check_probabilities("member_probs", member_probs)
    if weights is None:
        return member_probs.mean(0)
    check_ndim("weights", weights, 1, "(M,)")
    if weights.shape[0] != member_probs.shape[0]:
        raise InvalidInputError(
            f"`weights` has {weights.shape[0]} entries but there are {member_probs.shape[0]} members"
        )
    return torch.einsum("m,mnk->nk", weights.to(member_probs.dtype), member_probs)


def accuracy(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy of ``argmax p̄`` against integer ``labels``; ``probs`` is ``(N, K)``."""
    check_ndim("probs", probs, 2, "(N, K)")
    check_labels("labels", labels, probs.shape[0], probs.shape[1])
    return float((probs.argmax(-1) == labels).to(torch.float64).mean())


def nll(probs: torch.Tensor, labels: torch.Tensor, *, eps: float = 1e-12) -> float:
    """Mean negative log-likelihood ``-mean_i log p̄(y_i)`` of averaged ``(N, K)`` probabilities (clamped at ``eps``).

    Prefer :func:`ensemble_nll` when member log-probabilities are available: it never clamps.
    """
    check_ndim("probs", probs, 2, "(N, K)")
    check_probabilities("probs", probs)
    check_labels("labels", labels, probs.shape[0], probs.shape[1])
    picked = probs.gather(1, labels[:, None]).squeeze(1).clamp_min(eps)
    return float(-picked.to(torch.float64).log().mean())


def ensemble_nll(
    member_log_probs: torch.Tensor, labels: torch.Tensor, log_weights: torch.Tensor | None = None
) -> float:
    """Stable ensemble NLL: ``-mean_i logsumexp_m(log w_m + log p_m(y_i | x_i))``.

    Args:
        member_log_probs: ``(M, N, K)`` log-probabilities (e.g. ``log_softmax`` of each member's logits).
        labels: ``(N,)`` integer classes.
        log_weights: ``(M,)`` log-weights summing (after exp) to 1; uniform ``-log M`` if ``None``.

    Returns:
        The NLL in nats (float).

    Raises:
        InvalidInputError: shapes disagree, labels out of range.

    Example:
        >>> lp = torch.log(torch.tensor([[[0.9, 0.1]], [[0.5, 0.5]]]))
        >>> round(ensemble_nll(lp, torch.tensor([0])), 6) == round(-math.log(0.7), 6)
        True
    """
    check_ndim("member_log_probs", member_log_probs, 3, "(M, N, K)")
    m, n, k = member_log_probs.shape
    check_labels("labels", labels, n, k)
    check_log_probabilities("member_log_probs", member_log_probs)
    if log_weights is None:
        log_weights = torch.full((m,), -math.log(m), dtype=member_log_probs.dtype, device=member_log_probs.device)
    elif log_weights.shape != (m,):
        raise InvalidInputError(f"`log_weights` must have shape ({m},), got {tuple(log_weights.shape)}")
    picked = member_log_probs.gather(2, labels[None, :, None].expand(m, n, 1)).squeeze(2)  # M x N
    log_mix = torch.logsumexp(picked + log_weights[:, None].to(picked.dtype), dim=0)  # N
    return float(-log_mix.to(torch.float64).mean())


def brier_score(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """Brier score ``mean_i Σ_k (p̄_ik - 1[y_i=k])²`` (summed over classes, not divided by K)."""
    check_ndim("probs", probs, 2, "(N, K)")
    check_probabilities("probs", probs)
    check_labels("labels", labels, probs.shape[0], probs.shape[1])
    onehot = torch.nn.functional.one_hot(labels, probs.shape[1]).to(probs.dtype)
    return float(((probs - onehot) ** 2).sum(-1).to(torch.float64).mean())


def classification_metrics(
    member_probs: torch.Tensor, labels: torch.Tensor, *, member_log_probs: torch.Tensor | None = None, n_bins: int = 15
) -> dict[str, float]:
    """The standard in-distribution summary of an ensemble: acc, nll, brier, ece, aece, mce and mean entropies.

    Args:
        member_probs: ``(M, N, K)`` probabilities.
        labels: ``(N,)`` classes.
        member_log_probs: ``(M, N, K)`` log-probabilities for the stable NLL; ``log(member_probs)`` if ``None``.
    """
    probs = average_probs(member_probs)
    log_probs = member_log_probs if member_log_probs is not None else torch.log(member_probs)
    parts = uncertainty_decomposition(member_probs)
    return {
        "acc": accuracy(probs, labels),
        "nll": ensemble_nll(log_probs, labels),
        "brier": brier_score(probs, labels),
        "ece": calibration_error(probs, labels, n_bins=n_bins),
        "aece": adaptive_calibration_error(probs, labels, n_bins=n_bins),
        "mce": calibration_error(probs, labels, n_bins=n_bins, norm="max"),
        "entropy": float(parts["total"].to(torch.float64).mean()),
        "expected_entropy": float(parts["aleatoric"].to(torch.float64).mean()),
        "mutual_information": float(parts["epistemic"].to(torch.float64).mean()),
    }
