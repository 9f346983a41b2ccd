"""The empirical-Bayes reading of a deep ensemble: a point-mass prior over member weights.

Notation (reference §1; code name → symbol):

==================  ==========================================================
``atoms``           θ_1..θ_M, the members' flattened parameters, ``(M, d)``
``log_weights``     log w_m, the prior's mixture weights (normalised)
``loglik``          ℓ_m = log p(D | θ_m), the training log-likelihood, ``(M,)``
``log_marginal``    log p_π(D) = logsumexp_m(log w_m + ℓ_m)
``eb_gap``          max_m ℓ_m - log p_π(D) ≥ 0 (0 iff the support is in argmax)
==================  ==========================================================

Claim A: p_π(D) ≤ L* = sup_θ p(D|θ), with equality iff π puts all its mass on maximisers. Claim B: if every atom
is a maximiser, the likelihood is constant on the support so the posterior equals the prior, and the Bayesian
model average (BMA) under π is the weighted average of the members' predictives: the ensemble. The object below
computes each quantity exactly so a real run can be measured against these identities.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import torch

from eb_ensembles.checks import InvalidInputError, check_ndim

logger = logging.getLogger(__name__)

__all__ = ["EMResult", "PointMassPrior", "npmle_em"]


def _normalise(log_weights: torch.Tensor) -> torch.Tensor:
    return log_weights - torch.logsumexp(log_weights, 0)


@dataclass
class PointMassPrior:
    """A mixture of point masses ``π = Σ_m w_m δ_{θ_m}``.

    Args:
        log_weights: ``(M,)`` log mixture weights (normalised on construction; ``-inf`` = no mass).
        atoms: optional ``(M, d)`` flattened parameters of the atoms (needed only for inspection).

    Raises:
        InvalidInputError: ``M < 1``, non-1-D weights, NaN weights, all weights zero, or atoms of another length.

    Example:
        >>> prior = PointMassPrior.uniform(4)
        >>> prior.ess()
        4.0
        >>> float(prior.log_marginal_likelihood(torch.zeros(4, dtype=torch.float64)))
        0.0
    """

    log_weights: torch.Tensor
    atoms: torch.Tensor | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        check_ndim("log_weights", self.log_weights, 1, "(M,)")
        if self.log_weights.shape[0] < 1:
            raise InvalidInputError("a point-mass prior needs M >= 1 atoms, got M = 0")
        if bool(torch.isnan(self.log_weights).any()) or not bool(torch.isfinite(self.log_weights).any()):
            raise InvalidInputError("`log_weights` must be finite for at least one atom and never NaN")
        self.log_weights = _normalise(self.log_weights.to(torch.float64))
        if self.atoms is not None and self.atoms.shape[0] != self.log_weights.shape[0]:
            raise InvalidInputError(
                f"`atoms` has {self.atoms.shape[0]} rows but `log_weights` has {self.log_weights.shape[0]} entries"
            )

    @classmethod
    def uniform(cls, num_atoms: int, atoms: torch.Tensor | None = None) -> PointMassPrior:
        """The ensemble's prior ``q_M = (1/M) Σ_m δ_{θ_m}``."""
        if num_atoms < 1:
            raise InvalidInputError(f"an ensemble needs M >= 1 members, got M = {num_atoms}")
        return cls(torch.full((num_atoms,), -math.log(num_atoms), dtype=torch.float64), atoms)

    @property
    def num_atoms(self) -> int:
        """M."""
        return int(self.log_weights.shape[0])

    @property
    def weights(self) -> torch.Tensor:
        """``(M,)`` float64 mixture weights."""
        return self.log_weights.exp()

    def _loglik(self, loglik: torch.Tensor) -> torch.Tensor:
        check_ndim("loglik", loglik, 1, "(M,)")
        if loglik.shape[0] != self.num_atoms:
            raise InvalidInputError(f"`loglik` has {loglik.shape[0]} entries but the prior has {self.num_atoms} atoms")
        if bool(torch.isnan(loglik).any()):
            raise InvalidInputError("`loglik` holds NaN; a failed member must be dropped before building the prior")
        return loglik.to(torch.float64).to(self.log_weights.device)

    def log_marginal_likelihood(self, loglik: torch.Tensor) -> torch.Tensor:
        """``log p_π(D) = logsumexp_m(log w_m + ℓ_m)`` (float64 scalar)."""
        return torch.logsumexp(self.log_weights + self._loglik(loglik), 0)

    def posterior(self, loglik: torch.Tensor | None = None, *, assume_maximizers: bool = False) -> PointMassPrior:
        """The posterior ``π(·|D)``: weights ``∝ w_m exp(ℓ_m)`` on the same atoms.

        Args:
            loglik: ``(M,)`` training log-likelihoods ℓ_m.
            assume_maximizers: the idealisation of the paper: every atom attains L*, the likelihood is constant on
                the support, so the posterior is the prior (``loglik`` may then be omitted). If ``loglik`` is given
                as well and its spread exceeds 1e-6 nats, a warning is logged with the spread.

        Raises:
            InvalidInputError: ``loglik`` is missing while ``assume_maximizers`` is False, or has the wrong length.
        """
        if assume_maximizers:
            if loglik is not None:
                spread = float(self._loglik(loglik).max() - self._loglik(loglik).min())
                if spread > 1e-6:
                    logger.warning("assume_maximizers: member log-likelihoods differ by %.3g nats", spread)
            return PointMassPrior(self.log_weights.clone(), self.atoms)
        if loglik is None:
            raise InvalidInputError("posterior() needs `loglik` unless assume_maximizers=True")
        return PointMassPrior(self.log_weights + self._loglik(loglik), self.atoms)

    def predictive(self, member_probs: torch.Tensor) -> torch.Tensor:
        """The BMA ``Σ_m w_m p(y|x, θ_m)`` of ``(M, N, K)`` member probabilities (probability averaging)."""
        check_ndim("member_probs", member_probs, 3, "(M, N, K)")
        if member_probs.shape[0] != self.num_atoms:
            raise InvalidInputError(
                f"`member_probs` has {member_probs.shape[0]} members but the prior has {self.num_atoms} atoms"
            )
        return torch.einsum("m,mnk->nk", self.weights.to(member_probs), member_probs)

    def log_predictive(self, member_log_probs: torch.Tensor) -> torch.Tensor:
        """``log Σ_m w_m p_m`` computed with logsumexp from ``(M, N, K)`` log-probabilities."""
        check_ndim("member_log_probs", member_log_probs, 3, "(M, N, K)")
        lw = self.log_weights.to(member_log_probs)
        return torch.logsumexp(member_log_probs + lw[:, None, None], 0)

    def eb_gap(self, loglik: torch.Tensor, log_sup: float | None = None) -> float:
        """``log L* - log p_π(D) ≥ 0``; ``L*`` defaults to ``max_m ℓ_m`` (pass ``log_sup`` when it is known)."""
        ll = self._loglik(loglik)
        top = float(ll.max()) if log_sup is None else float(log_sup)
        return top - float(self.log_marginal_likelihood(ll))

    def ess(self) -> float:
        """Effective sample size ``1 / Σ_m w_m²`` (M for uniform weights, 1 for a single atom)."""
        return float(1.0 / (self.weights**2).sum())

    def entropy(self) -> float:
        """Entropy of the mixture weights in nats."""
        w = self.weights
        return float(-torch.special.xlogy(w, w).sum())

    def kl(self, other: PointMassPrior) -> float:
        """``KL(self ‖ other)`` between two point-mass mixtures on the same atoms (``inf`` if support escapes)."""
        if other.num_atoms != self.num_atoms:
            raise InvalidInputError(f"KL needs the same atoms: {self.num_atoms} vs {other.num_atoms}")
        w = self.weights
        diff = torch.where(w > 0, self.log_weights - other.log_weights, torch.zeros_like(w))
        return float((w * diff).sum())

    def elbo(self, q: PointMassPrior, loglik: torch.Tensor) -> float:
        """``ELBO(q, π) = E_q[ℓ] - KL(q ‖ π) ≤ log p_π(D)``, with equality iff ``q`` is the posterior."""
        ll = self._loglik(loglik)
        expected = float((q.weights * torch.where(q.weights > 0, ll, torch.zeros_like(ll))).sum())
        return expected - q.kl(self)


