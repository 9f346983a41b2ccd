"""Exact nearest-neighbour distances and ball counts, computed in blocks (memory O(N·k + block²), never N²).

Written by hand because no maintained library does this: scikit-learn and the ``prdc`` package build full N×N
distance matrices. The distance products are most of the work, so they run in a low precision (float32, or
bfloat16 on CPUs with native bf16 dot products) on data centred on the reference mean, with a rigorous bound on
each block's error (:mod:`dgm_eval.metrics.distance_blocks`); every decision that the rounding could flip is
re-decided exactly in float64 from the two rows (``Σ(x − y)²``):

* a k-th-nearest-neighbour search keeps extra low-precision candidates per row, recomputes those whose rank the
  rounding could change, and checks that no row outside the candidates could be closer (else that row is
  searched again with float32 products, and failing that, recomputed in float64 in full).

So the k-th distances are those of a float64 computation, whatever the block size and product dtype. The ball
counts of prdc, on the same prepared sets, are in :mod:`dgm_eval.metrics.ball_counts`.
"""

from __future__ import annotations

import logging

import torch

from dgm_eval.metrics.distance_blocks import (
    PAIR_CHUNK,
    Blocked,
    approx_block,
    bound_from_norms,
    exact_float32_matmul,
    exact_sq_dists,
    pair_bound,
    product_dtype,
)

logger = logging.getLogger(__name__)

#: Extra low-precision candidates kept per row in the k-NN search, per product dtype.
_EXTRA_CANDIDATES = {torch.float32: 8, torch.bfloat16: 16}

DEFAULT_BLOCK_SIZE = 2048

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "Blocked",
    "exact_sq_dists",
    "kth_nearest_blocked",
    "kth_nearest_sq",
    "kth_neighbour_radii",
    "prepare",
]


def prepare(
    center_of: torch.Tensor, *sets: torch.Tensor, products: str = "auto", probe_k: int | None = None
) -> tuple[Blocked, ...]:
    """Prepare float64 ``(N_i, D)`` sets for blocked products, all centred on the mean of ``center_of``.

    ``products`` picks the product dtype (:func:`dgm_eval.metrics.distance_blocks.product_dtype`). With
    ``"auto"`` and a ``probe_k``, bfloat16 is kept only if a probe of the first set's k-NN (128 rows) shows that its
    error band holds few candidates per row; tight clusters far from the centre (neighbour distances small against
    the norms) get float32 products, where bfloat16 would send most rows to the exact fallback.
    """
    dtype = product_dtype(center_of.device, int(center_of.shape[1]), products)
    center = center_of.mean(dim=0)
    blocked = tuple(Blocked.build(x, center, dtype) for x in sets)
    if products == "auto" and dtype != torch.float32 and probe_k is not None and not _narrow_band(blocked[0], probe_k):
        logger.debug("k-NN: bfloat16 error band too wide for these features: float32 products")
        blocked = tuple(Blocked.build(x, center, torch.float32) for x in sets)
    return blocked


def _narrow_band(b: Blocked, k: int) -> bool:
    """Whether at least 90 % of 128 probe rows of ``b`` would find their k-th neighbour among the kept candidates."""
    m = len(b)
    kk = k + _EXTRA_CANDIDATES[b.low.dtype]
    if kk >= m:
        return True
    rows = torch.linspace(0, m - 1, min(128, m), device=b.x64.device).long().unique()
    probe = Blocked(
        b.x64[rows], b.low[rows], b.sq64[rows], b.sq32[rows], b.norm[rows], b.resid[rows], b.unit_out, b.center
    )
    with exact_float32_matmul():
        d2, bound = approx_block(probe, 0, len(probe), b, 0, m)
    kth = torch.kthvalue(d2, k, dim=1).values.double()
    err = bound + b.unit_out * (probe.sq64 + b.sq64.mean() - kth).abs()
    needed = (d2 <= (kth + 2.0 * err).float().unsqueeze(1)).sum(dim=1)
    return float(torch.quantile(needed.double(), 0.9)) <= kk


