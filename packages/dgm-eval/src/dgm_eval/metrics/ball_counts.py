"""Which samples fall inside which k-NN balls (the counts behind precision, recall, density and coverage).

One blocked pass over real × fake distances in low precision (:mod:`dgm_eval.metrics.distance_blocks`); every
comparison ``d < r`` whose low-precision value lies within the block's proven error margin of the threshold is
recomputed exactly in float64 from the two rows, so the counts are those of a float64 computation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dgm_eval.metrics.distance_blocks import (
    Blocked,
    approx_block,
    exact_float32_matmul,
    exact_sq_dists,
    threshold_margin,
)
from dgm_eval.metrics.neighbours import DEFAULT_BLOCK_SIZE, prepare


@dataclass
class BallCounts:
    """Per-sample counts of the prdc family (Naeem et al. 2020), all with strict ``<`` on distances.

    Attributes:
        fake_in_real_balls: ``(N_fake,)`` int64, number of real balls ``d(r, g) < radius(r)`` containing each g.
        real_has_fake: ``(N_real,)`` bool, some g lies inside the real's ball (coverage).
        real_in_fake_balls: ``(N_real,)`` bool, the real lies inside some fake ball (recall).
    """

    fake_in_real_balls: torch.Tensor
    real_has_fake: torch.Tensor
    real_in_fake_balls: torch.Tensor


def ball_counts(
    real: torch.Tensor,
    fake: torch.Tensor,
    real_radii: torch.Tensor,
    fake_radii: torch.Tensor,
    *,
    block_size: int = DEFAULT_BLOCK_SIZE,
    products: str = "auto",
) -> BallCounts:
    """Count, in one blocked pass over real×fake distances, which samples fall inside which k-NN balls.

    Args:
        real: ``(N, D)`` float64. fake: ``(M, D)`` float64.
        real_radii: ``(N,)`` float64 ball radii (distances, not squared). fake_radii: ``(M,)`` float64.
        block_size: rows per distance block.
        products: product dtype (results do not depend on it).

    Returns:
        :class:`BallCounts`, equal to a float64 computation with strict ``<``.
    """
    a, b = prepare(real, real, fake, products=products)
    return ball_counts_blocked(a, b, real_radii, fake_radii, block_size=block_size)


def ball_counts_blocked(
    a: Blocked, b: Blocked, real_radii: torch.Tensor, fake_radii: torch.Tensor, *, block_size: int = DEFAULT_BLOCK_SIZE
) -> BallCounts:
    """:func:`ball_counts` on prepared sets (reals ``a``, fakes ``b``).

    Per block: the few pairs below a real's radius plus the margin are listed (one comparison and ``nonzero``);
    of those, the pairs within the margin are recomputed in float64, the rest are certain (precision, density,
    coverage). Recall needs only each real's smallest ``d̃² − radius(g)²`` in the block (rows near the boundary
    are recomputed).
    """
    n, m = len(a), len(b)
    device = a.x64.device
    r2_real, r2_fake = real_radii.square(), fake_radii.square()
    counts = torch.zeros(m, dtype=torch.int64, device=device)
    has_fake = torch.zeros(n, dtype=torch.bool, device=device)
    in_fake = torch.zeros(n, dtype=torch.bool, device=device)
    unit = b.unit_out
    with exact_float32_matmul():
        for i0 in range(0, n, block_size):
            i1 = min(i0 + block_size, n)
            sq_a = a.sq64[i0:i1]
            for j0 in range(0, m, block_size):
                j1 = min(j0 + block_size, m)
                d2, bound = approx_block(a, i0, i1, b, j0, j1)
                sq_b = b.sq64[j0:j1]
                s_lo, s_hi = float(sq_a.min() + sq_b.min()), float(sq_a.max() + sq_b.max())
                # Balls around reals (rows): precision and density count per fake, coverage per real.
                thr = r2_real[i0:i1]
                margin = threshold_margin(bound, unit, s_lo, s_hi, float(thr.min()), float(thr.max()))
                low, high = (thr - margin).to(torch.float32), (thr + margin).to(torch.float32)
                # Only a few fakes per real lie below the upper threshold: work on that sparse list.
                rr, cc = torch.nonzero(d2 <= high.unsqueeze(1), as_tuple=True)
                sure = d2[rr, cc] < low[rr]
                counts.index_add_(0, cc[sure] + j0, torch.ones_like(cc[sure]))
                has_fake[rr[sure] + i0] = True
                rr, cc = rr[~sure] + i0, cc[~sure] + j0  # within the margin: decided in float64
                if rr.numel():
                    inside = exact_sq_dists(a.x64, b.x64, rr, cc).sqrt() < real_radii[rr]
                    counts.index_add_(0, cc[inside], torch.ones_like(cc[inside]))
                    has_fake[rr[inside]] = True
                # Balls around fakes (columns): recall per real, from each row's smallest d̃² − r².
                thr = r2_fake[j0:j1]
                margin = threshold_margin(bound, unit, s_lo, s_hi, float(thr.min()), float(thr.max()))
                rel = d2.sub_(thr.to(torch.float32).unsqueeze(0))  # d2 is not needed any more
                smallest = rel.amin(dim=1)
                in_fake[i0:i1] |= smallest < -margin
                unsure = torch.nonzero(~in_fake[i0:i1] & (smallest <= margin)).squeeze(1)
                if unsure.numel():
                    rr, cc = torch.nonzero(rel[unsure] <= margin, as_tuple=True)
                    rr, cc = unsure[rr] + i0, cc + j0
                    inside = exact_sq_dists(a.x64, b.x64, rr, cc).sqrt() < fake_radii[cc]
                    in_fake[rr[inside]] = True
                del d2, rel
    return BallCounts(fake_in_real_balls=counts, real_has_fake=has_fake, real_in_fake_balls=in_fake)
