"""The option model as an HMM: exact forward log-likelihood and Viterbi segmentation (reference §1.1).

With options h_t and termination flags b_t marginalised, the model is an HMM over options with state-dependent
transitions M_ij(s_t) = beta_i(s_t) eta_j + (1 - beta_i(s_t)) 1[i = j] and emissions pi_j(a_t | s_t); the first
option is drawn from eta (b_0 = 1). The forward recursion is O(T K) per trajectory because M is a rank-one update
of a diagonal:

    alpha_0(j) = eta_j pi_j(a_0|s_0)
    alpha_t(j) = pi_j(a_t|s_t) [ eta_j sum_i alpha_{t-1}(i) beta_i(s_t) + alpha_{t-1}(j) (1 - beta_j(s_t)) ]

Everything is computed in log space and vectorised over the batch. Hand-written: no maintained library handles
state-dependent transitions of this form.
"""

from __future__ import annotations

import itertools
import logging

import torch

logger = logging.getLogger(__name__)


def _check(log_pi: torch.Tensor, log_beta: torch.Tensor, log_eta: torch.Tensor) -> None:
    if log_pi.ndim != 3 or log_beta.shape != log_pi.shape:
        raise ValueError(
            f"log_pi and log_beta must both be (B, T, K), got {tuple(log_pi.shape)} and {tuple(log_beta.shape)}"
        )
    if log_eta.shape[-1] != log_pi.shape[-1]:
        raise ValueError(f"log_eta must end in K={log_pi.shape[-1]}, got {tuple(log_eta.shape)}")


def forward_log_likelihood(
    log_pi: torch.Tensor,
    log_beta: torch.Tensor,
    log_eta: torch.Tensor,
    log_not_beta: torch.Tensor | None = None,
    *,
    return_filtered: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Exact log p(a_{0:T-1} | s_{0:T-1}) of the option HMM, by the forward recursion.

    Args:
        log_pi: (B, T, K) log pi_k(a_t | s_t).
        log_beta: (B, T, K) log beta_k(s_t) (the value at t = 0 is unused).
        log_eta: (K,) or (B, K) log option weights (a probability vector over the K options).
        log_not_beta: (B, T, K) log(1 - beta_k(s_t)); computed from ``log_beta`` when omitted (pass it when
            beta is close to 1, where that loses precision).

        return_filtered: also return the (B, T, K) filtering distributions p(h_t | a_{0:t}, s_{0:t}).

    Returns:
        (B,) log-likelihoods (and the filtering distributions when asked).

    Raises:
        ValueError: shapes disagree.
    """
    _check(log_pi, log_beta, log_eta)
    if log_not_beta is None:
        log_not_beta = torch.log1p(-log_beta.exp())
    log_eta = log_eta.expand(log_pi.shape[0], -1)
    log_alpha = log_eta + log_pi[:, 0]
    alphas = [log_alpha]
    for t in range(1, log_pi.shape[1]):
        switch = log_eta + torch.logsumexp(log_alpha + log_beta[:, t], dim=-1, keepdim=True)
        stay = log_alpha + log_not_beta[:, t]
        log_alpha = log_pi[:, t] + torch.logaddexp(switch, stay)
        alphas.append(log_alpha)
    log_lik = torch.logsumexp(log_alpha, dim=-1)
    if return_filtered:
        return log_lik, torch.softmax(torch.stack(alphas, dim=1), dim=-1)
    return log_lik


def brute_force_log_likelihood(log_pi: torch.Tensor, log_beta: torch.Tensor, log_eta: torch.Tensor) -> torch.Tensor:
    """log p(a | s) by enumerating every (b_{1:T-1}, h_{0:T-1}) path of the generative story (tests only).

    Exponential in T: use for T K small. Same arguments as :func:`forward_log_likelihood`, ``log_eta`` (K,).
    """
    _check(log_pi, log_beta, log_eta)
    batch, steps, k = log_pi.shape
    log_not_beta = torch.log1p(-log_beta.exp())
    totals = []
    for i in range(batch):
        terms = []
        for options in itertools.product(range(k), repeat=steps):
            for flags in itertools.product((0, 1), repeat=steps - 1):
                lp = log_eta[options[0]] + log_pi[i, 0, options[0]]
                ok = True
                for t in range(1, steps):
                    prev, cur = options[t - 1], options[t]
                    if flags[t - 1]:
                        lp = lp + log_beta[i, t, prev] + log_eta[cur]
                    elif cur == prev:
                        lp = lp + log_not_beta[i, t, prev]
                    else:
                        ok = False
                        break
                    lp = lp + log_pi[i, t, cur]
                if ok:
                    terms.append(lp)
        totals.append(torch.logsumexp(torch.stack(terms), dim=0))
    return torch.stack(totals)


def viterbi(
    log_pi: torch.Tensor, log_beta: torch.Tensor, log_eta: torch.Tensor, log_not_beta: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Most probable joint path of options and termination flags (h_t, b_t), by max-product over (B, T, K, 2).

    Args:
        log_pi, log_beta, log_eta, log_not_beta: as in :func:`forward_log_likelihood`.

    Returns:
        options: (B, T) int64 option index per step.
        boundaries: (B, T) bool, b_t (True at t = 0, and wherever an option was (re)drawn).

    Raises:
        ValueError: shapes disagree.
    """
    _check(log_pi, log_beta, log_eta)
    if log_not_beta is None:
        log_not_beta = torch.log1p(-log_beta.exp())
    batch, steps, k = log_pi.shape
    log_eta = log_eta.expand(batch, -1)
    delta = log_eta + log_pi[:, 0]  # best score ending in option j at t (max over b_t)
    back_switch = torch.zeros(batch, steps, dtype=torch.long, device=log_pi.device)  # argmax_i for a switch
    choose_switch = torch.ones(batch, steps, k, dtype=torch.bool, device=log_pi.device)
    for t in range(1, steps):
        best_prev, arg_prev = (delta + log_beta[:, t]).max(dim=-1, keepdim=True)
        switch = log_eta + best_prev
        stay = delta + log_not_beta[:, t]
        choose_switch[:, t] = switch > stay
        back_switch[:, t] = arg_prev.squeeze(-1)
        delta = log_pi[:, t] + torch.maximum(switch, stay)
    options = torch.empty(batch, steps, dtype=torch.long, device=log_pi.device)
    boundaries = torch.zeros(batch, steps, dtype=torch.bool, device=log_pi.device)
    current = delta.argmax(dim=-1)
    rows = torch.arange(batch, device=log_pi.device)
    for t in range(steps - 1, -1, -1):
        options[:, t] = current
        switched = choose_switch[rows, t, current]
        boundaries[:, t] = switched
        if t > 0:
            current = torch.where(switched, back_switch[:, t], current)
    boundaries[:, 0] = True
    return options, boundaries
