"""The pieces of CompILE's relaxed ELBO (Kipf et al. 2019; reference §2.3): Gumbel-softmax samples, the Poisson
length prior, categorical KLs and the soft segment masks.

Conventions (this package's, stated once): a trajectory has steps 0..T-1. Segment i has a boundary variable b_i,
a distribution over its *last step* t in 0..T-1 (one-hot when hard), so step t belongs to segment i when every
earlier segment ended before t and segment i has not ended before t:

    m_i[t] = (1 - sum_{u<t} b_i[u]) * prod_{j<i} sum_{u<t} b_j[u]

With hard boundaries this is the indicator of end_{i-1} < t <= end_i (empty when end_i <= end_{i-1}); with soft
(relaxed) boundaries it is the same expression, multilinear in each b_j, so it equals the expectation of the hard
masks when the b_j are independent categoricals (tested by enumeration). The public code's boundary marks the
*first* step of the next segment and always ends the last segment one step early (its end-of-sequence token);
here every step belongs to some segment.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

_U_CLAMP = 1e-6
_LOG_EPS = 1e-16


def gumbel_softmax_sample(
    logits: torch.Tensor, tau: float, *, generator: torch.Generator | None = None, hard: bool = False
) -> torch.Tensor:
    """A Concrete / Gumbel-softmax sample softmax((logits + g) / tau), g ~ Gumbel(0, 1) i.i.d.

    Args:
        logits: (..., K) unnormalised log-probabilities.
        tau: temperature > 0.
        generator: source of the uniforms (explicit, so fits are reproducible).
        hard: return the one-hot argmax of the perturbed logits instead (an exact categorical sample, no gradient).

    Returns:
        (..., K) points of the simplex, same dtype and device as ``logits``.
    """
    u = torch.rand(logits.shape, generator=generator, device=logits.device, dtype=logits.dtype)
    gumbel = -torch.log(-torch.log(u.clamp(_U_CLAMP, 1.0 - _U_CLAMP)))
    if hard:
        return F.one_hot((logits + gumbel).argmax(-1), logits.shape[-1]).to(logits.dtype)
    return torch.softmax((logits + gumbel) / tau, dim=-1)


def poisson_length_log_prior(max_length: int, rate: float) -> torch.Tensor:
    """log P(L = l) for segment lengths l = 1..max_length under Poisson(rate) truncated to {1..max_length}.

    log P(l) = l log(rate) - rate - log(l!) - log Z with Z the Poisson mass on 1..max_length. (The public code gives
    boundary position p the Poisson value of p + 1, one more than the length; here the value is the length.)

    Args:
        max_length: largest length T >= 1.
        rate: Poisson rate > 0 (3 in the paper's CompILE runs).

    Returns:
        (max_length,) float64 log-probabilities, index l - 1 for length l.

    Example:
        >>> poisson_length_log_prior(3, 3.0).exp().sum().item()
        1.0
    """
    lengths = torch.arange(1, max_length + 1, dtype=torch.float64)
    unnormalised = lengths * math.log(rate) - rate - torch.lgamma(lengths + 1.0)
    return unnormalised - torch.logsumexp(unnormalised, dim=0)


def truncated_length_log_prior(lengths: torch.Tensor, max_length: int, rate: float) -> torch.Tensor:
    """Row-wise :func:`poisson_length_log_prior`: row b truncated to 1..lengths[b] (episodes of several lengths).

    Args:
        lengths: (B,) int64 in 1..max_length.
        max_length: T, the padded length.
        rate: Poisson rate > 0.

    Returns:
        (B, T) float64; entry [b, l - 1] = log P(L = l | L <= lengths[b]) for l <= lengths[b], 0 beyond (a
        placeholder where the boundary distribution has no mass, so ``kl_categorical`` stays finite).
    """
    steps = torch.arange(1, max_length + 1, dtype=torch.float64, device=lengths.device)
    unnormalised = steps * math.log(rate) - rate - torch.lgamma(steps + 1.0)
    log_z = torch.logcumsumexp(unnormalised, dim=0)[lengths - 1]  # (B,)
    inside = steps[None, :] <= lengths[:, None].to(torch.float64)
    return torch.where(inside, unnormalised[None, :] - log_z[:, None], torch.zeros((), dtype=torch.float64))


def kl_categorical(probs: torch.Tensor, log_prior: torch.Tensor) -> torch.Tensor:
    """KL(q || p) = sum_k q_k (log q_k - log p_k) over the last axis (q_k = 0 contributes 0).

    Args:
        probs: (..., K) probabilities q.
        log_prior: (..., K) (broadcastable) log p; p may be sub-normalised (then the value is the KL to the
            normalised prior minus log sum p).

    Returns:
        (...) KL in nats.
    """
    return (probs * (torch.log(probs + _LOG_EPS) - log_prior)).sum(-1)


def kl_categorical_uniform(probs: torch.Tensor) -> torch.Tensor:
    """KL(q || Uniform(K)) = sum_k q_k log q_k + log K over the last axis (the public code drops the log K)."""
    k = probs.shape[-1]
    return (probs * torch.log(probs + _LOG_EPS)).sum(-1) + math.log(k)


def exclusive_cumsum(x: torch.Tensor) -> torch.Tensor:
    """sum_{u<t} x[..., u] along the last axis (0 at t = 0)."""
    return torch.cumsum(x, dim=-1) - x


def segment_masks(boundaries: list[torch.Tensor]) -> torch.Tensor:
    """Soft membership of every step in every segment (see the module docstring).

    Args:
        boundaries: N tensors (B, T), segment i's distribution over its last step (rows on the simplex).

    Returns:
        (N, B, T) m_i[t]; with hard boundaries ending at T - 1 for the last segment, each column sums to 1.
    """
    started = torch.ones_like(boundaries[0])  # prod_{j<i} P(segment j ended before t)
    masks = []
    for b in boundaries:
        ended_before = exclusive_cumsum(b)
        masks.append((1.0 - ended_before) * started)
        started = started * ended_before
    return torch.stack(masks)


def encoder_masks(boundaries: list[torch.Tensor]) -> torch.Tensor:
    """The LSTM reset mask for the segment after ``boundaries``: prod_j sum_{u<t} b_j[u], (B, T)."""
    started = torch.ones_like(boundaries[0])
    for b in boundaries:
        started = started * exclusive_cumsum(b)
    return started


__all__ = [
    "encoder_masks",
    "exclusive_cumsum",
    "gumbel_softmax_sample",
    "kl_categorical",
    "kl_categorical_uniform",
    "poisson_length_log_prior",
    "segment_masks",
    "truncated_length_log_prior",
]
