"""Metrics against torchmetrics, scikit-learn, scipy and numpy in float64 (reference §5 items 1, 2, 8, 9, 13, 15)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve
from torchmetrics.classification import BinaryAUROC, BinaryCalibrationError, MulticlassCalibrationError

from eb_ensembles.checks import InvalidInputError
from eb_ensembles.metrics import (
    accuracy,
    adaptive_calibration_error,
    aupr,
    auroc,
    binary_calibration_error,
    brier_score,
    calibration_error,
    ensemble_nll,
    fpr_at_tpr,
    gaussian_mixture_nll,
    interval_coverage,
    mixture_moments,
    nll,
    uncertainty_decomposition,
)


def _dirichlet(n: int, k: int, seed: int, alpha: float = 0.3) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.tensor(rng.dirichlet(np.full(k, alpha), size=n))


@pytest.mark.parametrize("norm", ["l1", "l2", "max"])
def test_ece_matches_torchmetrics_multiclass(norm):
    probs = _dirichlet(2000, 10, 0)
    labels = torch.tensor(np.random.default_rng(1).integers(0, 10, 2000))
    # edge cases: confidences exactly 1.0 and exactly on bin edges (k/15)
    probs[:20] = torch.nn.functional.one_hot(labels[:20], 10).double()
    for i, edge in enumerate([1 / 15, 2 / 15, 0.4, 7 / 15, 0.6]):
        row = torch.full((10,), (1 - edge) / 9, dtype=torch.float64)
        row[3] = edge
        probs[20 + i] = row if edge >= 0.1 else probs[20 + i]
    reference = MulticlassCalibrationError(num_classes=10, n_bins=15, norm=norm)
    expected = float(reference(probs.float(), labels))
    ours = calibration_error(probs.float(), labels, n_bins=15, norm=norm)
    assert ours == pytest.approx(expected, abs=1e-6)


def test_ece_matches_torchmetrics_binary():
    rng = np.random.default_rng(2)
    p = torch.tensor(rng.uniform(size=3000))
    p[:10] = 1.0
    p[10:20] = torch.tensor([k / 15 for k in range(10)], dtype=torch.float64)
    y = torch.tensor(rng.integers(0, 2, 3000))
    expected = float(BinaryCalibrationError(n_bins=15, norm="l1")(p.float(), y))
    assert binary_calibration_error(p.float(), y) == pytest.approx(expected, abs=1e-6)


def test_ece_hand_case_and_adaptive_ece():
    probs = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]], dtype=torch.float64)
    labels = torch.tensor([0, 1, 1, 1])
    # bins of width 1/15: 0.9 → bin 13, 0.8 → bin 12, 0.7 → bin 10, 0.6 → bin 9; each bin holds one point
    expected = (abs(1 - 0.9) + abs(0 - 0.8) + abs(1 - 0.7) + abs(0 - 0.6)) / 4
    assert calibration_error(probs, labels) == pytest.approx(expected, abs=1e-6)  # binned in float32 (torchmetrics)
    # adaptive with 2 bins: sorted confidences [0.6, 0.7 | 0.8, 0.9], accuracies [0, 1 | 0, 1]
    expected_adaptive = 0.5 * abs(0.5 - 0.65) + 0.5 * abs(0.5 - 0.85)
    assert adaptive_calibration_error(probs, labels, n_bins=2) == pytest.approx(expected_adaptive, abs=1e-12)


def test_ensemble_nll_stable_equals_naive():
    rng = np.random.default_rng(3)
    member = np.stack([rng.dirichlet(np.ones(5), size=400) for _ in range(7)])  # M x N x K
    labels = rng.integers(0, 5, 400)
    naive = -np.mean(np.log(member.mean(0)[np.arange(400), labels]))
    lp = torch.log(torch.tensor(member))
    assert ensemble_nll(lp, torch.tensor(labels)) == pytest.approx(naive, abs=1e-10)
    assert nll(torch.tensor(member).mean(0), torch.tensor(labels)) == pytest.approx(naive, abs=1e-10)
    # stability: log-probabilities far below float64's exp range still give a finite, exact answer
    tiny = torch.full((2, 1, 2), -2000.0, dtype=torch.float64)
    tiny[:, :, 1] = 0.0
    assert ensemble_nll(tiny, torch.tensor([0])) == pytest.approx(2000.0, abs=1e-9)


def test_brier_and_accuracy_match_hand_formula():
    probs = _dirichlet(500, 4, 4)
    labels = torch.tensor(np.random.default_rng(5).integers(0, 4, 500))
    p, y = probs.numpy(), labels.numpy()
    onehot = np.eye(4)[y]
    assert brier_score(probs, labels) == pytest.approx(np.mean(np.sum((p - onehot) ** 2, 1)), abs=1e-12)
    assert accuracy(probs, labels) == pytest.approx(np.mean(p.argmax(1) == y), abs=1e-12)


def test_auroc_aupr_fpr95_match_sklearn():
    rng = np.random.default_rng(6)
    s_in = np.round(rng.normal(0, 1, 700), 1)  # rounding creates ties
    s_out = np.round(rng.normal(1.2, 1, 300), 1)
    scores = np.concatenate([s_in, s_out])
    y = np.concatenate([np.zeros(700), np.ones(300)])
    t_in, t_out = torch.tensor(s_in), torch.tensor(s_out)
    assert auroc(t_in, t_out) == pytest.approx(roc_auc_score(y, scores), abs=1e-12)
    tm = float(BinaryAUROC()(torch.tensor(scores, dtype=torch.float32), torch.tensor(y).long()))
    assert auroc(t_in, t_out) == pytest.approx(tm, abs=1e-6)
    assert aupr(t_in, t_out) == pytest.approx(average_precision_score(y, scores), abs=1e-12)
    fpr, tpr, _ = roc_curve(y, scores, drop_intermediate=False)
    assert fpr_at_tpr(t_in, t_out, 0.95) == pytest.approx(fpr[np.argmax(tpr >= 0.95)], abs=1e-12)


def test_entropy_decomposition():
    rng = np.random.default_rng(7)
    member = np.stack([rng.dirichlet(np.ones(6) * 0.5, size=300) for _ in range(5)])
    parts = uncertainty_decomposition(torch.tensor(member))
    total = scipy.stats.entropy(member.mean(0), axis=1)
    aleatoric = scipy.stats.entropy(member, axis=2).mean(0)
    np.testing.assert_allclose(parts["total"].numpy(), total, atol=1e-10)
    np.testing.assert_allclose(parts["aleatoric"].numpy(), aleatoric, atol=1e-10)
    np.testing.assert_allclose((parts["aleatoric"] + parts["epistemic"]).numpy(), total, atol=1e-10)
    assert bool((parts["epistemic"] >= 0).all())
    same = torch.tensor(np.stack([member[0]] * 4))
    assert float(uncertainty_decomposition(same)["epistemic"].abs().max()) < 1e-12


def test_mixture_moments_against_monte_carlo_and_jensen():
    g = torch.Generator().manual_seed(8)
    means = torch.randn(4, 3, generator=g, dtype=torch.float64) * 2
    variances = torch.rand(4, 3, generator=g, dtype=torch.float64) + 0.2
    mu, var = mixture_moments(means, variances)
    s = 1_000_000
    comp = torch.randint(0, 4, (s, 3), generator=g)
    draws = means.gather(0, comp) + variances.gather(0, comp).sqrt() * torch.randn(
        s, 3, generator=g, dtype=torch.float64
    )
    mc_mean, mc_var = draws.mean(0), draws.var(0)
    # 4-sigma Monte Carlo bands: sd(mean) = sqrt(var/S); sd(var) ≈ sqrt((m4 - var²)/S)
    m4 = ((draws - mc_mean) ** 4).mean(0)
    assert bool(((mc_mean - mu).abs() <= 4 * (var / s).sqrt()).all())
    assert bool(((mc_var - var).abs() <= 4 * ((m4 - var**2) / s).sqrt()).all())
    y = torch.randn(3, generator=g, dtype=torch.float64)
    mix = gaussian_mixture_nll(means, variances, y)
    dens = scipy.stats.norm.pdf(y.numpy()[None], means.numpy(), np.sqrt(variances.numpy()))
    assert mix == pytest.approx(-np.mean(np.log(dens.mean(0))), abs=1e-10)
    member_nll = -scipy.stats.norm.logpdf(y.numpy()[None], means.numpy(), np.sqrt(variances.numpy())).mean()
    assert mix <= member_nll + 1e-12


def test_interval_coverage_against_scipy():
    g = torch.Generator().manual_seed(9)
    y = torch.randn(1000, generator=g, dtype=torch.float64)
    z = scipy.stats.norm.ppf(0.95)
    expected = float(np.mean(np.abs(y.numpy()) <= z))
    assert interval_coverage(torch.zeros(1000, dtype=torch.float64), torch.ones(1000, dtype=torch.float64), y, 0.9) == (
        pytest.approx(expected, abs=1e-12)
    )


def test_bad_inputs_raise_one_line_errors():
    with pytest.raises(InvalidInputError, match="apply softmax to logits first"):
        calibration_error(torch.tensor([[2.0, -1.0]]), torch.tensor([0]))
    with pytest.raises(InvalidInputError, match=r"must have shape \(M, N, K\)"):
        ensemble_nll(torch.zeros(3, 2), torch.tensor([0, 1, 1]))
    with pytest.raises(InvalidInputError, match="lie in"):
        brier_score(torch.tensor([[0.5, 0.5]]), torch.tensor([2]))
    with pytest.raises(InvalidInputError, match="OOD scores hold NaN"):
        auroc(torch.tensor([math.nan]), torch.tensor([1.0]))
