"""The relaxed objective's pieces (reference §1.3): the relaxed log-joint log p~, the posterior's log q as the
public code computes it, a fast log-softmax, and the masking that makes padded steps neutral for the forward
algorithm and Viterbi.

Notation (reference §1.1-§1.4):

=================  ==========================================================
code               paper
=================  ==========================================================
``log_pi``         log pi_k(a_t | s_t), (B, T, K)
``beta``           beta_k(s_t), termination probability of option k at s_t
``eta``            high-level option weights (GEM stick-breaking)
``b``, ``h``       termination flag b_t and (relaxed) one-hot option h_t
``eps``            1e-4 added inside every log of the relaxed log-joint
=================  ==========================================================
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

LOG_EPS = 1e-4  # the public code's `10e-5`
NEVER = -1e9  # log-probability of a switch at a padded step (finite, so gradients stay finite)


def mask_hmm(
    log_pi: torch.Tensor, log_beta: torch.Tensor, log_not_beta: torch.Tensor, mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Make padded steps neutral for the forward algorithm and Viterbi: no emission (log pi = 0), no switch
    (log beta = -1e9, log(1 - beta) = 0), so the option and the likelihood carry through them unchanged.

    Args:
        log_pi, log_beta, log_not_beta: (B, T, K).
        mask: (B, T) bool, True at real steps (None: all real).
    """
    if mask is None:
        return log_pi, log_beta, log_not_beta
    pad = ~mask.bool().unsqueeze(-1)
    return (
        log_pi.masked_fill(pad, 0.0),
        log_beta.masked_fill(pad, NEVER),
        log_not_beta.masked_fill(pad, 0.0),
    )


def log_softmax(logits: torch.Tensor) -> torch.Tensor:
    """log softmax over the last dimension as ``logits - logsumexp(logits)``: the same values as
    ``F.log_softmax(logits, -1)`` to float rounding, but 2-3x faster forward and backward on the CPU for the short last
    dimensions here (|A| or K <= ~20), where ATen's log_softmax kernel is slow (measured for (512, 5, 7, 7))."""
    return logits - torch.logsumexp(logits, dim=-1, keepdim=True)


def relaxed_log_joint(
    log_pi: torch.Tensor,
    beta: torch.Tensor,
    eta: torch.Tensor,
    b: torch.Tensor,
    h: torch.Tensor,
    *,
    eps: float = LOG_EPS,
) -> torch.Tensor:
    """Relaxed log p(a, b, h | s) of reference §1.3, summed over time.

    log p~ = log(b_0 + eps) + log(<eta, h_0> + eps)
             + sum_{t>=1} log(b_t beta_{h_{t-1}}(s_t) <eta, h_t> + (1 - b_t)(1 - beta_{h_{t-1}}(s_t))
                              (1 - |h_t - h_{t-1}|_1 / 2) + eps)
             + sum_t log(sum_k h_tk pi_k(a_t|s_t) + eps)

    With one-hot h, binary b and ``eps=0`` it is the exact log-joint of §1.1.

    Args:
        log_pi: (B, T, K) log pi_k(a_t | s_t).
        beta: (B, T, K) beta_k(s_t).
        eta: (B, K) option weights.
        b: (B, T) termination flags in [0, 1].
        h: (B, T, K) options on the simplex.
        eps: constant inside every log.

    Returns:
        (B,) log-joint per trajectory.
    """
    first = torch.log(b[:, 0] + eps) + torch.log((eta * h[:, 0]).sum(-1) + eps)
    beta_prev = (h[:, :-1] * beta[:, 1:]).sum(-1)  # B x (T-1): beta_{h_{t-1}}(s_t)
    eta_h = (eta[:, None, :] * h[:, 1:]).sum(-1)
    same = 1.0 - 0.5 * (h[:, 1:] - h[:, :-1]).abs().sum(-1)
    b_t = b[:, 1:]
    transition = b_t * beta_prev * eta_h + (1.0 - b_t) * (1.0 - beta_prev) * same
    actions = (h * log_pi.exp()).sum(-1)
    return first + torch.log(transition + eps).sum(-1) + torch.log(actions + eps).sum(-1)


def posterior_log_prob(logit_b: torch.Tensor, logit_h: torch.Tensor, b: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """log q as the public code computes it: relaxed samples plugged into the discrete pmfs, summed over time.

    sum_t [ sum_k h_tk log softmax(l_h)_k + b_t log sigmoid(l_b) + (1 - b_t) log sigmoid(-l_b) ]
    (the Concrete density itself is never evaluated, reference §1.3).

    Returns:
        (B,) log q per trajectory.
    """
    option = (h * log_softmax(logit_h)).sum(-1)
    flag = b * F.logsigmoid(logit_b) + (1.0 - b) * F.logsigmoid(-logit_b)
    return (option + flag).sum(-1)
