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


class _RelaxedNLL(torch.autograd.Function):
    """mean_i [log q - log p~] and the mean relaxed option vector, from the posterior head's time-major outputs, as
    one autograd node with the gradient written out (the same functions as :func:`relaxed_log_joint`,
    :func:`posterior_log_prob` and ``h.mean``, which are its reference in the tests). It replaces some thirty autograd
    nodes, the slicing of the head's outputs and the gradient accumulations of ``h`` (used five times)."""

    @staticmethod
    def forward(ctx, log_pi, beta, eta, outs, latents, eps):  # type: ignore[override]
        steps, batch, _ = outs.shape
        b, h = latents[..., 0], latents[..., 1:]
        logit_b, logit_h = outs[..., 0], outs[..., 1:]
        pi = log_pi.exp().transpose(0, 1)  # T x B x K
        beta_t = beta.transpose(0, 1)
        eta_h = (h * eta).sum(-1)  # T x B: <eta, h_t>
        beta_prev = (h[:-1] * beta_t[1:]).sum(-1)  # beta_{h_{t-1}}(s_t)
        diff = h[1:] - h[:-1]
        same = 1.0 - 0.5 * diff.abs().sum(-1)
        b_next = b[1:]
        transition = b_next * beta_prev * eta_h[1:] + (1.0 - b_next) * (1.0 - beta_prev) * same
        action = (h * pi).sum(-1)
        log_p = (
            torch.log(b[0] + eps)
            + torch.log(eta_h[0] + eps)
            + torch.log(transition + eps).sum(0)
            + torch.log(action + eps).sum(0)
        )
        log_softmax_h = logit_h - torch.logsumexp(logit_h, dim=-1, keepdim=True)
        flag = b * F.logsigmoid(logit_b) + (1.0 - b) * F.logsigmoid(-logit_b)
        log_q = ((h * log_softmax_h).sum(-1) + flag).sum(0)
        ctx.save_for_backward(pi, beta_t, eta, latents, logit_b, log_softmax_h, eta_h, beta_prev, diff, same)
        ctx.more = (transition, action)
        ctx.eps = eps
        return (log_q - log_p).mean(), h.mean(dim=(0, 1))

    @staticmethod
    def backward(ctx, grad_nll, grad_usage):  # type: ignore[override]
        pi, beta_t, eta, latents, logit_b, log_softmax_h, eta_h, beta_prev, diff, same = ctx.saved_tensors
        transition, action = ctx.more
        eps = ctx.eps
        steps, batch, width = latents.shape
        b, h = latents[..., 0], latents[..., 1:]
        w = grad_nll / batch  # d nll / d (log q - log p) of each trajectory
        grad_latents = torch.empty_like(latents)
        grad_outs = torch.empty_like(latents)
        d_b, d_h = grad_latents[..., 0], grad_latents[..., 1:]
        # log q: option term sum_k h_k log softmax(l)_k, flag term b log s(l_b) + (1 - b) log s(-l_b)
        torch.mul(log_softmax_h, w, out=d_h)
        d_h.add_(grad_usage / (steps * batch))
        torch.mul(logit_b, w, out=d_b)
        torch.mul(h - log_softmax_h.exp() * h.sum(-1, keepdim=True), w, out=grad_outs[..., 1:])
        torch.mul(b - torch.sigmoid(logit_b), w, out=grad_outs[..., 0])
        # -log p: the first step, the transitions and the actions
        d_b[0] -= w / (b[0] + eps)
        g_eta_h = torch.empty_like(eta_h)
        torch.div(-w, eta_h[0] + eps, out=g_eta_h[0])
        g_trans = -w / (transition + eps)  # (T-1) x B
        b_next = b[1:]
        d_b[1:] += g_trans * (beta_prev * eta_h[1:] - (1.0 - beta_prev) * same)
        g_beta_prev = g_trans * (b_next * eta_h[1:] - (1.0 - b_next) * same)
        torch.mul(g_trans, b_next * beta_prev, out=g_eta_h[1:])
        g_same = g_trans * (1.0 - b_next) * (1.0 - beta_prev)
        g_action = (-w / (action + eps)).unsqueeze(-1) * pi  # d/dh of the action term; times h: d/dlog pi
        d_h.add_(g_action)
        grad_log_pi = (g_action * h).transpose(0, 1)
        d_h.addcmul_(g_eta_h.unsqueeze(-1), eta)
        grad_eta = (g_eta_h.unsqueeze(-1) * h).sum(0)
        d_h[:-1].addcmul_(g_beta_prev.unsqueeze(-1), beta_t[1:])
        grad_beta = torch.zeros_like(beta_t)
        torch.mul(g_beta_prev.unsqueeze(-1), h[:-1], out=grad_beta[1:])
        through_same = diff.sign().mul_((-0.5 * g_same).unsqueeze(-1))  # d/dh_t; d/dh_{t-1} is its negative
        d_h[1:] += through_same
        d_h[:-1] -= through_same
        if eta.shape != grad_eta.shape:
            grad_eta = grad_eta.sum_to_size(eta.shape)
        return grad_log_pi, grad_beta.transpose(0, 1), grad_eta, grad_outs, grad_latents, None


def relaxed_nll(
    log_pi: torch.Tensor,
    beta: torch.Tensor,
    eta: torch.Tensor,
    outs: torch.Tensor,
    latents: torch.Tensor,
    *,
    eps: float = LOG_EPS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The relaxed objective's data term and usage from the posterior head's time-major outputs, in one node.

    Args:
        log_pi: (B, T, K) log pi_k(a_t | s_t).
        beta: (B, T, K) beta_k(s_t).
        eta: (B, K) option weights.
        outs: (T, B, 1 + K) the head's logits [l_b, l_h] per step.
        latents: (T, B, 1 + K) the relaxed samples [b_t, h_t] per step.
        eps: constant inside the log-joint's logs.

    Returns:
        () mean over trajectories of log q - log p~ (:func:`posterior_log_prob` minus :func:`relaxed_log_joint`),
        and (K,) the mean of h over batch and time.
    """
    return _RelaxedNLL.apply(log_pi, beta, eta, outs, latents, eps)
