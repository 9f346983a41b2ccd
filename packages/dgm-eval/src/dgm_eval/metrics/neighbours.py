"""Exact nearest-neighbour distances and ball counts, computed in blocks (memory O(N·k + block²), never N²).

Written by hand because no maintained library does this: scikit-learn and the ``prdc`` package build full N×N
distance matrices. The distance products are most of the work, so they run as float32 matrix products on
data centred on the reference mean (like the ``prdc`` package's float32 path), and every decision that the
float32 rounding could flip is re-decided in float64:

* a float32 squared distance differs from the float64 one by at most ``margin = (D + 16)·2⁻²³·(‖x‖² + ‖y‖²)``
  (rounding of the inputs, of the norms, and of a length-D dot product);
* a comparison ``d < r`` whose float32 value lies within that margin of the threshold is recomputed exactly in
  float64 from the two rows (``Σ(x − y)²``); all others are already certain;
* a k-th-nearest-neighbour search keeps a few extra float32 candidates per row, recomputes in float64 those
  whose rank the rounding could change, and checks that no row outside the candidates could be closer (else
  that row is recomputed in float64 in full).

So the counts are those of a float64 computation, whatever the block size, at the cost of float32 products.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

logger = logging.getLogger(__name__)

#: Unit roundoff of float32.
_EPS32 = 2.0**-23
#: Extra float32 candidates kept per row in the k-NN search before the exact float64 re-ranking.
_EXTRA_CANDIDATES = 8
#: Rows per float64 chunk when recomputing pairs exactly.
_PAIR_CHUNK = 1024

DEFAULT_BLOCK_SIZE = 2048


@dataclass
class Blocked:
    """One set prepared for blocked distance products: float64 rows, float32 centred rows, squared norms."""

    x64: torch.Tensor  # (N, D) float64
    x32: torch.Tensor  # (N, D) float32, centred
    sq64: torch.Tensor  # (N,) float64 squared norms of x32
    sq32: torch.Tensor  # (N,) float32

    @classmethod
    def build(cls, x64: torch.Tensor, center: torch.Tensor) -> Blocked:
        # Centred in float64 and rounded to float32 in row chunks (no second full float64 copy).
        x32 = torch.empty(x64.shape, dtype=torch.float32, device=x64.device)
        sq64 = torch.empty(x64.shape[0], dtype=torch.float64, device=x64.device)
        for s in range(0, x64.shape[0], _PAIR_CHUNK):
            x32[s : s + _PAIR_CHUNK] = x64[s : s + _PAIR_CHUNK] - center
            sq64[s : s + _PAIR_CHUNK] = x32[s : s + _PAIR_CHUNK].to(torch.float64).square().sum(dim=1)
        return cls(x64=x64, x32=x32, sq64=sq64, sq32=sq64.to(torch.float32))

    def __len__(self) -> int:
        return int(self.x64.shape[0])


def _approx_block(a: Blocked, i0: int, i1: int, b: Blocked, j0: int, j1: int) -> tuple[torch.Tensor, float]:
    """Float32 squared distances of rows ``a[i0:i1]`` to ``b[j0:j1]`` and the bound on their error."""
    d2 = torch.addmm(b.sq32[j0:j1].unsqueeze(0), a.x32[i0:i1], b.x32[j0:j1].T, beta=1.0, alpha=-2.0)
    d2.add_(a.sq32[i0:i1].unsqueeze(1))
    dim = a.x32.shape[1]
    margin = (dim + 16) * _EPS32 * float(a.sq64[i0:i1].max() + b.sq64[j0:j1].max())
    return d2, margin


def exact_sq_dists(x: torch.Tensor, y: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Float64 squared distances ``Σ(x[rows] − y[cols])²`` of paired rows, chunked.

    Args:
        x: ``(N, D)`` float64. y: ``(M, D)`` float64. rows, cols: ``(P,)`` int64 indices.

    Returns:
        ``(P,)`` float64.
    """
    out = torch.empty(rows.shape[0], dtype=torch.float64, device=x.device)
    for s in range(0, rows.shape[0], _PAIR_CHUNK):
        diff = x[rows[s : s + _PAIR_CHUNK]] - y[cols[s : s + _PAIR_CHUNK]]
        out[s : s + _PAIR_CHUNK] = diff.square_().sum(dim=1)
    return out


