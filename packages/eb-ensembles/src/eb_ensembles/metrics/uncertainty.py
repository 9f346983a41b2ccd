"""Ensemble disagreement and closeness to a reference posterior: entropy, the total = aleatoric + epistemic (mutual
information) decomposition, agreement and total variation (conventions: :mod:`eb_ensembles.metrics`)."""

from __future__ import annotations

import torch

from eb_ensembles.checks import InvalidInputError, check_ndim, check_probabilities

__all__ = ["agreement", "entropy", "total_variation", "uncertainty_decomposition"]


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Shannon entropy in nats over the last dimension (``0 log 0 = 0``); returns ``probs.shape[:-1]``."""
    return -torch.special.xlogy(probs, probs).sum(-1)


def uncertainty_decomposition(member_probs: torch.Tensor) -> dict[str, torch.Tensor]:
    """Total = aleatoric + epistemic decomposition of the ensemble's predictive entropy, per point.

    ``total = H[p̄]``, ``aleatoric = mean_m H[p_m]`` (expected entropy), ``epistemic = total - aleatoric`` (the
    mutual information between the label and the member index; ≥ 0 by concavity of H). Also the variation ratio
    ``1 - (fraction of members voting for the modal class)`` and the disagreement with the ensemble's argmax.

    Args:
        member_probs: ``(M, N, K)`` probabilities.

    Returns:
        dict of ``(N,)`` tensors: ``total``, ``aleatoric``, ``epistemic``, ``variation_ratio``, ``disagreement``.
    """
    check_ndim("member_probs", member_probs, 3, "(M, N, K)")
    check_probabilities("member_probs", member_probs)
    mean = member_probs.mean(0)
    total = entropy(mean)
    aleatoric = entropy(member_probs).mean(0)
    votes = member_probs.argmax(-1)  # M x N
    k = member_probs.shape[-1]
    counts = torch.nn.functional.one_hot(votes, k).sum(0)  # N x K
    m = member_probs.shape[0]
    variation_ratio = 1 - counts.max(-1).values.to(mean.dtype) / m
    disagreement = (votes != mean.argmax(-1)[None]).to(mean.dtype).mean(0)
    return {
        "total": total,
        "aleatoric": aleatoric,
        "epistemic": (total - aleatoric).clamp_min(0.0),
        "variation_ratio": variation_ratio,
        "disagreement": disagreement,
    }


def agreement(probs: torch.Tensor, reference_probs: torch.Tensor) -> float:
    """Top-1 agreement rate between two ``(N, K)`` predictives (e.g. against an HMC reference)."""
    if probs.shape != reference_probs.shape:
        raise InvalidInputError(
            f"`probs` {tuple(probs.shape)} and `reference_probs` {tuple(reference_probs.shape)} differ"
        )
    check_probabilities("probs", probs)
    check_probabilities("reference_probs", reference_probs)
    return float((probs.argmax(-1) == reference_probs.argmax(-1)).to(torch.float64).mean())


def total_variation(probs: torch.Tensor, reference_probs: torch.Tensor) -> float:
    """Mean total variation ``½ ‖p - p_ref‖₁`` over points, between two ``(N, K)`` predictives (probabilities)."""
    if probs.shape != reference_probs.shape:
        raise InvalidInputError(
            f"`probs` {tuple(probs.shape)} and `reference_probs` {tuple(reference_probs.shape)} differ"
        )
    check_probabilities("probs", probs)
    check_probabilities("reference_probs", reference_probs)
    return float(0.5 * (probs - reference_probs).abs().sum(-1).to(torch.float64).mean())
