"""The nonparametric prior: GEM stick-breaking, Kumaraswamy posteriors on the sticks, and their KL (§1.4).

Notation (reference §1.4):

==========  ===============================================================
code        paper
==========  ===============================================================
``v``       stick fractions v_k ~ Beta(1, alpha) under the prior
``eta``     option weights eta_k = v_k prod_{j<k} (1 - v_j)
``a, b``    Kumaraswamy(a_k, b_k) posterior of v_k, k <= K
``alpha``   DP concentration, learned (empirical Bayes through the KL)
==========  ===============================================================

Two estimators of the prior's terms are offered (:class:`StickBreakingPrior`, ``estimator=``):

* ``"plugin"`` (the public code): eta is the average of ``n_draws`` reparameterised stick-breaking draws (so
  sum_k eta_k < 1 and the ELBO is evaluated at the mean of eta), and the KL is the one-point estimate
  log Kuma(v_bar) - log Beta(v_bar; 1, alpha) at v_bar = the mean of those draws, clamped to [1e-4, 1 - 1e-4].
* ``"mc"`` (corrected): every trajectory gets its own stick draw, so the likelihood term is an unbiased Monte Carlo
  estimate of E_q(v)[log p(x | eta(v))], and the KL is the Monte Carlo average of log q(v) - log p(v) over the draws.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

logger = logging.getLogger(__name__)

ESTIMATORS = ("plugin", "mc")
_V_CLAMP = 1e-6
_PLUGIN_CLAMP = 1e-4


def stick_breaking(v: torch.Tensor) -> torch.Tensor:
    """Option weights from stick fractions: eta_k = v_k prod_{j<k} (1 - v_j).

    Args:
        v: (..., K) fractions in [0, 1].

    Returns:
        (..., K) weights; their sum is 1 - prod_k (1 - v_k) (the mass beyond K is left out).

    Example:
        >>> stick_breaking(torch.tensor([0.5, 0.5])).tolist()
        [0.5, 0.25]
    """
    remaining = torch.cumprod(1.0 - v, dim=-1)
    before = torch.cat([torch.ones_like(v[..., :1]), remaining[..., :-1]], dim=-1)
    return v * before


def kumaraswamy_sample(
    a: torch.Tensor, b: torch.Tensor, n: int, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Reparameterised Kumaraswamy(a, b) draws, v = (1 - (1 - u)^{1/b})^{1/a}.

    Args:
        a, b: (K,) positive parameters.
        n: number of draws.
        generator: source of the uniforms.

    Returns:
        (n, K) draws in (0, 1), clamped away from 0 and 1 by 1e-6; differentiable in a and b.
    """
    u = torch.rand((n, a.shape[-1]), generator=generator, device=a.device, dtype=a.dtype)
    u = u.clamp(_V_CLAMP, 1.0 - _V_CLAMP)
    # 1 - (1-u)^{1/b} computed as -expm1(log1p(-u)/b) for accuracy when b is large.
    inner = -torch.expm1(torch.log1p(-u) / b)
    v = inner.clamp_min(1e-30) ** (1.0 / a)
    return v.clamp(_V_CLAMP, 1.0 - _V_CLAMP)


