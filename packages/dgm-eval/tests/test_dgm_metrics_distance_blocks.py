"""Low-precision distance blocks: the error bound holds on every pair, and both product dtypes give the prdc
package's values exactly (float64 decisions), on plain, clustered and duplicated data."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import torch
from prdc import compute_prdc

from dgm_eval.metrics import prdc
from dgm_eval.metrics.distance_blocks import approx_block, cpu_has_fast_bf16, product_dtype
from dgm_eval.metrics.neighbours import kth_nearest_sq, prepare

PRODUCTS = ("float32", "bfloat16")


def _peer(real: np.ndarray, fake: np.ndarray, k: int) -> dict[str, float]:
    with contextlib.redirect_stdout(io.StringIO()):  # the package prints its sample counts
        return {key: float(value) for key, value in compute_prdc(real, fake, k).items()}


def _clustered(rng: np.random.Generator, n: int, dim: int, offset: float) -> np.ndarray:
    """Tight clusters far from the origin, in class order (neighbours share a block): a hard case for bounds."""
    centres = rng.normal(size=(6, dim)) * 3.0 + offset
    return np.repeat(centres, -(-n // 6), axis=0)[:n] + rng.normal(size=(n, dim)) * 0.3


@pytest.mark.parametrize("products", PRODUCTS)
def test_block_bound_holds_on_every_pair(rng, products):
    # Rows of very different norms and a far offset; the bound must cover the worst pair (it is a proof, the
    # test checks the implementation of it, including the bfloat16 output rounding of the product).
    x = np.concatenate([rng.normal(size=(150, 300)) * 5.0, _clustered(rng, 150, 300, 4.0)])
    y = np.concatenate([rng.normal(size=(90, 300)) + 2.0, x[:30] + 1e-3 * rng.normal(size=(30, 300))])
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    a, b = prepare(xt, xt, yt, products=products)
    assert a.low.dtype == getattr(torch, products)
    d2, bound = approx_block(a, 0, len(a), b, 0, len(b))
    exact = ((xt[:, None, :] - yt[None, :, :]) ** 2).sum(-1)
    s = a.sq64[:, None] + b.sq64[None, :]
    allowed = bound + b.unit_out * (s - d2.double()).abs()
    err = (d2.double() - exact).abs()
    assert bool((err <= allowed).all())
    assert float((err / allowed).max()) > 1e-4  # the comparison is not vacuous (errors are not all zero)


@pytest.mark.parametrize("products", PRODUCTS)
@pytest.mark.parametrize("kind", ["normal", "clustered", "duplicates"])
def test_prdc_equals_package_for_both_product_dtypes(rng, products, kind):
    dim = 160
    if kind == "normal":
        real, fake = rng.normal(size=(400, dim)), rng.normal(size=(350, dim)) * 1.1 + 0.05
    elif kind == "clustered":
        real, fake = _clustered(rng, 400, dim, 6.0), _clustered(rng, 350, dim, 6.0)
    else:
        real = rng.normal(size=(300, dim))
        real[20:40] = real[0]  # a clump of identical reals: ties everywhere
        fake = np.concatenate([real[:60], rng.normal(size=(200, dim))])
    expected = _peer(real, fake, 5)
    for block in (64, 2048):
        assert prdc(real, fake, nearest_k=5, block_size=block, products=products) == expected


@pytest.mark.parametrize("products", PRODUCTS)
def test_kth_nearest_matches_sorting_for_both_product_dtypes(rng, products):
    x = _clustered(rng, 257, 192, 3.0)
    y = np.concatenate([_clustered(rng, 150, 192, 3.0), x[:40]])  # exact copies: zero distances and ties
    d2 = ((x[:, None] - y[None]) ** 2).sum(-1)
    for k in (1, 4, 30):
        vals, idx = kth_nearest_sq(torch.from_numpy(x), torch.from_numpy(y), k, block_size=50, products=products)
        np.testing.assert_allclose(vals.numpy(), np.sort(d2, 1)[:, k - 1], rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(idx.numpy(), np.argsort(d2, 1, kind="stable")[:, k - 1])


def test_product_dtype_choice():
    cpu = torch.device("cpu")
    assert product_dtype(cpu, 1024, "float32") == torch.float32
    assert product_dtype(cpu, 16, "bfloat16") == torch.bfloat16
    assert product_dtype(cpu, 16) == torch.float32  # small D: float32
    assert product_dtype(torch.device("cuda"), 1024) == torch.float32  # no bf16 products on CUDA
    with pytest.raises(ValueError, match="products must be one of"):
        product_dtype(cpu, 16, "float16")


@pytest.mark.skipif(not cpu_has_fast_bf16(), reason="auto picks bfloat16 only on CPUs with native bf16")
def test_auto_products_probe_falls_back_to_float32_on_tight_far_clusters(rng):
    spread = torch.from_numpy(rng.normal(size=(600, 256)))
    tight = torch.from_numpy(_clustered(rng, 600, 256, 6.0))
    assert prepare(spread, spread, products="auto", probe_k=6)[0].low.dtype == torch.bfloat16
    assert prepare(tight, tight, products="auto", probe_k=6)[0].low.dtype == torch.float32
    assert prepare(tight, tight, products="auto")[0].low.dtype == torch.bfloat16  # no probe without k
