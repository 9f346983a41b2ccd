"""Uncertainty metrics of reference §2.2, as pure functions over tensors, one module per concept.

:mod:`.classification` (probability average, accuracy, NLL, Brier, summary), :mod:`.calibration` (ECE, adaptive ECE,
reliability bins), :mod:`.uncertainty` (entropy decomposition, agreement and total variation against a reference),
:mod:`.ood` (AUROC, AUPR, FPR95), :mod:`.regression` (Gaussian mixtures, NLL, RMSE, coverage). Everything is
re-exported here: ``from eb_ensembles.metrics import ...`` is the public path.

Conventions (fixed here, stated once):

* Member predictions are ``(M, N, K)``: M members, N points, K classes. The ensemble predictive is the
  **probability** average ``p̄ = Σ_m w_m p_m`` (uniform ``w_m = 1/M`` unless weights are given).
* NLL is ``-mean_i log p̄(y_i | x_i)`` in nats, computed as ``-logsumexp_m(log w_m + log p_m(y_i))``.
* Brier is ``mean_i Σ_k (p̄_ik - 1[y_i = k])²``: summed over classes, **not** divided by K (range [0, 2]).
* ECE is top-label, 15 equal-width bins with torchmetrics' binning: bin j holds confidences in
  ``[b_j, b_{j+1})`` and a confidence of exactly 1.0 gets its own last bucket (``bucketize(right=True) - 1``).
* Entropies are in nats. OOD scores are "higher means more out-of-distribution"; OOD points are the positives.
"""

from __future__ import annotations

from eb_ensembles.metrics.calibration import (
    adaptive_calibration_error,
    binary_calibration_error,
    calibration_error,
    reliability_bins,
)
from eb_ensembles.metrics.classification import (
    accuracy,
    average_probs,
    brier_score,
    classification_metrics,
    ensemble_nll,
    nll,
)
from eb_ensembles.metrics.ood import aupr, auroc, fpr_at_tpr, ood_metrics
from eb_ensembles.metrics.regression import (
    gaussian_mixture_nll,
    gaussian_nll,
    interval_coverage,
    mixture_moments,
    regression_metrics,
    rmse,
)
from eb_ensembles.metrics.uncertainty import agreement, entropy, total_variation, uncertainty_decomposition

__all__ = [
    "accuracy",
    "adaptive_calibration_error",
    "agreement",
    "aupr",
    "auroc",
    "average_probs",
    "binary_calibration_error",
    "brier_score",
    "calibration_error",
    "classification_metrics",
    "ensemble_nll",
    "entropy",
    "fpr_at_tpr",
    "gaussian_mixture_nll",
    "gaussian_nll",
    "interval_coverage",
    "mixture_moments",
    "nll",
    "ood_metrics",
    "regression_metrics",
    "reliability_bins",
    "rmse",
    "total_variation",
    "uncertainty_decomposition",
]