def kumaraswamy_mean(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """E[v] for v ~ Kumaraswamy(a, b): b * B(1 + 1/a, b)."""
    log_beta = torch.lgamma(1.0 + 1.0 / a) + torch.lgamma(b) - torch.lgamma(1.0 + 1.0 / a + b)
    return b * torch.exp(log_beta)


def kumaraswamy_log_prob(v: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """log Kuma(v; a, b) = log a + log b + (a-1) log v + (b-1) log(1 - v^a)."""
    return torch.log(a) + torch.log(b) + (a - 1.0) * torch.log(v) + (b - 1.0) * torch.log1p(-(v**a))


def beta_one_log_prob(v: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """log Beta(v; 1, alpha) = log alpha + (alpha - 1) log(1 - v)."""
    return torch.log(alpha) + (alpha - 1.0) * torch.log1p(-v)


def kl_kumaraswamy_beta_mc(
    a: torch.Tensor, b: torch.Tensor, alpha: torch.Tensor, n: int, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Monte Carlo KL(Kuma(a_k, b_k) || Beta(1, alpha)) per stick, from ``n`` reparameterised draws.

    Exactly 0 when a = 1 and b = alpha, since Kuma(1, alpha) = Beta(1, alpha) (every draw contributes 0).

    Args:
        a, b: (K,) Kumaraswamy parameters.
        alpha: () concentration.
        n: number of draws.
        generator: source of the uniforms.

    Returns:
        (K,) KL estimates (nats).
    """
    v = kumaraswamy_sample(a, b, n, generator=generator)
    return (kumaraswamy_log_prob(v, a, b) - beta_one_log_prob(v, alpha)).mean(dim=0)


class StickBreakingPrior(nn.Module):
    """GEM(alpha) prior over option weights with Kumaraswamy posteriors on the first K sticks (growable).

    Each stick k holds one parameter ``[log a_k, log b_k]`` initialised from N(0, 1); ``log_alpha`` too.

    Args:
        n_options: initial K.
        estimator: ``"plugin"`` (public code: averaged draws, one-point KL) or ``"mc"`` (corrected Monte Carlo).
        n_draws: stick draws per call for the plug-in average and for the Monte Carlo KL.
        generator: initialises the parameters (N(0, 1)).

    Raises:
        ValueError: unknown ``estimator`` or non-positive sizes.
    """

    def __init__(
        self, n_options: int, *, estimator: str = "plugin", n_draws: int = 30, generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        if estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
        if n_options < 1 or n_draws < 1:
            raise ValueError(f"n_options and n_draws must be >= 1, got {n_options} and {n_draws}")
        self.estimator = estimator
        self.n_draws = n_draws
        self.sticks = nn.ParameterList()
        self.log_alpha = nn.Parameter(torch.randn((), generator=generator))
        for _ in range(n_options):
            self.add_stick(generator=generator)

    @property
    def n_options(self) -> int:
        """Current truncation K."""
        return len(self.sticks)

    def add_stick(self, *, generator: torch.Generator | None = None) -> nn.Parameter:
        """Append one stick ``[log a, log b]`` ~ N(0, 1) and return its parameter."""
        device = self.log_alpha.device
        stick = nn.Parameter(torch.randn(2, generator=generator).to(device))
        self.sticks.append(stick)
        return stick

    def ab(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(K,) Kumaraswamy parameters a and b."""
        logs = torch.stack(list(self.sticks))
        return logs[:, 0].exp(), logs[:, 1].exp()

    @property
    def alpha(self) -> torch.Tensor:
        """() DP concentration."""
        return self.log_alpha.exp()

    def mean_eta(self) -> torch.Tensor:
        """(K,) option weights at the posterior mean of every stick, renormalised over the first K.

        Used for evaluation (exact likelihood, Viterbi), where the truncated model conditions on h <= K.
        """
        a, b = self.ab()
        eta = stick_breaking(kumaraswamy_mean(a, b))
        return eta / eta.sum()

    def sample(self, batch_size: int, *, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Option weights for a minibatch and the KL term, with the configured estimator.

        Args:
            batch_size: number of trajectories B.
            generator: source of the uniforms.

        Returns:
            eta: (B, K) weights (rows identical under ``"plugin"``).
            kl: () sum over the K sticks of KL(q(v_k) || Beta(1, alpha)).
        """
        a, b = self.ab()
        alpha = self.alpha
        if self.estimator == "plugin":
            v = kumaraswamy_sample(a, b, self.n_draws, generator=generator)
            eta = stick_breaking(v).mean(dim=0)
            v_bar = v.mean(dim=0).clamp(_PLUGIN_CLAMP, 1.0 - _PLUGIN_CLAMP)
            kl = (kumaraswamy_log_prob(v_bar, a, b) - beta_one_log_prob(v_bar, alpha)).sum()
            return eta.expand(batch_size, -1), kl
        v = kumaraswamy_sample(a, b, batch_size, generator=generator)
        eta = stick_breaking(v)
        if batch_size >= self.n_draws:
            kl_draws = v
        else:
            kl_draws = torch.cat([v, kumaraswamy_sample(a, b, self.n_draws - batch_size, generator=generator)])
        kl = (kumaraswamy_log_prob(kl_draws, a, b) - beta_one_log_prob(kl_draws, alpha)).mean(dim=0).sum()
        return eta, kl
