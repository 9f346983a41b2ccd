"""Fréchet distance (FD) between Gaussians fitted to two feature sets, and the statistics it needs.

FD = ‖μ_R − μ_G‖² + tr Σ_R + tr Σ_G − 2 tr (Σ_R Σ_G)^{1/2}  (Heusel et al. 2017; FID with Inception features).

The trace of the square root is computed from eigenvalues, never from ``scipy.linalg.sqrtm``: with
Σ_R = L Lᵀ (Cholesky; an eigendecomposition when Σ_R is singular), Σ_R Σ_G is similar to the symmetric
positive semi-definite M = Lᵀ Σ_G L, so tr (Σ_R Σ_G)^{1/2} = Σ √λ_i(M) with λ_i ≥ 0 clipped at 0. That is one
factorisation, two matrix products and one ``eigvalsh`` in float64, it is never NaN or complex, and it is exact
where the ``sqrtm`` path succeeds (agrees with pytorch-fid to ~1e-12).
"""

from __future__ import annotations

import logging
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.linalg
import torch
from scipy.linalg import blas

from dgm_eval.metrics.checks import FeatureError, as_features, resolve_device
from sixlab_shared import atomic_open

logger = logging.getLogger(__name__)


@dataclass
class GaussianStats:
    """Mean and unbiased covariance of a feature set (float64), and how many samples they came from.

    Attributes:
        mean: ``(D,)`` float64 tensor.
        cov: ``(D, D)`` float64 tensor, normalised by ``n - 1`` (like ``np.cov``).
        n: number of samples, or None when unknown (e.g. statistics saved by pytorch-fid).
    """

    mean: torch.Tensor
    cov: torch.Tensor
    n: int | None = None

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    def to(self, device: str | torch.device) -> GaussianStats:
        return GaussianStats(self.mean.to(device), self.cov.to(device), self.n)

    def save(self, path: str | os.PathLike[str], features: np.ndarray | None = None) -> None:
        """Write ``mu``, ``sigma`` (pytorch-fid's keys), ``n`` and optionally ``features`` to an ``.npz`` atomically."""
        arrays: dict[str, Any] = {
            "mu": self.mean.cpu().numpy(),
            "sigma": self.cov.cpu().numpy(),
            "n": np.int64(-1 if self.n is None else self.n),
        }
        if features is not None:
            arrays["features"] = np.asarray(features)
        with atomic_open(path) as handle:
            np.savez(handle, **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> GaussianStats:
        """Read statistics saved by :meth:`save` or by pytorch-fid (``mu``, ``sigma``).

        Raises:
            FeatureError: the file lacks ``mu``/``sigma`` or their shapes disagree.
        """
        path = Path(path)
        if not zipfile.is_zipfile(path):
            raise FeatureError(f"{str(path)!r} is not a valid .npz archive (not a zip file)")
        with np.load(path, allow_pickle=False) as data:
            if "mu" not in data or "sigma" not in data:
                raise FeatureError(
                    f"{str(path)!r} holds no statistics (keys 'mu' and 'sigma'); write it with `dgm-eval stats`"
                )
            mu, sigma = np.asarray(data["mu"], np.float64), np.asarray(data["sigma"], np.float64)
            n = int(data["n"]) if "n" in data else -1
        if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
            raise FeatureError(
                f"{str(path)!r}: mu has shape {mu.shape} and sigma {sigma.shape}; expected (D,) and (D, D)"
            )
        if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
            raise FeatureError(f"{str(path)!r}: statistics hold NaN or inf")
        return cls(torch.from_numpy(mu), torch.from_numpy(sigma), None if n < 0 else n)


class StatsAccumulator:
    """Streaming float64 mean and covariance (Chan et al.'s pairwise merge; no N×D array is kept).

    Example:
        >>> acc = StatsAccumulator()
        >>> for batch in np.split(np.arange(12.0).reshape(6, 2), 3):
        ...     acc.update(batch)
        >>> acc.compute().mean.tolist()
        [5.0, 6.0]
    """

    def __init__(self) -> None:
        self.n = 0
        self.mean: torch.Tensor | None = None
        self.scatter: torch.Tensor | None = None  # Σ (x - mean)(x - mean)ᵀ

    def update(self, batch: Any) -> None:
        """Add a ``(B, D)`` batch of features (numpy or torch; converted to float64)."""
        x = as_features(batch, "batch")
        nb = int(x.shape[0])
        mean_b = x.mean(dim=0)
        xc = x - mean_b
        scatter_b = xc.T @ xc
        if self.mean is None:
            self.n, self.mean, self.scatter = nb, mean_b, scatter_b
            return
        if x.shape[1] != self.mean.shape[0]:
            raise FeatureError(f"batch has D={x.shape[1]} but earlier batches had D={self.mean.shape[0]}")
        n = self.n + nb
        delta = (mean_b - self.mean.to(x.device)).to(x.device)
        self.mean = self.mean.to(x.device) + delta * (nb / n)
        self.scatter = self.scatter.to(x.device) + scatter_b + torch.outer(delta, delta) * (self.n * nb / n)
        self.n = n

    def compute(self) -> GaussianStats:
        """The statistics so far.

        Raises:
            FeatureError: fewer than 2 samples were added.
        """
        if self.mean is None or self.n < 2:
            raise FeatureError(f"statistics need at least 2 samples, got {self.n}")
        return GaussianStats(self.mean.clone(), self.scatter / (self.n - 1), self.n)


def feature_statistics(x: Any, *, device: str | torch.device | None = None) -> GaussianStats:
    """Mean and unbiased covariance of ``(N, D)`` features in float64 (equal to ``np.mean``/``np.cov``)."""
    t = as_features(x, "features", device=device, min_rows=2)
    mean = t.mean(dim=0)
    xc = t - mean
    return GaussianStats(mean, (xc.T @ xc) / (t.shape[0] - 1), int(t.shape[0]))


def as_statistics(x: Any, name: str, *, device: str | torch.device | None = None) -> GaussianStats:
    """Features, a :class:`GaussianStats`, a ``(mu, sigma)`` pair or a path to a stats ``.npz``, as statistics."""
    if isinstance(x, GaussianStats):
        return x.to(resolve_device(x.mean, device))
    if isinstance(x, (str, os.PathLike)):
        return GaussianStats.load(x).to(device or "cpu")
    if isinstance(x, tuple) and len(x) == 2:
        mu = torch.as_tensor(np.asarray(x[0]) if not isinstance(x[0], torch.Tensor) else x[0], dtype=torch.float64)
        sigma = torch.as_tensor(np.asarray(x[1]) if not isinstance(x[1], torch.Tensor) else x[1], dtype=torch.float64)
        dev = resolve_device(x[0], device)
        return GaussianStats(mu.to(dev), sigma.to(dev), None)
    return feature_statistics(as_features(x, name, device=device, min_rows=2))


class _SqrtFactor:
    """A factor F with Σ_R = F Fᵀ, so tr (Σ_R Σ_G)^{1/2} = Σ √λ(Fᵀ Σ_G F); reusable across many Σ_G.

    F is the Cholesky factor; when Σ_R is singular (e.g. N <= D) it is V·√max(λ, 0) from the eigendecomposition.
    On CPU with a triangular F the two products are BLAS ``dtrmm`` calls (half the work of general products),
    and ``eigvalsh`` reads one triangle of the product, so no symmetrisation is needed.
    """

    def __init__(self, cov: torch.Tensor) -> None:
        factor, info = torch.linalg.cholesky_ex(cov)
        self.triangular = int(info) == 0
        if not self.triangular:
            evals, evecs = torch.linalg.eigh(cov)
            factor = evecs * evals.clamp(min=0).sqrt().unsqueeze(0)
        self.factor = factor
        self._factor_f: np.ndarray | None = None
        if self.triangular and factor.device.type == "cpu":
            self._factor_f = np.asfortranarray(factor.numpy())

    def trace_sqrt(self, cov_other: torch.Tensor) -> torch.Tensor:
        if self._factor_f is not None and cov_other.device.type == "cpu":
            lower = self._factor_f
            other_f = np.asfortranarray(cov_other.numpy())
            w = blas.dtrmm(1.0, lower, other_f, side=1, lower=1)  # Σ_G L
            m = blas.dtrmm(1.0, lower, w, side=0, lower=1, trans_a=1, overwrite_b=1)  # Lᵀ Σ_G L
            evals = torch.from_numpy(
                scipy.linalg.eigh(m, eigvals_only=True, lower=True, check_finite=False, overwrite_a=True, driver="evd")
            )
        else:
            m = self.factor.T @ (cov_other @ self.factor)
            evals = torch.linalg.eigvalsh(m)
        return evals.clamp(min=0).sqrt().sum()


def _warn_count(n: int | None, dim: int, name: str) -> None:
    if n is not None and n <= dim:
        logger.warning(
            "%s has N=%d <= D=%d samples: its covariance is singular and FD is biased upwards; use more samples",
            name,
            n,
            dim,
        )


def _warn_small(stats: GaussianStats, name: str) -> None:
    _warn_count(stats.n, stats.dim, name)


def _check_dims(a: GaussianStats, b: GaussianStats) -> None:
    if a.dim != b.dim:
        raise FeatureError(f"feature dimensions differ (a has D={a.dim}, b has D={b.dim}); use the same encoder")


def fd_from_statistics(a: GaussianStats, b: GaussianStats, *, factor: _SqrtFactor | None = None) -> float:
    """FD between two :class:`GaussianStats` (float64, eigenvalue form; see the module docstring)."""
    _check_dims(a, b)
    b = b.to(a.mean.device)
    factor = factor or _SqrtFactor(a.cov)
    diff = a.mean - b.mean
    value = diff.dot(diff) + torch.trace(a.cov) + torch.trace(b.cov) - 2.0 * factor.trace_sqrt(b.cov)
    return float(value)


def _is_stats_like(x: Any) -> bool:
    return isinstance(x, (GaussianStats, str, os.PathLike)) or (isinstance(x, tuple) and len(x) == 2)


def _gram_fd(a: Any, b: Any, device: str | torch.device | None) -> float | None:
    """FD through :class:`~dgm_eval.metrics.fd_gram.GramFD` when a feature set has N <= D, else ``None``.

    The smaller such set plays the generated side (FD is symmetric); the other is used as rows when it also has
    N <= D, else as its dense statistics.
    """
    from dgm_eval.metrics.fd_gram import GramFD

    if _is_stats_like(a) and _is_stats_like(b):
        return None
    ra = None if _is_stats_like(a) else as_features(a, "a", device=device, min_rows=2)
    rb = None if _is_stats_like(b) else as_features(b, "b", device=device or (None if ra is None else ra.device))
    if rb is not None and rb.shape[0] < 2:
        raise FeatureError(f"b: needs at least 2 samples, got {rb.shape[0]}")
    dim = int((ra if ra is not None else rb).shape[1])
    small = [(int(r.shape[0]), side) for side, r in (("b", rb), ("a", ra)) if r is not None and r.shape[0] <= dim]
    if not small:
        return None
    side = min(small)[1]
    g, other_rows, other_raw, other_name = (rb, ra, a, "a") if side == "b" else (ra, rb, b, "b")
    if other_rows is not None and other_rows.shape[1] != g.shape[1]:
        raise FeatureError(
            f"feature dimensions differ (a has D={a.shape[1]}, b has D={b.shape[1]}); use the same encoder"
        )
    for name, rows in (("a", ra), ("b", rb)):
        if rows is not None:
            _warn_count(int(rows.shape[0]), int(rows.shape[1]), name)
    if other_rows is not None and other_rows.shape[0] <= dim:
        return GramFD(other_rows, g).fd()
    if other_rows is not None:
        stats = feature_statistics(other_rows)
    else:
        stats = as_statistics(other_raw, other_name, device=g.device)
        _warn_small(stats, other_name)
    if stats.dim != g.shape[1]:
        raise FeatureError(f"feature dimensions differ ({other_name} has D={stats.dim}, the other D={g.shape[1]})")
    return GramFD((stats.mean, stats.cov.to(g.device)), g).fd()


def frechet_distance(a: Any, b: Any, *, device: str | torch.device | None = None) -> float:
    """Fréchet distance between two feature sets (or their saved statistics).

    Args:
        a: ``(N, D)`` features (numpy or torch), a :class:`GaussianStats`, a ``(mu, sigma)`` pair, or a path to
            a stats ``.npz`` (``dgm-eval stats`` or pytorch-fid ``--save-stats``).
        b: the same for the other set.
        device: where to compute; default: where ``a`` is (CPU for numpy).

    Returns:
        FD as a float (never NaN or complex). Logs a warning when a set has N <= D; then FD is computed in the
        N×N Gram form of :mod:`dgm_eval.metrics.fd_gram` (O(N²D + N³) instead of O(D³); same value).

    Raises:
        FeatureError: bad shapes, NaN/inf, fewer than 2 samples, or different dimensions.

    Example:
        >>> x = np.random.default_rng(0).normal(size=(500, 8))
        >>> round(frechet_distance(x, x), 10)
        0.0
    """
    value = _gram_fd(a, b, device)
    if value is not None:
        return value
    sa = as_statistics(a, "a", device=device)
    sb = as_statistics(b, "b", device=sa.mean.device)
    _warn_small(sa, "a")
    _warn_small(sb, "b")
    return fd_from_statistics(sa, sb)


def frechet_distance_eff(a: Any, b: Any, *, device: str | torch.device | None = None) -> float:
    """FD with tr√ computed as Σ Re √λ(Σ_R Σ_G) from the non-symmetric product (torch-fidelity's form, ``fd_eff``).

    Same arguments and result as :func:`frechet_distance` up to round-off; kept for comparison with papers that
    used it. When a feature set has N <= D the nonzero eigenvalues of Σ_R Σ_G are those of the small symmetric
    Gram product of :mod:`dgm_eval.metrics.fd_gram` (real and >= 0, so Re √λ = √λ): that form is used, and the
    value is then :func:`frechet_distance`'s (the dense non-symmetric ``eigvals`` would add √ of round-off from
    the D − N zero eigenvalues).
    """
    value = _gram_fd(a, b, device)
    if value is not None:
        return value
    sa = as_statistics(a, "a", device=device)
    sb = as_statistics(b, "b", device=sa.mean.device)
    _check_dims(sa, sb)
    evals = torch.linalg.eigvals(sa.cov @ sb.cov)
    trace_sqrt = torch.sqrt(evals).real.sum()
    diff = sa.mean - sb.mean
    return float(diff.dot(diff) + torch.trace(sa.cov) + torch.trace(sb.cov) - 2.0 * trace_sqrt)
