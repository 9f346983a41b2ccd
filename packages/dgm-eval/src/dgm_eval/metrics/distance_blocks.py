"""Low-precision squared-distance blocks with a rigorous per-block error bound, and exact float64 pairs.

The k-NN and ball-count passes (:mod:`dgm_eval.metrics.neighbours`) spend most of their time in the matrix
products of ``‖x‖² + ‖y‖² − 2·x·y``. Those run in a low precision (float32, or bfloat16 on CPUs with native
bf16 dot products, about 2.5× faster than float32 there), and every decision the rounding could flip is
re-decided in float64. For that, each block comes with a bound that holds for *every* pair in it:

``|d̃² − d²| <= A + u'·|‖x‖² + ‖y‖² − d̃²|``

* ``A`` (per block) covers the rounding of the centred float64 rows to the product dtype (exactly, from each
  row's residual norm ``‖x − x̃‖`` by Cauchy-Schwarz: ``2(‖x‖‖e_y‖ + ‖e_x‖‖y‖ + ‖e_x‖‖e_y‖)``), the float32
  accumulation of a length-D sum in any order (``γ_{D+2}·‖x̃‖‖ỹ‖``, doubled), the float32 arithmetic around the
  product and a small slack for the float64 centring and the float32 thresholds;
* ``u'`` covers the rounding of a bfloat16 product to its bfloat16 output (relative to ``|x̃·ỹ|``, which equals
  ``|‖x‖² + ‖y‖² − d̃²| / 2`` up to the rest of the bound): ``2⁻⁸/(1 − 2⁻⁸)`` for the round-to-nearest-even
  conversion of oneDNN and torch (a test checks the bound on every pair of random blocks); it is 0 for float32
  products, whose output is the float32 accumulator itself.

Because ``s ↦ s ± (A + u'|S − s|)`` is increasing, a block-wide threshold test ``d̃² < t − m`` with
``m = (A + u'·max|S − t|) / (1 − u')`` is certain for every pair of the block (:func:`threshold_margin`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

#: Unit roundoff of float32.
U32 = 2.0**-24
#: Unit roundoff of bfloat16 (round-to-nearest-even): relative error bound of a bfloat16 product output.
_U_BF16_OUT = 2.0**-8
#: Rows per chunk when preparing a set.
PAIR_CHUNK = 1024
#: Pairs per chunk when recomputing pairs exactly in float64 (two 128 × D float64 chunks stay in L2 cache).
_EXACT_CHUNK = 128
#: Smallest feature dimension for which bfloat16 products are used by default (below, float32 is cheap).
BF16_MIN_DIM = 128
PRODUCTS = ("auto", "float32", "bfloat16")


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU has native bf16 dot products (AVX512-BF16 or AMX), where bf16 products beat float32."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def product_dtype(device: torch.device, dim: int, products: str = "auto") -> torch.dtype:
    """The dtype of the distance products: ``products`` = ``"float32"``, ``"bfloat16"`` or ``"auto"``.

    ``"auto"`` picks bfloat16 on a CPU with native bf16 dot products when ``dim >= 128``, else float32 (on CUDA
    always float32, with TF32 off during the products: see :func:`exact_float32_matmul`).
    """
    if products not in PRODUCTS:
        raise ValueError(f"products must be one of {', '.join(PRODUCTS)}, got {products!r}")
    if products == "float32":
        return torch.float32
    if products == "bfloat16":
        return torch.bfloat16
    if device.type == "cpu" and dim >= BF16_MIN_DIM and cpu_has_fast_bf16():
        return torch.bfloat16
    return torch.float32


@contextlib.contextmanager
def exact_float32_matmul() -> Iterator[None]:
    """Float32 matrix products in IEEE float32 (no TF32 on CUDA) inside the block, restored afterwards."""
    old = torch.get_float32_matmul_precision()
    if old == "highest":
        yield
        return
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(old)


@dataclass
class Blocked:
    """One set prepared for blocked distance products.

    Attributes:
        x64: ``(N, D)`` float64 rows as given (the exact recomputations use these).
        low: ``(N, D)`` rows centred on a shared centre, in the product dtype (float32 or bfloat16).
        sq64: ``(N,)`` float64 squared norms of the centred rows. sq32: the same in float32.
        norm: ``(N,)`` float64 norms of the centred rows. resid: ``(N,)`` float64 norms of ``centred − low``.
        unit_out: relative error bound of one product's output (0 for float32).
        center: ``(D,)`` float64 centre the rows were centred on.
    """

    x64: torch.Tensor
    low: torch.Tensor
    sq64: torch.Tensor
    sq32: torch.Tensor
    norm: torch.Tensor
    resid: torch.Tensor
    unit_out: float
    center: torch.Tensor

    @classmethod
    def build(cls, x64: torch.Tensor, center: torch.Tensor, dtype: torch.dtype = torch.float32) -> Blocked:
        """Centre ``x64`` (``(N, D)`` float64) on ``center`` and round it to ``dtype``, in row chunks."""
        n = x64.shape[0]
        low = torch.empty(x64.shape, dtype=dtype, device=x64.device)
        sq64 = torch.empty(n, dtype=torch.float64, device=x64.device)
        resid = torch.empty(n, dtype=torch.float64, device=x64.device)
        for s in range(0, n, PAIR_CHUNK):
            centred = x64[s : s + PAIR_CHUNK] - center
            low[s : s + PAIR_CHUNK] = centred
            sq64[s : s + PAIR_CHUNK] = torch.linalg.vecdot(centred, centred)
            centred.sub_(low[s : s + PAIR_CHUNK].to(torch.float64))  # now the rounding residual
            resid[s : s + PAIR_CHUNK] = torch.linalg.vecdot(centred, centred).sqrt()
        unit_out = _U_BF16_OUT / (1.0 - _U_BF16_OUT) if dtype == torch.bfloat16 else 0.0
        return cls(x64, low, sq64, sq64.to(torch.float32), sq64.sqrt(), resid, unit_out, center)

    def __len__(self) -> int:
        return int(self.x64.shape[0])

    @property
    def dim(self) -> int:
        return int(self.x64.shape[1])


def approx_block(a: Blocked, i0: int, i1: int, b: Blocked, j0: int, j1: int) -> tuple[torch.Tensor, float]:
    """Low-precision squared distances of ``a[i0:i1]`` to ``b[j0:j1]`` (float32) and the block's ``A``.

    Returns:
        ``(i1 − i0, j1 − j0)`` float32 ``d̃²`` and the float ``A`` of the module's bound (the ``u'`` term is
        ``a.unit_out``).
    """
    if a.low.dtype == torch.float32:
        d2 = torch.addmm(b.sq32[j0:j1].unsqueeze(0), a.low[i0:i1], b.low[j0:j1].T, beta=1.0, alpha=-2.0)
    else:  # (a mixed bf16 + float32 add is ~10x slower than converting first and adding in float32)
        d2 = torch.mm(a.low[i0:i1], b.low[j0:j1].T).to(torch.float32)
        torch.add(b.sq32[j0:j1].unsqueeze(0), d2, alpha=-2.0, out=d2)
    d2.add_(a.sq32[i0:i1].unsqueeze(1))
    return d2, block_bound(a, i0, i1, b, j0, j1)


def block_bound(a: Blocked, i0: int, i1: int, b: Blocked, j0: int, j1: int) -> float:
    """The ``A`` term of the module's bound for the block ``a[i0:i1] × b[j0:j1]``."""
    na, ra = float(a.norm[i0:i1].max()), float(a.resid[i0:i1].max())
    nb, rb = float(b.norm[j0:j1].max()), float(b.resid[j0:j1].max())
    return float(bound_from_norms(na, ra, nb, rb, a.dim, a.unit_out))


