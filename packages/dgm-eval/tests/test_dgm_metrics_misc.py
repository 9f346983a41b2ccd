"""IS, Vendi, ASW, C_T and FLS: closed forms, the vendi-score package, scipy/scikit-learn and dense references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import mannwhitneyu
from sklearn.cluster import KMeans
from sklearn.neighbors import NearestNeighbors
from vendi_score import vendi as vendi_package

from dgm_eval.metrics import (
    FeatureError,
    ct,
    ct_modified,
    ct_test,
    fls,
    fls_overfit,
    inception_score,
    sw_approx,
    vendi,
    vendi_per_class,
)
from dgm_eval.metrics.fls import _prepare


def test_inception_score_closed_forms(rng):
    assert inception_score(np.full((100, 10), 0.1)) == pytest.approx((1.0, 0.0), abs=1e-12)
    assert inception_score(np.eye(7)[np.arange(70) % 7], splits=1) == pytest.approx((7.0, 0.0), rel=1e-12)


def test_inception_score_equals_numpy_formula(rng):
    logits = rng.normal(size=(203, 12)) * 2
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    perm = np.random.RandomState(2020).permutation(203)
    scores = []
    for part in np.split(probs[perm][: 20 * 10], 10):
        py = part.mean(0, keepdims=True)
        scores.append(np.exp((part * (np.log(part) - np.log(py))).sum(1).mean()))
    assert inception_score(probs) == pytest.approx((np.mean(scores), np.std(scores)), rel=1e-10)
    with pytest.raises(FeatureError, match="rows of probabilities"):
        inception_score(logits)


def test_vendi_closed_forms_and_package(rng):
    assert vendi(np.tile(rng.normal(size=(1, 8)), (20, 1))) == pytest.approx(1.0, abs=1e-8)
    q, _ = np.linalg.qr(rng.normal(size=(16, 16)))
    assert vendi(q[:10] * 3.0) == pytest.approx(10.0, rel=1e-8)
    for shape in ((50, 20), (20, 50)):
        x = rng.normal(size=shape)
        assert vendi(x) == pytest.approx(vendi_package.score_dual(x), rel=1e-8)
        assert vendi(x) == pytest.approx(vendi_package.score_X(x), rel=1e-8)


def test_vendi_per_class_flat_and_labelled(rng):
    x = rng.normal(size=(30, 5))
    flat = vendi_per_class(x, np.zeros(30, dtype=int))
    assert list(flat) == ["0"] and math.isfinite(flat["0"]) and flat["0"] == pytest.approx(vendi(x))
    labels = np.array(["b", "a"] * 15)
    per = vendi_per_class(x, labels)
    assert list(per) == ["a", "b"]
    assert per["a"] == pytest.approx(vendi_package.score_dual(x[labels == "a"]), rel=1e-8)


def test_sw_approx_closed_forms(feats):
    real, fake = feats
    assert sw_approx(real, real) == 0.0
    shift = np.linspace(-1, 1, real.shape[1])
    assert sw_approx(real, real + shift) == pytest.approx(np.linalg.norm(shift) / math.sqrt(real.shape[1]), rel=1e-12)
    d = real.shape[1]
    m2r = ((real - real.mean(0)) ** 2).sum(1).mean()
    m2g = ((fake - fake.mean(0)) ** 2).sum(1).mean()
    expected = math.sqrt(
        ((real.mean(0) - fake.mean(0)) ** 2).sum() / d + (math.sqrt(m2r / d) - math.sqrt(m2g / d)) ** 2
    )
    assert sw_approx(real, fake) == pytest.approx(expected, rel=1e-12)


def _ct_reference(train, test, gen, seed):
    """C_T with scikit-learn's exact 1-NN and scipy's U test, on the same seeded KMeans cells."""
    km = KMeans(n_clusters=3, n_init=10, random_state=seed).fit(train)
    lt, lp, lg = km.labels_, km.predict(test), km.predict(gen)
    n, m = len(test), len(gen)
    pn = np.bincount(lp, minlength=3) / n
    used = np.bincount(lg, minlength=3) / m > 20 / m
    z = np.zeros(3)
    for c in np.flatnonzero(used):
        nn = NearestNeighbors(n_neighbors=1).fit(train[lt == c])
        lq, lpn = nn.kneighbors(gen[lg == c])[0][:, 0], nn.kneighbors(test[lp == c])[0][:, 0]
        nc, mc = len(lpn), len(lq)
        u = mannwhitneyu(lq, lpn, alternative="less").statistic
        z[c] = (u - (nc * mc / 2 - 0.5)) / math.sqrt(nc * mc * (nc + mc + 1) / 12)
    return pn[used] @ z[used] / pn[used].sum()


def test_ct_equals_reference_and_detects_copying(rng):
    train, test, gen = rng.normal(size=(400, 8)), rng.normal(size=(300, 8)), rng.normal(size=(300, 8))
    value = ct(train, test, gen, seed=1)
    assert value == pytest.approx(_ct_reference(train, test, gen, 1), rel=1e-10)
    assert abs(value) < 3.0  # iid with the test set
    copies = train[rng.choice(400, 300, replace=False)]
    assert ct(train, test, copies, seed=1) < -10.0
    assert ct(train, test, gen, seed=1) == value  # seeded
    assert ct_modified(train, test, gen, seed=1) == pytest.approx(_ct_reference(gen, test, train, 1), rel=1e-10)
    assert ct_test(train, test, gen, seed=1) == pytest.approx(_ct_reference(test[:150], test[150:], gen, 1), rel=1e-10)


def _adam_torch(params_step, n, steps=100):
    """torch.optim.Adam + MultiStepLR([50], 0.1), as the public FLS code fits (slow first use: compiler imports)."""
    s = torch.zeros(n, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([s], lr=0.5)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[50], gamma=0.1)
    for _ in range(steps):
        opt.zero_grad()
        params_step(s).backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            s.clamp_(-100, 20)
    return s.detach()


def _adam_by_hand(params_step, n, steps=100):
    """Adam written from Kingma & Ba with bias correction (β = 0.9, 0.999, ε = 1e-8), lr 0.5 then 0.05."""
    s = torch.zeros(n, dtype=torch.float64, requires_grad=True)
    m = torch.zeros(n, dtype=torch.float64)
    v = torch.zeros(n, dtype=torch.float64)
    for t in range(1, steps + 1):
        s.grad = None
        params_step(s).backward()
        g = s.grad
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        lr = 0.5 if t <= 50 else 0.05
        with torch.no_grad():
            s -= lr * (m / (1 - 0.9**t)) / (torch.sqrt(v / (1 - 0.999**t)) + 1e-8)
            s.clamp_(-100, 20)
    return s.detach()


def _fls_dense(train, test, gen, seed, adam=_adam_by_hand):
    """FLS written densely from the paper's definition (no chunking), float64."""
    r_train, r_base, t, g = (x.numpy() for x in _prepare(train, test, gen, seed, 10000, None))
    d = r_train.shape[1]

    def fit(data, kernels):
        dists = torch.from_numpy(((data[:, None] - kernels[None]) ** 2).sum(-1))

        def loss(s):
            return -torch.logsumexp(-0.5 * dists / s.exp() - d / 2 * s - math.log(kernels.shape[0]), 1).mean()

        return adam(loss, kernels.shape[0])

    def nll(data, kernels, s):
        dists = torch.from_numpy(((data[:, None] - kernels[None]) ** 2).sum(-1))
        return float(-torch.logsumexp(-0.5 * dists / s.exp() - d / 2 * s - math.log(kernels.shape[0]), 1).mean())

    gap = nll(t, g, fit(r_train, g)) - nll(t, r_base, fit(r_train, r_base))
    return 100 * math.exp(-2 * gap / d)


def test_fls_equals_dense_reference_and_detects_overfitting(rng):
    train, test = rng.normal(size=(240, 6)), rng.normal(size=(120, 6))
    gen = rng.normal(size=(120, 6))
    value = fls(train, test, gen, seed=2)
    assert value == pytest.approx(_fls_dense(train, test, gen, 2), rel=1e-8)
    assert 70 < value < 140  # as good as real data: about 100
    assert fls(train, test, gen + 2.0, seed=2) < 0.5 * value  # a shifted set is much less likely
    assert abs(fls_overfit(train, test, gen, seed=2)) < 15
    assert fls_overfit(train, test, train, seed=2) > 15  # kernels on training points


@pytest.mark.slow
def test_fls_fit_equals_torch_optim_adam(rng):
    train, test, gen = rng.normal(size=(240, 6)), rng.normal(size=(120, 6)), rng.normal(size=(120, 6))
    assert fls(train, test, gen, seed=2) == pytest.approx(_fls_dense(train, test, gen, 2, adam=_adam_torch), rel=1e-8)
