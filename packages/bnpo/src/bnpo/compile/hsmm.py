"""Exact log-likelihood of CompILE's generative model, a hidden semi-Markov model (test oracle and held-out score).

The generative model the CompILE ELBO lower-bounds, with N segments at most on T steps:

* segment lengths L_1, L_2, ... i.i.d. from the length prior (Poisson(rate) truncated to 1..T,
  :func:`bnpo.compile.elbo.poisson_length_log_prior`) and latents z_1, z_2, ... i.i.d. from the option weights w
  (uniform 1/K for CompILE, the renormalised posterior-mean stick weights for NP-CompILE);
* segment i covers the next L_i steps; the segment running when step T is reached is cut there (probability
  P(L >= remaining)); when N - 1 segments have ended before T, segment N covers the rest (the ELBO's last boundary
  is fixed at the last step in the same way);
* a_t ~ pi_{z(t)}(a_t | s_t) for the segment z(t) holding step t.

The forward recursion over segment ends is O(N T^2 K) per trajectory, vectorised over the batch, in float64:

    alpha_n(e) = logsumexp_s [alpha_{n-1}(s) + log P(L = e - s) + log sum_k w_k prod_{s<=u<e} pi_k(a_u|s_u)]

with P(L >= T - s) (segments n < N) or 1 (segment N) for the segment that reaches T. Tested against brute-force
enumeration of every segmentation and latent assignment.
"""

from __future__ import annotations

import torch


def segment_log_likelihood(
    log_pi: torch.Tensor, log_w: torch.Tensor, log_length: torch.Tensor, max_segments: int
) -> torch.Tensor:
    """Exact log p(a_{0:T-1} | s_{0:T-1}) of the semi-Markov model above.

    Args:
        log_pi: (B, T, K) log pi_k(a_t | s_t).
        log_w: (K,) log option weights (a probability vector).
        log_length: (T,) log P(L = l) for l = 1..T (a probability vector).
        max_segments: N >= 1.

    Returns:
        (B,) float64 log-likelihoods.

    Raises:
        ValueError: shapes disagree or ``max_segments`` < 1.
    """
    batch, steps, k = log_pi.shape
    if log_w.shape != (k,) or log_length.shape != (steps,) or max_segments < 1:
        raise ValueError(
            f"expected log_w ({k},), log_length ({steps},) and max_segments >= 1, got {tuple(log_w.shape)}, "
            f"{tuple(log_length.shape)}, {max_segments}"
        )
    log_pi, log_w, log_length = log_pi.double(), log_w.double().to(log_pi.device), log_length.double()
    log_length = log_length.to(log_pi.device)
    neg_inf = torch.tensor(float("-inf"), dtype=torch.float64, device=log_pi.device)
    cumulative = torch.cat([torch.zeros(batch, 1, k, dtype=torch.float64, device=log_pi.device), log_pi.cumsum(1)], 1)
    # seg[b, s, e] = log sum_k w_k prod_{s <= u < e} pi_k(a_u | s_u) for s < e (segments [s, e))
    seg = torch.logsumexp(log_w + cumulative[:, None, :, :] - cumulative[:, :, None, :], dim=-1)
    start = torch.arange(steps + 1, device=log_pi.device)[:, None]
    end = torch.arange(steps + 1, device=log_pi.device)[None, :]
    length = (end - start).clamp(min=1)  # (T+1, T+1), valid where end > start
    survival = torch.logcumsumexp(log_length.flip(0), 0).flip(0)  # log P(L >= l), index l - 1
    exact = torch.where(end > start, log_length[length - 1], neg_inf)
    reach_end = torch.where(end > start, survival[length - 1], neg_inf)
    regular = torch.where(end == steps, reach_end, exact)  # segments n < N
    final = torch.where((end == steps) & (end > start), torch.zeros((), dtype=torch.float64), neg_inf)  # segment N
    alpha = torch.full((batch, steps + 1), float("-inf"), dtype=torch.float64, device=log_pi.device)
    alpha[:, 0] = 0.0
    total = torch.full((batch,), float("-inf"), dtype=torch.float64, device=log_pi.device)
    for n in range(1, max_segments + 1):
        trans = final if n == max_segments else regular
        new = torch.logsumexp(alpha[:, :, None] + trans[None] + seg, dim=1)  # (B, T+1) over ends
        total = torch.logaddexp(total, new[:, steps])
        alpha = new.clone()
        alpha[:, steps] = float("-inf")
    return total


__all__ = ["segment_log_likelihood"]