@dataclass
class EMResult:
    """Output of :func:`npmle_em`.

    Attributes:
        log_weights: ``(J,)`` final log-weights on the grid.
        log_marginal: per-iteration ``log p_π(D)``, starting with the initial prior (length iterations + 1).
        iterations: number of EM updates run.
        converged: whether the stopping rule fired before ``max_iterations``.
    """

    log_weights: torch.Tensor
    log_marginal: list[float]
    iterations: int
    converged: bool

    @property
    def prior(self) -> PointMassPrior:
        """The fitted prior as a :class:`PointMassPrior` on the grid."""
        return PointMassPrior(self.log_weights)


def npmle_em(
    grid_loglik: torch.Tensor,
    *,
    log_init: torch.Tensor | None = None,
    shared_parameter: bool = True,
    max_iterations: int = 1000,
    tol: float = 1e-10,
) -> EMResult:
    """EM for the nonparametric maximum-likelihood (NPMLE) prior on a finite grid of atoms.

    Two settings:

    * ``shared_parameter=True`` (the paper's: one θ explains all data). ``ℓ_j = Σ_i log p(y_i|θ_j)``; the EM update
      is one Bayes step, ``w_j ← w_j e^{ℓ_j} / Σ_k w_k e^{ℓ_k}``, so after t steps ``w ∝ w_0 e^{t ℓ}``: the mass
      moves to the argmax atoms and ``log p_π(D)`` rises to ``max_j ℓ_j``. Stops when the posterior equals the
      prior to ``tol`` in total variation (the fixed point: posterior = prior).
    * ``shared_parameter=False`` (Kiefer-Wolfowitz: each observation draws its own θ_i ~ π).
      ``w_j ← mean_i r_ij`` with responsibilities ``r_ij ∝ w_j p(y_i|θ_j)``; stops when
      ``log p_π(D)`` rises by less than ``tol``.

    Both updates never decrease ``log p_π(D)`` (EM's monotonicity).

    Args:
        grid_loglik: ``(n, J)`` per-observation log-likelihoods at J grid atoms, or ``(J,)`` summed ones
            (shared setting only).
        log_init: ``(J,)`` initial log-weights; uniform if ``None``.
        shared_parameter: which setting (above).
        max_iterations: cap on EM updates.
        tol: stopping tolerance (above).

    Raises:
        InvalidInputError: bad shapes, NaN log-likelihoods, ``(J,)`` input with ``shared_parameter=False``.
    """
    if grid_loglik.ndim == 1:
        if not shared_parameter:
            raise InvalidInputError("per-observation EM needs `grid_loglik` of shape (n, J), got a 1-D tensor")
        grid_loglik = grid_loglik[None]
    check_ndim("grid_loglik", grid_loglik, 2, "(n, J)")
    if bool(torch.isnan(grid_loglik).any()):
        raise InvalidInputError("`grid_loglik` holds NaN values")
    ll = grid_loglik.to(torch.float64)
    num = ll.shape[1]
    log_w = (
        torch.full((num,), -math.log(num), dtype=torch.float64, device=ll.device)
        if log_init is None
        else _normalise(log_init.to(torch.float64).to(ll.device))
    )
    if log_w.shape != (num,):
        raise InvalidInputError(f"`log_init` must have shape ({num},), got {tuple(log_w.shape)}")

    if shared_parameter:
        total = ll.sum(0)  # J

        def log_marginal(lw: torch.Tensor) -> float:
            return float(torch.logsumexp(lw + total, 0))

    else:

        def log_marginal(lw: torch.Tensor) -> float:
            return float(torch.logsumexp(lw[None] + ll, 1).sum())

    history = [log_marginal(log_w)]
    converged = False
    iterations = 0
    for iterations in range(1, max_iterations + 1):  # noqa: B007 (iterations is reported)
        if shared_parameter:
            new = _normalise(log_w + total)
            change = 0.5 * float((new.exp() - log_w.exp()).abs().sum())
        else:
            resp = ll + log_w[None]
            resp = resp - torch.logsumexp(resp, 1, keepdim=True)  # n x J responsibilities
            new = torch.logsumexp(resp, 0) - math.log(ll.shape[0])
            change = None
        log_w = new
        history.append(log_marginal(log_w))
        if change is not None and change < tol:
            converged = True
            break
        if change is None and history[-1] - history[-2] < tol:
            converged = True
            break
    return EMResult(log_w, history, iterations, converged)