def bound_from_norms(na: Any, ra: Any, nb: Any, rb: Any, dim: int, unit_out: float) -> Any:
    """The ``A`` term of the module's bound from the rows' norms ``n`` and residual norms ``r`` (floats or
    broadcastable float64 tensors); increasing in each, so maxima give a bound for a whole block."""
    gamma = (dim + 2) * U32 / (1.0 - (dim + 2) * U32)
    sq_sum = na * na + nb * nb
    inputs = 2.0 * (na * rb + ra * nb + ra * rb)
    accumulation = 2.0 * gamma * (na + ra) * (nb + rb)
    around = 8.0 * U32 * sq_sum * (1.0 + unit_out)  # sq32 rounding and the two float32 additions
    slack = 1e-6 * sq_sum + 1e-30  # float64 centring, float32 thresholds, sqrt-space comparisons
    return (1.0 + unit_out) * (inputs + accumulation + around) + slack


def pair_bound(a: Blocked, rows: torch.Tensor, b: Blocked, cols: torch.Tensor) -> torch.Tensor:
    """The ``A`` term of the module's bound for each pair ``(a[rows], b[cols])`` (broadcast shapes, float64)."""
    return bound_from_norms(a.norm[rows], a.resid[rows], b.norm[cols], b.resid[cols], a.dim, a.unit_out)


def threshold_margin(bound: float, unit_out: float, s_lo: float, s_hi: float, t_lo: float, t_hi: float) -> float:
    """Margin ``m`` making ``d̃² < t − m`` (and ``d̃² > t + m``) certain for every pair of a block.

    Args:
        bound: the block's ``A``. unit_out: ``u'``.
        s_lo, s_hi: range of ``‖x‖² + ‖y‖²`` over the block's pairs. t_lo, t_hi: range of the thresholds.
    """
    spread = max(abs(s_hi - t_lo), abs(s_lo - t_hi))
    return (bound + unit_out * spread) / (1.0 - unit_out) * (1.0 + 1e-6)


def exact_sq_dists(x: torch.Tensor, y: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Float64 squared distances ``Σ(x[rows] − y[cols])²`` of paired rows, chunked.

    Args:
        x: ``(N, D)`` float64. y: ``(M, D)`` float64. rows, cols: ``(P,)`` int64 indices.

    Returns:
        ``(P,)`` float64.
    """
    out = torch.empty(rows.shape[0], dtype=torch.float64, device=x.device)
    chunk = _EXACT_CHUNK if x.device.type == "cpu" else 8 * PAIR_CHUNK
    for s in range(0, rows.shape[0], chunk):
        diff = torch.index_select(x, 0, rows[s : s + chunk])
        diff.sub_(torch.index_select(y, 0, cols[s : s + chunk]))
        out[s : s + chunk] = torch.linalg.vecdot(diff, diff)
    return out
