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

import numpy as np
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


class _PluginTerms(torch.autograd.Function):
    """The plug-in estimator's eta and KL (module docstring) as one autograd node, computed in float64 NumPy with the
    gradient written out: ``apply(log_alpha, u, *sticks)`` with ``u`` (N, K) the clamped uniforms and ``sticks`` the
    K ``[log a_k, log b_k]`` parameters returns eta (K,) and the KL (). The same formulas, clamps included, as
    :func:`kumaraswamy_sample`, :func:`stick_breaking`, :func:`kumaraswamy_log_prob` and
    :func:`beta_one_log_prob` (the reference in the tests); on a (30, K) problem the ~40 small tensor operations and
    their autograd nodes cost far more than the arithmetic (CPU only)."""

    @staticmethod
    def forward(ctx, log_alpha, u, *sticks):  # type: ignore[override]
        with np.errstate(all="ignore"):  # overflow and NaN propagate as in torch (a diverged fit is caught downstream)
            return _PluginTerms._forward(ctx, log_alpha, u, *sticks)

    @staticmethod
    def _forward(ctx, log_alpha, u, *sticks):
        logs = torch.stack([s.detach() for s in sticks]).cpu().numpy().astype(np.float64)
        alpha = float(np.exp(float(log_alpha.detach())))
        a, b = np.exp(logs[:, 0]), np.exp(logs[:, 1])
        r = np.log1p(-u.detach().cpu().numpy().astype(np.float64)) / b  # (N, K)
        inner = -np.expm1(r)
        inner_kept = inner >= 1e-30
        log_inner = np.log(np.maximum(inner, 1e-30))
        v0 = np.exp(log_inner / a)
        v_kept = (v0 >= _V_CLAMP) & (v0 <= 1.0 - _V_CLAMP)
        v = np.clip(v0, _V_CLAMP, 1.0 - _V_CLAMP)
        rest = 1.0 - v
        before = np.ones_like(v)
        before[:, 1:] = np.cumprod(rest[:, :-1], axis=1)
        pieces = v * before
        eta = pieces.mean(axis=0)
        mean = v.mean(axis=0)
        bar_kept = (mean >= _PLUGIN_CLAMP) & (mean <= 1.0 - _PLUGIN_CLAMP)
        v_bar = np.clip(mean, _PLUGIN_CLAMP, 1.0 - _PLUGIN_CLAMP)
        v_bar_a = v_bar**a
        log_rest_a = np.log1p(-v_bar_a)
        log_v_bar = np.log(v_bar)
        log_rest = np.log1p(-v_bar)
        kl = np.sum(np.log(a) + np.log(b) + (a - 1.0) * log_v_bar + (b - 1.0) * log_rest_a)
        kl -= np.sum(np.log(alpha) + (alpha - 1.0) * log_rest)
        ctx.numpy = (a, b, alpha, r, inner, inner_kept, log_inner, v0, v_kept, rest, before, pieces, bar_kept, v_bar)
        ctx.numpy_kl = (v_bar_a, log_rest_a, log_v_bar, log_rest)
        ctx.like = log_alpha
        ctx.n_sticks = len(sticks)
        return (
            torch.as_tensor(eta, dtype=log_alpha.dtype, device=log_alpha.device),
            torch.as_tensor(kl, dtype=log_alpha.dtype, device=log_alpha.device),
        )

    @staticmethod
    def backward(ctx, grad_eta, grad_kl):  # type: ignore[override]
        with np.errstate(all="ignore"):
            return _PluginTerms._backward(ctx, grad_eta, grad_kl)

    @staticmethod
    def _backward(ctx, grad_eta, grad_kl):
        a, b, alpha, r, inner, inner_kept, log_inner, v0, v_kept, rest, before, pieces, bar_kept, v_bar = ctx.numpy
        v_bar_a, log_rest_a, log_v_bar, log_rest = ctx.numpy_kl
        n = r.shape[0]
        g_eta = grad_eta.detach().cpu().numpy().astype(np.float64)
        g_kl = float(grad_kl)
        # eta_k = mean_n v_nk prod_{j<k} (1 - v_nj), so
        # d/dv_nj = (g_j before_nj - sum_{k>j} g_k pieces_nk / (1 - v_nj)) / N
        weighted = g_eta * pieces
        later = np.cumsum(weighted[:, ::-1], axis=1)[:, ::-1] - weighted
        grad_v = (g_eta * before - later / rest) / n
        # KL through v_bar = clamp(mean_n v_n)
        d_v_bar = (a - 1.0) / v_bar - (b - 1.0) * a * v_bar_a / v_bar / (1.0 - v_bar_a) + (alpha - 1.0) / (1.0 - v_bar)
        grad_v = (grad_v + g_kl * np.where(bar_kept, d_v_bar, 0.0) / n) * v_kept
        # v0 = inner^(1/a), inner = -expm1(log1p(-u) / b): d v0 / d log a = -v0 log(inner) / a,
        # d v0 / d log b = v0 / a * (exp(r) r) / inner (zero where inner was clamped)
        d_log_a = -(grad_v * v0 * log_inner).sum(axis=0) / a
        ratio = np.divide(np.exp(r) * r, inner, out=np.zeros_like(r), where=inner_kept)
        d_log_b = (grad_v * v0 * ratio).sum(axis=0) / a
        d_log_a += g_kl * (1.0 + a * log_v_bar - (b - 1.0) * a * v_bar_a * log_v_bar / (1.0 - v_bar_a))
        d_log_b += g_kl * (1.0 + b * log_rest_a)
        d_log_alpha = -g_kl * (len(a) + alpha * log_rest.sum())
        like = ctx.like
        grads = np.stack([d_log_a, d_log_b], axis=1)
        stick_grads = [torch.as_tensor(g, dtype=like.dtype, device=like.device) for g in grads]
        return torch.as_tensor(d_log_alpha, dtype=like.dtype, device=like.device), None, *stick_grads


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
        if self.estimator == "plugin" and self.log_alpha.device.type == "cpu":
            shape = (self.n_draws, self.n_options)
            u = torch.rand(shape, generator=generator, dtype=self.log_alpha.dtype).clamp(_V_CLAMP, 1.0 - _V_CLAMP)
            eta, kl = _PluginTerms.apply(self.log_alpha, u, *self.sticks)
            return eta.expand(batch_size, -1), kl
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