def _exact_kth_full(x: torch.Tensor, y: torch.Tensor, rows: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact k-th smallest squared distance (and index) of ``x[rows]`` to all of ``y``, row by row (fallback)."""
    vals = torch.empty(rows.shape[0], dtype=torch.float64, device=x.device)
    idxs = torch.empty(rows.shape[0], dtype=torch.int64, device=x.device)
    for pos, row in enumerate(rows.tolist()):
        d2 = torch.cat(
            [(y[j : j + _PAIR_CHUNK] - x[row]).square_().sum(dim=1) for j in range(0, y.shape[0], _PAIR_CHUNK)]
        )
        order = torch.argsort(d2, stable=True)  # ties: lower index first
        vals[pos], idxs[pos] = d2[order[k - 1]], order[k - 1]
    return vals, idxs


def _merge_topk(
    best_v: torch.Tensor, best_i: torch.Tensor, new_v: torch.Tensor, new_i: torch.Tensor, kk: int
) -> tuple[torch.Tensor, torch.Tensor]:
    v = torch.cat([best_v, new_v], dim=1)
    i = torch.cat([best_i, new_i], dim=1)
    top_v, pos = torch.topk(v, kk, dim=1, largest=False, sorted=True)
    return top_v, torch.gather(i, 1, pos)


def kth_nearest_sq(
    query: torch.Tensor,
    ref: torch.Tensor | None,
    k: int,
    *,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact (float64) squared distance from each query row to its k-th nearest reference row, and that row.

    With ``ref=None`` the reference is ``query`` itself and each row's own zero distance counts as its first
    neighbour (so ``k = nearest_k + 1`` gives the ``nearest_k``-th nearest *other* row); the symmetric blocks are
    computed once, not twice.

    How exactness is kept with float32 products: per row, the ``k + 8`` smallest float32 values ``a_1 <= ... ``
    are kept with the largest error bound ``m`` seen. The exact k-th value lies in ``[a_k − m, a_k + m]``; any
    candidate with ``a_j < a_k − 2m`` is certainly below it and any with ``a_j > a_k + 2m`` certainly above, so
    only the candidates in the band ``|a_j − a_k| <= 2m`` (usually one or two) are recomputed in float64. A row
    whose last candidate is not clearly above the band (``a_K − a_k <= 2m``: heavy ties, duplicates) is
    recomputed against all reference rows in float64.

    Args:
        query: ``(N, D)`` float64.
        ref: ``(M, D)`` float64, or None for ``query`` against itself.
        k: which neighbour, ``1 <= k <= M``.
        block_size: rows per distance block (memory ~ ``block_size²`` float32).

    Returns:
        ``(N,)`` float64 squared distances and ``(N,)`` int64 indices into ``ref`` (ties: lower index).
    """
    ref_t = query if ref is None else ref
    center = ref_t.mean(dim=0)
    b = Blocked.build(ref_t, center)
    a = b if ref is None else Blocked.build(query, center)
    return kth_nearest_blocked(a, b, k, block_size=block_size)


def kth_nearest_blocked(
    a: Blocked, b: Blocked, k: int, *, block_size: int = DEFAULT_BLOCK_SIZE
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`kth_nearest_sq` on prepared sets (``a is b``: a set against itself, symmetric blocks once)."""
    symmetric = a is b
    query, ref_t = a.x64, b.x64
    n, m = len(a), len(b)
    if not 1 <= k <= m:
        raise ValueError(f"k={k} must be between 1 and the number of reference rows ({m})")
    kk = min(k + _EXTRA_CANDIDATES, m)
    device = query.device

    starts = list(range(0, n, block_size))
    best_v = [torch.empty((min(block_size, n - s), 0), dtype=torch.float32, device=device) for s in starts]
    best_i = [torch.empty((v.shape[0], 0), dtype=torch.int64, device=device) for v in best_v]
    row_margin = torch.zeros(n, dtype=torch.float64, device=device)
    for bi, i0 in enumerate(starts):
        i1 = min(i0 + block_size, n)
        for j0 in range(0, m, block_size):
            if symmetric and j0 < i0:
                continue  # the block (j, i) already handled these pairs
            j1 = min(j0 + block_size, m)
            d2, margin = _approx_block(a, i0, i1, b, j0, j1)
            kc = min(kk, j1 - j0)
            v, pos = torch.topk(d2, kc, dim=1, largest=False, sorted=False)
            width = min(kk, best_v[bi].shape[1] + kc)
            best_v[bi], best_i[bi] = _merge_topk(best_v[bi], best_i[bi], v, pos + j0, width)
            row_margin[i0:i1].clamp_(min=margin)
            if symmetric and j0 != i0:
                bj = j0 // block_size
                kr = min(kk, i1 - i0)
                v, pos = torch.topk(d2.T, kr, dim=1, largest=False, sorted=False)
                width = min(kk, best_v[bj].shape[1] + kr)
                best_v[bj], best_i[bj] = _merge_topk(best_v[bj], best_i[bj], v, pos + i0, width)
                row_margin[j0:j1].clamp_(min=margin)
            del d2

    approx = torch.cat(best_v).to(torch.float64)  # (n, kk) ascending
    cand = torch.cat(best_i)
    kth = approx[:, k - 1 : k]
    band_half = 2.0 * row_margin.unsqueeze(1)
    below = (approx < kth - band_half).sum(dim=1)  # certainly below the k-th
    in_band = (approx - kth).abs() <= band_half
    rr, cc = torch.nonzero(in_band, as_tuple=True)
    exact = torch.full_like(approx, torch.inf)
    exact[rr, cc] = exact_sq_dists(query, ref_t, rr, cand[rr, cc])
    # Order the band by (exact value, index) and pick position k - 1 - below.
    by_index = torch.argsort(torch.where(in_band, cand, torch.iinfo(torch.int64).max), dim=1)
    exact, cand_sorted = torch.gather(exact, 1, by_index), torch.gather(cand, 1, by_index)
    order = torch.argsort(exact, dim=1, stable=True)
    pick = torch.gather(order, 1, (k - 1 - below).unsqueeze(1))
    vals = torch.gather(exact, 1, pick).squeeze(1)
    idx = torch.gather(cand_sorted, 1, pick).squeeze(1)
    if kk < m:
        unsafe = (approx[:, -1] - approx[:, k - 1]) <= 2.0 * row_margin
        if bool(unsafe.any()):
            bad = torch.nonzero(unsafe).squeeze(1)
            logger.debug("k-NN: %d of %d rows recomputed in float64 in full (near-ties)", bad.numel(), n)
            vals[bad], idx[bad] = _exact_kth_full(query, ref_t, bad, k)
    return vals, idx


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
) -> BallCounts:
    """Count, in one blocked pass over real×fake distances, which samples fall inside which k-NN balls.

    Args:
        real: ``(N, D)`` float64. fake: ``(M, D)`` float64.
        real_radii: ``(N,)`` float64 ball radii (distances, not squared). fake_radii: ``(M,)`` float64.
        block_size: rows per distance block.

    Returns:
        :class:`BallCounts`, equal to a float64 computation with strict ``<``.
    """
    center = real.mean(dim=0)
    return ball_counts_blocked(
        Blocked.build(real, center), Blocked.build(fake, center), real_radii, fake_radii, block_size=block_size
    )


def ball_counts_blocked(
    a: Blocked, b: Blocked, real_radii: torch.Tensor, fake_radii: torch.Tensor, *, block_size: int = DEFAULT_BLOCK_SIZE
) -> BallCounts:
    """:func:`ball_counts` on prepared sets (reals ``a``, fakes ``b``)."""
    real, fake = a.x64, b.x64
    n, m = len(a), len(b)
    device = real.device
    r2_real = real_radii.square()
    r2_fake = fake_radii.square()
    counts = torch.zeros(m, dtype=torch.int64, device=device)
    has_fake = torch.zeros(n, dtype=torch.bool, device=device)
    in_fake = torch.zeros(n, dtype=torch.bool, device=device)
    for i0 in range(0, n, block_size):
        i1 = min(i0 + block_size, n)
        for j0 in range(0, m, block_size):
            j1 = min(j0 + block_size, m)
            d2, margin = _approx_block(a, i0, i1, b, j0, j1)
            # Balls around reals: columns are fakes (precision, density), rows are reals (coverage).
            thr = r2_real[i0:i1].unsqueeze(1)
            sure = d2 < (thr - margin).to(torch.float32)
            maybe = d2 <= (thr + margin).to(torch.float32)
            # (uint8 sums with an int32 accumulator: several times faster than summing bools into int64)
            column_counts = sure.view(torch.uint8).sum(dim=0, dtype=torch.int32)
            counts[j0:j1] += column_counts
            has_fake[i0:i1] |= sure.any(dim=1)
            if int(torch.count_nonzero(maybe)) != int(column_counts.sum()):  # a pair within the rounding band
                rr, cc = torch.nonzero(maybe & ~sure, as_tuple=True)
                rr, cc = rr + i0, cc + j0
                inside = exact_sq_dists(real, fake, rr, cc).sqrt() < real_radii[rr]
                counts.index_add_(0, cc[inside], torch.ones_like(cc[inside]))
                has_fake[rr[inside]] = True
            # Balls around fakes: rows are reals (recall).
            thr = r2_fake[j0:j1].unsqueeze(0)
            sure = d2 < (thr - margin).to(torch.float32)
            maybe = d2 <= (thr + margin).to(torch.float32)
            in_fake[i0:i1] |= sure.any(dim=1)
            if int(torch.count_nonzero(maybe)) != int(torch.count_nonzero(sure)):
                rr, cc = torch.nonzero(maybe & ~sure, as_tuple=True)
                rr, cc = rr + i0, cc + j0
                inside = exact_sq_dists(real, fake, rr, cc).sqrt() < fake_radii[cc]
                in_fake[rr[inside]] = True
            del d2, sure, maybe
    return BallCounts(fake_in_real_balls=counts, real_has_fake=has_fake, real_in_fake_balls=in_fake)


def kth_neighbour_radii(x: torch.Tensor, nearest_k: int, *, block_size: int = DEFAULT_BLOCK_SIZE) -> torch.Tensor:
    """Distance of each row to its ``nearest_k``-th nearest other row (its own zero distance counted first).

    Equals the ``prdc`` package's radii: the (k+1)-th smallest entry of the row of the full distance matrix.

    Args:
        x: ``(N, D)`` float64 with ``N > nearest_k``.

    Returns:
        ``(N,)`` float64 distances.
    """
    vals, _ = kth_nearest_sq(x, None, nearest_k + 1, block_size=block_size)
    return vals.sqrt()