def _exact_kth_full(x: torch.Tensor, y: torch.Tensor, rows: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact k-th smallest squared distance (and index) of ``x[rows]`` to all of ``y``, row by row (fallback)."""
    vals = torch.empty(rows.shape[0], dtype=torch.float64, device=x.device)
    idxs = torch.empty(rows.shape[0], dtype=torch.int64, device=x.device)
    for pos, row in enumerate(rows.tolist()):
        d2 = torch.cat(
            [(y[j : j + PAIR_CHUNK] - x[row]).square_().sum(dim=1) for j in range(0, y.shape[0], PAIR_CHUNK)]
        )
        order = torch.argsort(d2, stable=True)  # ties: lower index first
        vals[pos], idxs[pos] = d2[order[k - 1]], order[k - 1]
    return vals, idxs


def kth_nearest_sq(
    query: torch.Tensor,
    ref: torch.Tensor | None,
    k: int,
    *,
    block_size: int = DEFAULT_BLOCK_SIZE,
    products: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact (float64) squared distance from each query row to its k-th nearest reference row, and that row.

    With ``ref=None`` the reference is ``query`` itself and each row's own zero distance counts as its first
    neighbour (so ``k = nearest_k + 1`` gives the ``nearest_k``-th nearest *other* row); the symmetric blocks are
    computed once, not twice.

    How exactness is kept with low-precision products: per row, the ``k + extra`` smallest approximate values
    are kept; each has an interval ``[lo, hi]`` that holds its exact value (the block bound of
    :mod:`dgm_eval.metrics.distance_blocks`). The exact k-th value lies between the k-th smallest ``lo`` (L) and
    the k-th smallest ``hi`` (T): candidates with ``hi < L`` are certainly below it, those with ``lo > T``
    certainly above, and only the rest (usually a few) are recomputed in float64. A row where a row outside the
    candidates could be below T (heavy ties, duplicates, a wide bfloat16 band) is searched again with float32
    products, and a row still unsure then is recomputed against all reference rows in float64.

    Args:
        query: ``(N, D)`` float64.
        ref: ``(M, D)`` float64, or None for ``query`` against itself.
        k: which neighbour, ``1 <= k <= M``.
        block_size: rows per distance block (memory ~ ``block_size²`` float32).
        products: product dtype, ``"auto"``, ``"float32"`` or ``"bfloat16"`` (results do not depend on it).

    Returns:
        ``(N,)`` float64 squared distances and ``(N,)`` int64 indices into ``ref`` (ties: lower index).
    """
    ref_t = query if ref is None else ref
    if ref is None:
        (b,) = prepare(ref_t, ref_t, products=products, probe_k=k)
        a = b
    else:
        b, a = prepare(ref_t, ref_t, query, products=products, probe_k=k)
    return kth_nearest_blocked(a, b, k, block_size=block_size)


class _Candidates:
    """The ``kk`` smallest approximate values per row (unordered) and their columns, for one block of rows.

    The first block of columns seen goes through a partial top-k; later blocks only contribute the entries below
    each row's current ``kk``-th value (a mask and ``nonzero``, much cheaper than a top-k), merged in a small
    padded top-k. Every entry left out has an approximate value >= the final ``kk``-th value (the cutoff).
    """

    def __init__(self, rows: int, kk: int, device: torch.device) -> None:
        self.kk = kk
        self.vals = torch.empty((rows, 0), dtype=torch.float32, device=device)
        self.cols = torch.empty((rows, 0), dtype=torch.int64, device=device)
        self.cutoff = torch.full((rows,), torch.inf, dtype=torch.float32, device=device)
        self.left_out = False

    def add_rows(self, d2: torch.Tensor, col0: int) -> None:
        """Offer ``d2`` (rows × block columns), whose rows are this block's rows."""
        if self.vals.shape[1] < self.kk:  # not yet kk candidates: take the block's smallest
            width = min(self.kk, d2.shape[1])
            v, pos = torch.topk(d2, width, dim=1, largest=False, sorted=False)
            self.left_out |= width < d2.shape[1]
            self._merge_dense(v, pos + col0)
            return
        r, c = torch.nonzero(d2 < self.cutoff.unsqueeze(1), as_tuple=True)
        self.left_out = True
        self._merge_sparse(r, d2[r, c], c + col0)

    def add_cols(self, d2: torch.Tensor, row0: int) -> None:
        """Offer ``d2`` (block rows × rows of this block): its columns are this block's rows."""
        if self.vals.shape[1] < self.kk:
            self.add_rows(d2.T.contiguous(), row0)
            return
        r, c = torch.nonzero(d2 < self.cutoff.unsqueeze(0), as_tuple=True)
        self.left_out = True
        order = torch.argsort(c, stable=True)
        r, c = r[order], c[order]
        self._merge_sparse(c, d2[r, c], r + row0)

    def _merge_dense(self, v: torch.Tensor, cols: torch.Tensor) -> None:
        vals = torch.cat([self.vals, v], dim=1)
        cols = torch.cat([self.cols, cols], dim=1)
        if vals.shape[1] > self.kk:
            vals, keep = torch.topk(vals, self.kk, dim=1, largest=False, sorted=False)
            cols = torch.gather(cols, 1, keep)
            self.left_out = True
        self.vals, self.cols = vals, cols
        if vals.shape[1] == self.kk:
            self.cutoff = vals.max(dim=1).values

    def _merge_sparse(self, rows: torch.Tensor, v: torch.Tensor, cols: torch.Tensor) -> None:
        """Merge entries given row by row (``rows`` ascending)."""
        if rows.numel() == 0:
            return
        n = self.vals.shape[0]
        counts = torch.bincount(rows, minlength=n)
        starts = torch.cumsum(counts, 0) - counts
        pos = torch.arange(rows.numel(), device=rows.device) - starts[rows]
        width = int(counts.max())
        pad_v = torch.full((n, width), torch.inf, dtype=v.dtype, device=v.device)
        pad_c = torch.zeros((n, width), dtype=torch.int64, device=v.device)
        pad_v[rows, pos], pad_c[rows, pos] = v, cols
        self._merge_dense(pad_v, pad_c)


def kth_nearest_blocked(
    a: Blocked, b: Blocked, k: int, *, block_size: int = DEFAULT_BLOCK_SIZE
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`kth_nearest_sq` on prepared sets (``a is b``: a set against itself, symmetric blocks once)."""
    symmetric = a is b
    n, m = len(a), len(b)
    if not 1 <= k <= m:
        raise ValueError(f"k={k} must be between 1 and the number of reference rows ({m})")
    kk = min(k + _EXTRA_CANDIDATES.get(b.low.dtype, 8), m)  # candidates kept per row
    device = a.x64.device
    starts = list(range(0, n, block_size))
    cands = [_Candidates(min(block_size, n - s), kk, device) for s in starts]
    with exact_float32_matmul():
        for bi, i0 in enumerate(starts):
            i1 = min(i0 + block_size, n)
            for j0 in range(0, m, block_size):
                if symmetric and j0 < i0:
                    continue  # the block (j, i) already handled these pairs
                j1 = min(j0 + block_size, m)
                d2, _ = approx_block(a, i0, i1, b, j0, j1)
                cands[bi].add_rows(d2, j0)
                if symmetric and j0 != i0:
                    cands[j0 // block_size].add_cols(d2, i0)
                del d2
    approx = torch.cat([c.vals for c in cands]).to(torch.float64)
    order = torch.argsort(approx, dim=1)
    approx, cand = torch.gather(approx, 1, order), torch.gather(torch.cat([c.cols for c in cands]), 1, order)
    inf = torch.tensor(torch.inf, dtype=torch.float32, device=device)
    floor = torch.cat([c.cutoff if c.left_out else inf.expand(c.cutoff.shape) for c in cands])
    return _resolve_kth(a, b, approx, cand, floor.to(torch.float64), k)


def _resolve_kth(
    a: Blocked, b: Blocked, approx: torch.Tensor, cand: torch.Tensor, floor: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact k-th values from the ``(n, c)`` approximate candidates (see :func:`kth_nearest_sq`)."""
    n = len(a)
    unit = b.unit_out
    rows = torch.arange(n, device=approx.device).unsqueeze(1)
    err = pair_bound(a, rows, b, cand) + unit * (a.sq64.unsqueeze(1) + b.sq64[cand] - approx).abs()
    lo, hi = approx - err, approx + err
    exact = torch.full_like(approx, torch.inf)
    known = torch.zeros_like(approx, dtype=torch.bool)

    def recompute(mask: torch.Tensor) -> None:
        rr, cc = torch.nonzero(mask & ~known, as_tuple=True)
        values = exact_sq_dists(a.x64, b.x64, rr, cand[rr, cc])
        exact[rr, cc] = lo[rr, cc] = hi[rr, cc] = values
        known.logical_or_(mask)

    # First the candidates whose interval holds the approximate k-th value (usually a few per row), then those
    # still overlapping [low_k, high_k], the range of the exact k-th value. Exact values are points, so the
    # range only narrows; it stops when every candidate overlapping it is known exactly (two rounds at most).
    approx_k = torch.kthvalue(approx, k, dim=1).values.unsqueeze(1)
    recompute((lo <= approx_k) & (hi >= approx_k))
    while True:
        low_k = torch.kthvalue(lo, k, dim=1).values.unsqueeze(1)
        high_k = torch.kthvalue(hi, k, dim=1).values.unsqueeze(1)
        in_band = (hi >= low_k) & (lo <= high_k)
        if not bool((in_band & ~known).any()):
            break
        recompute(in_band)
    below = (hi < low_k).sum(dim=1)  # certainly below the k-th
    # Order the band by (exact value, index) and pick position k - 1 - below.
    exact = torch.where(in_band, exact, torch.inf)
    by_index = torch.argsort(torch.where(in_band, cand, torch.iinfo(torch.int64).max), dim=1)
    exact, cand_sorted = torch.gather(exact, 1, by_index), torch.gather(cand, 1, by_index)
    order = torch.argsort(exact, dim=1, stable=True)
    pick = torch.gather(order, 1, (k - 1 - below).unsqueeze(1))
    vals = torch.gather(exact, 1, pick).squeeze(1)
    idx = torch.gather(cand_sorted, 1, pick).squeeze(1)
    # A row left out of the candidates has an approximate value s >= floor, so an exact value >= the bound's
    # lower end at floor (increasing in s), with the worst norms and residuals of the reference set.
    finite = torch.isfinite(floor)
    if bool(finite.any()):
        nb, rb = float(b.norm.max()), float(b.resid.max())
        bound_out = bound_from_norms(a.norm, a.resid, nb, rb, a.dim, unit)
        s_lo, s_hi = a.sq64 + float(b.sq64.min()), a.sq64 + float(b.sq64.max())
        spread = torch.maximum((s_hi - floor).abs(), (s_lo - floor).abs())
        outside_lo = floor - bound_out - unit * spread
        unsafe = finite & (outside_lo <= high_k.squeeze(1))
        if bool(unsafe.any()):
            bad = torch.nonzero(unsafe).squeeze(1)
            if b.low.dtype != torch.float32:  # these rows again with float32 products (a much tighter bound)
                logger.debug("k-NN: %d of %d rows again with float32 products", bad.numel(), n)
                sub = Blocked.build(a.x64[bad], b.center, torch.float32)
                ref32 = Blocked.build(b.x64, b.center, torch.float32)
                vals[bad], idx[bad] = kth_nearest_blocked(sub, ref32, k)
            else:
                logger.debug("k-NN: %d of %d rows recomputed in float64 in full (near-ties)", bad.numel(), n)
                vals[bad], idx[bad] = _exact_kth_full(a.x64, b.x64, bad, k)
    return vals, idx


def kth_neighbour_radii(
    x: torch.Tensor, nearest_k: int, *, block_size: int = DEFAULT_BLOCK_SIZE, products: str = "auto"
) -> torch.Tensor:
    """Distance of each row to its ``nearest_k``-th nearest other row (its own zero distance counted first).

    Equals the ``prdc`` package's radii: the (k+1)-th smallest entry of the row of the full distance matrix.

    Args:
        x: ``(N, D)`` float64 with ``N > nearest_k``.

    Returns:
        ``(N,)`` float64 distances.
    """
    vals, _ = kth_nearest_sq(x, None, nearest_k + 1, block_size=block_size, products=products)
    return vals.sqrt()
