"""FD when a set has N ≤ D samples: through N×N Gram matrices, O(N²D + N³) instead of O(D³).

With A the centred rows of a set scaled by 1/√(N−1), Σ = AᵀA has rank < N. The nonzero eigenvalues of Σ_R Σ_G
are those of a small symmetric positive semi-definite matrix:

- both sets as rows: tr (Σ_R Σ_G)^{1/2} = ‖A_R A_Gᵀ‖_* (the nuclear norm: the sum of singular values of the
  N_R × N_G matrix A_R A_Gᵀ, since (A_R A_Gᵀ)(A_R A_Gᵀ)ᵀ = A_R Σ_G A_Rᵀ shares Σ_R Σ_G's nonzero eigenvalues);
- the reference as a dense Σ_R (saved statistics, or N_R > D): tr (Σ_R Σ_G)^{1/2} = Σ √λ(A_G Σ_R A_Gᵀ).

:class:`GramFD` also serves FD against many subsets of the generated set (FD∞) without touching D again: the
generated rows G are shifted by μ_R once and K = G Gᵀ, plus A_R Gᵀ (or G Σ_R Gᵀ), are computed once; a subset's
mean, trace and product then come from these matrices' sub-blocks by double centring.
"""

from __future__ import annotations

import torch

from dgm_eval.metrics.checks import FeatureError


class GramFD:
    """FD of one reference against a generated set ``g`` or any subset of its rows, in Gram form.

    Args:
        ref: ``(N_R, D)`` float64 reference rows (best when ``N_R <= D``), or ``(mean, cov)`` of the reference.
        g: ``(N_G, D)`` float64 generated rows (``N_G <= D`` is where this form pays off).

    Example:
        >>> x = torch.randn(40, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        >>> abs(GramFD(x, x).fd()) < 1e-9
        True
    """

    def __init__(self, ref: torch.Tensor | tuple[torch.Tensor, torch.Tensor], g: torch.Tensor) -> None:
        if isinstance(ref, tuple):
            self.mean_r, cov_r = ref
            self.rows_r = None
            self.trace_r = torch.trace(cov_r)
        else:
            if ref.shape[0] < 2:
                raise FeatureError(f"FD needs at least 2 reference samples, got {ref.shape[0]}")
            self.mean_r = ref.mean(dim=0)
            a = ref - self.mean_r
            self.rows_r = a
            self.trace_r = (a * a).sum() / (ref.shape[0] - 1)
        shifted = g - self.mean_r  # the generated rows relative to μ_R: ‖μ_R − μ_G‖² = ‖mean(shifted)‖²
        self.n_g = int(g.shape[0])
        self.gram = shifted @ shifted.T  # N_G × N_G
        if self.rows_r is not None:
            self.cross = self.rows_r @ shifted.T  # N_R × N_G: A_R Gᵀ (A_R's rows sum to 0, so the shift is free)
            self.n_r = int(self.rows_r.shape[0])
        else:
            self.cross = shifted @ (cov_r @ shifted.T)  # N_G × N_G: G Σ_R Gᵀ
            self.n_r = None

    def fd(self, idx: torch.Tensor | None = None) -> float:
        """FD of the reference against the generated rows ``idx`` (all rows when ``None``; at least 2)."""
        if idx is None:
            k, pc = self.gram, self.cross
        else:
            k = self.gram[idx][:, idx]
            pc = self.cross[:, idx] if self.n_r is not None else self.cross[idx][:, idx]
        n = int(k.shape[0])
        if n < 2:
            raise FeatureError(f"FD needs at least 2 generated samples, got {n}")
        row_means = k.mean(dim=1)
        total_mean = row_means.mean()
        mean_sq = total_mean  # ‖mean of the shifted rows‖² = 1ᵀK1 / n²
        trace_g = (torch.diagonal(k).sum() - n * total_mean) / (n - 1)
        if self.n_r is not None:
            centred = pc - pc.mean(dim=1, keepdim=True)  # A_R Gᵀ C_n
            trace_sqrt = torch.linalg.svdvals(centred).sum() / ((self.n_r - 1) * (n - 1)) ** 0.5
        else:
            rm = pc.mean(dim=1, keepdim=True)
            centred = pc - rm - rm.T + rm.mean()  # C_n G Σ_R Gᵀ C_n
            centred = (centred + centred.T) / 2
            evals = torch.linalg.eigvalsh(centred) / (n - 1)
            # eigenvalues that are zero in exact arithmetic come out as ±n·eps·λ_max; their square roots would add
            # ~√eps each, so those below that level are dropped (as a numerical rank would)
            tol = evals.abs().max() * n * torch.finfo(evals.dtype).eps
            trace_sqrt = torch.where(evals > tol, evals, torch.zeros_like(evals)).sqrt().sum()
        return float(mean_sq + self.trace_r + trace_g - 2.0 * trace_sqrt)


def gram_pays_off(n_ref: int | None, n_gen: int, dim: int) -> bool:
    """Whether the Gram form is cheaper: the generated set has ``N_G <= D`` (the reference may be anything)."""
    return n_gen <= dim
