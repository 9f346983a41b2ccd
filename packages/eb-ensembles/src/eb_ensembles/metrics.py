"""Uncertainty metrics of reference §2.2, as pure functions over tensors.

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

import math

import torch

from eb_ensembles.checks import (
    InvalidInputError,
    check_labels,
    check_log_probabilities,
    check_ndim,
    check_probabilities,
)

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

_NORMS = ("l1", "l2", "max")


# ----------------------------------------------------------------------------------------------- classification
def average_probs(member_probs: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """The ensemble predictive ``p̄ = Σ_m w_m p_m``.

    Args:
        member_probs: ``(M, N, K)`` probabilities of each member.
        weights: ``(M,)`` non-negative weights summing to 1; uniform if ``None``.

    Returns:
        ``(N, K)`` averaged probabilities, same dtype.

    Raises:
        InvalidInputError: shapes do not match or the inputs are not probabilities.

    Example:
        >>> p = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])
        >>> average_probs(p).tolist()
        [[0.5, 0.5]]
    """
    check_ndim("member_probs", member_probs, 3, "(M, N, K)")
    check_probabilities("member_probs", member_probs)
    if weights is None:
        return member_probs.mean(0)
    check_ndim("weights", weights, 1, "(M,)")
    if weights.shape[0] != member_probs.shape[0]:
        raise InvalidInputError(
            f"`weights` has {weights.shape[0]} entries but there are {member_probs.shape[0]} members"
        )
    return torch.einsum("m,mnk->nk", weights.to(member_probs.dtype), member_probs)


def accuracy(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy of ``argmax p̄`` against integer ``labels``; ``probs`` is ``(N, K)``."""
    check_ndim("probs", probs, 2, "(N, K)")
    check_labels("labels", labels, probs.shape[0], probs.shape[1])
    return float((probs.argmax(-1) == labels).to(torch.float64).mean())


def nll(probs: torch.Tensor, labels: torch.Tensor, *, eps: float = 1e-12) -> float:
    """Mean negative log-likelihood ``-mean_i log p̄(y_i)`` of averaged ``(N, K)`` probabilities (clamped at ``eps``).

    Prefer :func:`ensemble_nll` when member log-probabilities are available: it never clamps.
    """
    check_ndim("probs", probs, 2, "(N, K)")
    check_probabilities("probs", probs)
    check_labels("labels", labels, probs.shape[0], probs.shape[1])
    picked = probs.gather(1, labels[:, None]).squeeze(1).clamp_min(eps)
    return float(-picked.to(torch.float64).log().mean())


def ensemble_nll(
    member_log_probs: torch.Tensor, labels: torch.Tensor, log_weights: torch.Tensor | None = None
) -> float:
    """Stable ensemble NLL: ``-mean_i logsumexp_m(log w_m + log p_m(y_i | x_i))``.

    Args:
        member_log_probs: ``(M, N, K)`` log-probabilities (e.g. ``log_softmax`` of each member's logits).
        labels: ``(N,)`` integer classes.
        log_weights: ``(M,)`` log-weights summing (after exp) to 1; uniform ``-log M`` if ``None``.

    Returns:
        The NLL in nats (float).

    Raises:
        InvalidInputError: shapes disagree, labels out of range.

    Example:
        >>> lp = torch.log(torch.tensor([[[0.9, 0.1]], [[0.5, 0.5]]]))
        >>> round(ensemble_nll(lp, torch.tensor([0])), 6) == round(-math.log(0.7), 6)
        True
    """
    check_ndim("member_log_probs", member_log_probs, 3, "(M, N, K)")
    m, n, k = member_log_probs.shape
    check_labels("labels", labels, n, k)
    check_log_probabilities("member_log_probs", member_log_probs)
    if log_weights is None:
        log_weights = torch.full((m,), -math.log(m), dtype=member_log_probs.dtype, device=member_log_probs.device)
    elif log_weights.shape != (m,):
        raise InvalidInputError(f"`log_weights` must have shape ({m},), got {tuple(log_weights.shape)}")
    picked = member_log_probs.gather(2, labels[None, :, None].expand(m, n, 1)).squeeze(2)  # M x N
    log_mix = torch.logsumexp(picked + log_weights[:, None].to(picked.dtype), dim=0)  # N
    return float(-log_mix.to(torch.float64).mean())


def brier_score(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """Brier score ``mean_i Σ_k (p̄_ik - 1[y_i=k])²`` (summed over classes, not divided by K)."""
    check_ndim("probs", probs, 2, "(N, K)")
    check_probabilities("probs", probs)
    check_labels("labels", labels, probs.shape[0], probs.shape[1])
    onehot = torch.nn.functional.one_hot(labels, probs.shape[1]).to(probs.dtype)
    return float(((probs - onehot) ** 2).sum(-1).to(torch.float64).mean())


def _binned(confidences: torch.Tensor, accuracies: torch.Tensor, n_bins: int):
    """Per-bin accuracy, confidence, proportion and count with torchmetrics' bucketing (n_bins + 1 buckets).

    Binning runs in float32, as torchmetrics does (it casts confidences with ``.float()``): a float64 confidence
    that sits on a bin edge (e.g. 0.4) lands in the same bin as there, because the float32 edge and the rounded
    confidence compare alike.
    """
    confidences = confidences.float()
    boundaries = torch.linspace(0, 1, n_bins + 1, dtype=confidences.dtype, device=confidences.device)
    index = torch.bucketize(confidences, boundaries, right=True) - 1  # conf == 1.0 lands in bucket n_bins
    size = n_bins + 1
    count = torch.zeros(size, dtype=confidences.dtype, device=confidences.device).scatter_add_(
        0, index, torch.ones_like(confidences)
    )
    conf_sum = torch.zeros_like(count).scatter_add_(0, index, confidences)
    acc_sum = torch.zeros_like(count).scatter_add_(0, index, accuracies.to(confidences.dtype))
    safe = count.clamp_min(1)
    return acc_sum / safe, conf_sum / safe, count / count.sum(), count


def _calibration_from(confidences: torch.Tensor, accuracies: torch.Tensor, n_bins: int, norm: str) -> float:
    if not isinstance(n_bins, int) or n_bins < 1:
        raise InvalidInputError(f"`n_bins` must be a positive integer, got {n_bins!r}")
    if norm not in _NORMS:
        raise InvalidInputError(f"`norm` must be one of {', '.join(_NORMS)}, got {norm!r}")
    acc, conf, prop, _ = _binned(confidences, accuracies, n_bins)
    gap = (acc - conf).abs()
    if norm == "l1":
        return float((gap * prop).sum())
    if norm == "max":
        return float(gap.max())
    return float(((gap**2) * prop).sum().sqrt())


def calibration_error(probs: torch.Tensor, labels: torch.Tensor, *, n_bins: int = 15, norm: str = "l1") -> float:
    """Top-label expected calibration error with torchmetrics' equal-width binning.

    ``norm="l1"`` is the ECE, ``"max"`` the MCE, ``"l2"`` the root of the proportion-weighted squared gaps.

    Args:
        probs: ``(N, K)`` probabilities (not logits).
        labels: ``(N,)`` integer classes.
        n_bins: number of equal-width bins on [0, 1].
        norm: ``"l1"``, ``"l2"`` or ``"max"``.

    Raises:
        InvalidInputError: bad shapes, non-probabilities, bad ``n_bins`` or ``norm``.

    Example:
        >>> calibration_error(torch.tensor([[0.75, 0.25], [0.75, 0.25]]), torch.tensor([0, 1]))
        0.25
    """
    check_ndim("probs", probs, 2, "(N, K)")
    check_probabilities("probs", probs)
    check_labels("labels", labels, probs.shape[0], probs.shape[1])
    confidences, predictions = probs.max(-1)
    return _calibration_from(confidences, predictions == labels, n_bins, norm)


def binary_calibration_error(
    positive_probs: torch.Tensor, labels: torch.Tensor, *, n_bins: int = 15, norm: str = "l1"
) -> float:
    """Calibration error of the positive-class probability (torchmetrics' ``BinaryCalibrationError`` convention).

    Args:
        positive_probs: ``(N,)`` probability of class 1.
        labels: ``(N,)`` in {0, 1}.
    """
    check_ndim("positive_probs", positive_probs, 1, "(N,)")
    check_probabilities("positive_probs", torch.stack([positive_probs, 1 - positive_probs], -1))
    check_labels("labels", labels, positive_probs.shape[0], 2)
    return _calibration_from(positive_probs, labels == 1, n_bins, norm)


def adaptive_calibration_error(probs: torch.Tensor, labels: torch.Tensor, *, n_bins: int = 15) -> float:
    """Adaptive (equal-mass) top-label ECE: sort confidences, split into ``n_bins`` groups of (nearly) equal size.

    Group sizes follow ``torch.tensor_split`` (the first ``N mod n_bins`` groups hold one more point), and the
    error is ``Σ_b (n_b / N) |acc_b - conf_b|``.
    """
    check_ndim("probs", probs, 2, "(N, K)")
    check_probabilities("probs", probs)
    check_labels("labels", labels, probs.shape[0], probs.shape[1])
    if not isinstance(n_bins, int) or n_bins < 1:
        raise InvalidInputError(f"`n_bins` must be a positive integer, got {n_bins!r}")
    confidences, predictions = probs.max(-1)
    order = confidences.argsort(stable=True)
    conf_sorted = confidences[order].to(torch.float64)
    acc_sorted = (predictions == labels)[order].to(torch.float64)
    total = 0.0
    n = confidences.shape[0]
    for conf_b, acc_b in zip(conf_sorted.tensor_split(n_bins), acc_sorted.tensor_split(n_bins), strict=True):
        if conf_b.numel():
            total += conf_b.numel() / n * abs(float(acc_b.mean() - conf_b.mean()))
    return total


def reliability_bins(probs: torch.Tensor, labels: torch.Tensor, *, n_bins: int = 15) -> dict[str, list[float]]:
    """Per-bin accuracy, mean confidence and count (the last bucket holds confidences equal to 1.0), for plots."""
    check_ndim("probs", probs, 2, "(N, K)")
    check_labels("labels", labels, probs.shape[0], probs.shape[1])
    confidences, predictions = probs.max(-1)
    acc, conf, _, count = _binned(confidences, predictions == labels, n_bins)
    edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64)
    return {
        "lower": edges.tolist(),
        "accuracy": acc.tolist(),
        "confidence": conf.tolist(),
        "count": count.tolist(),
    }


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Shannon entropy in nats over the last dimension (``0 log 0 = 0``); returns ``probs.shape[:-1]``."""
    return -torch.special.xlogy(probs, probs).sum(-1)


def uncertainty_decomposition(member_probs: torch.Tensor) -> dict[str, torch.Tensor]:
    """Total = aleatoric + epistemic decomposition of the ensemble's predictive entropy, per point.

    ``total = H[p̄]``, ``aleatoric = mean_m H[p_m]`` (expected entropy), ``epistemic = total - aleatoric`` (the
    mutual information between the label and the member index; ≥ 0 by concavity of H). Also the variation ratio
    ``1 - (fraction of members voting for the modal class)`` and the disagreement with the ensemble's argmax.

    Args:
        member_probs: ``(M, N, K)`` probabilities.

    Returns:
        dict of ``(N,)`` tensors: ``total``, ``aleatoric``, ``epistemic``, ``variation_ratio``, ``disagreement``.
    """
    check_ndim("member_probs", member_probs, 3, "(M, N, K)")
    check_probabilities("member_probs", member_probs)
    mean = member_probs.mean(0)
    total = entropy(mean)
    aleatoric = entropy(member_probs).mean(0)
    votes = member_probs.argmax(-1)  # M x N
    k = member_probs.shape[-1]
    counts = torch.nn.functional.one_hot(votes, k).sum(0)  # N x K
    m = member_probs.shape[0]
    variation_ratio = 1 - counts.max(-1).values.to(mean.dtype) / m
    disagreement = (votes != mean.argmax(-1)[None]).to(mean.dtype).mean(0)
    return {
        "total": total,
        "aleatoric": aleatoric,
        "epistemic": (total - aleatoric).clamp_min(0.0),
        "variation_ratio": variation_ratio,
        "disagreement": disagreement,
    }


def agreement(probs: torch.Tensor, reference_probs: torch.Tensor) -> float:
    """Top-1 agreement rate between two ``(N, K)`` predictives (e.g. against an HMC reference)."""
    if probs.shape != reference_probs.shape:
        raise InvalidInputError(
            f"`probs` {tuple(probs.shape)} and `reference_probs` {tuple(reference_probs.shape)} differ"
        )
    check_probabilities("probs", probs)
    check_probabilities("reference_probs", reference_probs)
    return float((probs.argmax(-1) == reference_probs.argmax(-1)).to(torch.float64).mean())


def total_variation(probs: torch.Tensor, reference_probs: torch.Tensor) -> float:
    """Mean total variation ``½ ‖p - p_ref‖₁`` over points, between two ``(N, K)`` predictives (probabilities)."""
    if probs.shape != reference_probs.shape:
        raise InvalidInputError(
            f"`probs` {tuple(probs.shape)} and `reference_probs` {tuple(reference_probs.shape)} differ"
        )
    check_probabilities("probs", probs)
    check_probabilities("reference_probs", reference_probs)
    return float(0.5 * (probs - reference_probs).abs().sum(-1).to(torch.float64).mean())


# ---------------------------------------------------------------------------------------------------------- OOD
def _check_scores(scores_in: torch.Tensor, scores_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    check_ndim("scores_in", scores_in, 1, "(N_in,)")
    check_ndim("scores_out", scores_out, 1, "(N_out,)")
    if scores_in.numel() == 0 or scores_out.numel() == 0:
        raise InvalidInputError("OOD metrics need at least one in-distribution and one OOD score")
    scores = torch.cat([scores_in, scores_out]).to(torch.float64).cpu()
    is_out = torch.cat([torch.zeros(scores_in.numel()), torch.ones(scores_out.numel())]).to(torch.float64)
    if not bool(torch.isfinite(scores).all()):
        raise InvalidInputError("OOD scores hold NaN or infinite values")
    return scores, is_out


def auroc(scores_in: torch.Tensor, scores_out: torch.Tensor) -> float:
    """Area under the ROC curve for telling OOD (positive, higher score) from in-distribution points.

    Computed as the Mann-Whitney statistic with mid-ranks for ties, so ties count one half.
    """
    scores, is_out = _check_scores(scores_in, scores_out)
    values, inverse, counts = torch.unique(scores, return_inverse=True, return_counts=True)
    # mid-rank of each distinct value: ranks are 1-based, a tie group of size c starting after s gets s + (c+1)/2
    starts = torch.cumsum(counts, 0) - counts
    midrank = starts.to(torch.float64) + (counts.to(torch.float64) + 1) / 2
    ranks = midrank[inverse]
    n_out = float(is_out.sum())
    n_in = float(is_out.numel() - n_out)
    rank_sum = float((ranks * is_out).sum())
    return (rank_sum - n_out * (n_out + 1) / 2) / (n_out * n_in)


def _curve(scores: torch.Tensor, is_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cumulative true/false positives at each distinct threshold, thresholds from high to low."""
    order = torch.argsort(scores, descending=True, stable=True)
    s, t = scores[order], is_out[order]
    tps, fps = torch.cumsum(t, 0), torch.cumsum(1 - t, 0)
    last_of_group = torch.ones_like(s, dtype=torch.bool)
    last_of_group[:-1] = s[1:] != s[:-1]
    return tps[last_of_group], fps[last_of_group]


def aupr(scores_in: torch.Tensor, scores_out: torch.Tensor) -> float:
    """Area under the precision-recall curve with OOD as positives, as average precision ``Σ (R_n - R_{n-1}) P_n``."""
    scores, is_out = _check_scores(scores_in, scores_out)
    tps, fps = _curve(scores, is_out)
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    previous = torch.cat([torch.zeros(1, dtype=recall.dtype), recall[:-1]])
    return float(((recall - previous) * precision).sum())


def fpr_at_tpr(scores_in: torch.Tensor, scores_out: torch.Tensor, tpr: float = 0.95) -> float:
    """False-positive rate at the first threshold whose true-positive rate reaches ``tpr`` (FPR95 by default)."""
    scores, is_out = _check_scores(scores_in, scores_out)
    tps, fps = _curve(scores, is_out)
    tpr_curve = tps / tps[-1]
    first = int(torch.nonzero(tpr_curve >= tpr - 1e-12)[0])
    return float(fps[first] / fps[-1]) if float(fps[-1]) > 0 else 0.0


def ood_metrics(scores_in: torch.Tensor, scores_out: torch.Tensor) -> dict[str, float]:
    """``{"auroc", "aupr", "fpr95"}`` for one OOD score."""
    return {
        "auroc": auroc(scores_in, scores_out),
        "aupr": aupr(scores_in, scores_out),
        "fpr95": fpr_at_tpr(scores_in, scores_out, 0.95),
    }


def classification_metrics(
    member_probs: torch.Tensor, labels: torch.Tensor, *, member_log_probs: torch.Tensor | None = None, n_bins: int = 15
) -> dict[str, float]:
    """The standard in-distribution summary of an ensemble: acc, nll, brier, ece, aece, mce and mean entropies.

    Args:
        member_probs: ``(M, N, K)`` probabilities.
        labels: ``(N,)`` classes.
        member_log_probs: ``(M, N, K)`` log-probabilities for the stable NLL; ``log(member_probs)`` if ``None``.
    """
    probs = average_probs(member_probs)
    log_probs = member_log_probs if member_log_probs is not None else torch.log(member_probs)
    parts = uncertainty_decomposition(member_probs)
    return {
        "acc": accuracy(probs, labels),
        "nll": ensemble_nll(log_probs, labels),
        "brier": brier_score(probs, labels),
        "ece": calibration_error(probs, labels, n_bins=n_bins),
        "aece": adaptive_calibration_error(probs, labels, n_bins=n_bins),
        "mce": calibration_error(probs, labels, n_bins=n_bins, norm="max"),
        "entropy": float(parts["total"].to(torch.float64).mean()),
        "expected_entropy": float(parts["aleatoric"].to(torch.float64).mean()),
        "mutual_information": float(parts["epistemic"].to(torch.float64).mean()),
    }


# --------------------------------------------------------------------------------------------------- regression
def _check_gaussians(means: torch.Tensor, variances: torch.Tensor) -> None:
    check_ndim("means", means, 2, "(M, N)")
    if variances.shape != means.shape:
        raise InvalidInputError(f"`variances` {tuple(variances.shape)} must match `means` {tuple(means.shape)}")
    if not bool(torch.isfinite(variances).all()) or not bool((variances > 0).all()):
        raise InvalidInputError(
            f"`variances` must be finite and > 0, got min {float(variances.min()):.4g}; pass variances, not "
            "log-variances or signed values"
        )


def mixture_moments(means: torch.Tensor, variances: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of the uniform Gaussian mixture: ``μ* = mean μ_m``, ``σ*² = mean(σ_m² + μ_m²) - μ*²``.

    Args:
        means, variances: ``(M, N)`` member means and variances.

    Returns:
        ``(N,)`` mean and ``(N,)`` variance.
    """
    _check_gaussians(means, variances)
    mu = means.mean(0)
    return mu, (variances + means**2).mean(0) - mu**2


def gaussian_nll(mean: torch.Tensor, variance: torch.Tensor, targets: torch.Tensor) -> float:
    """Mean Gaussian NLL ``½ log(2π σ²) + (y-μ)² / (2σ²)`` over ``(N,)`` points, in nats.

    Raises:
        InvalidInputError: shapes differ, or a variance is not a finite positive number (e.g. a standard
            deviation's negative, or a log-variance passed by mistake).
    """
    if not (mean.shape == variance.shape == targets.shape):
        raise InvalidInputError(
            f"`mean` {tuple(mean.shape)}, `variance` {tuple(variance.shape)} and `targets` {tuple(targets.shape)} "
            "must have the same shape"
        )
    if not bool(torch.isfinite(variance).all()) or not bool((variance > 0).all()):
        raise InvalidInputError(
            f"`variance` must be finite and > 0, got min {float(variance.min()):.4g}; pass variances, not "
            "log-variances or signed values"
        )
    value = 0.5 * (torch.log(2 * math.pi * variance) + (targets - mean) ** 2 / variance)
    return float(value.to(torch.float64).mean())


def gaussian_mixture_nll(means: torch.Tensor, variances: torch.Tensor, targets: torch.Tensor) -> float:
    """Exact NLL of the uniform Gaussian mixture: ``-mean_i [logsumexp_m log N(y_i; μ_m, σ_m²) - log M]``."""
    _check_gaussians(means, variances)
    log_dens = -0.5 * (torch.log(2 * math.pi * variances) + (targets[None] - means) ** 2 / variances)
    return float(-(torch.logsumexp(log_dens, 0) - math.log(means.shape[0])).to(torch.float64).mean())


def rmse(mean: torch.Tensor, targets: torch.Tensor) -> float:
    """Root mean squared error of a ``(N,)`` point prediction."""
    return float(((mean - targets) ** 2).to(torch.float64).mean().sqrt())


def interval_coverage(mean: torch.Tensor, variance: torch.Tensor, targets: torch.Tensor, level: float) -> float:
    """PICP: fraction of targets inside the central ``level`` interval of the Gaussian ``N(mean, variance)``."""
    if not 0 < level < 1:
        raise InvalidInputError(f"`level` must be in (0, 1), got {level}")
    z = float(torch.special.ndtri(torch.tensor((1 + level) / 2, dtype=torch.float64)))
    inside = (targets - mean).abs() <= z * variance.sqrt()
    return float(inside.to(torch.float64).mean())


def regression_metrics(means: torch.Tensor, variances: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """RMSE of the mixture mean, exact mixture NLL, moment-matched Gaussian NLL and PICP at 50/90/95 %."""
    mu, var = mixture_moments(means, variances)
    out = {
        "rmse": rmse(mu, targets),
        "nll": gaussian_mixture_nll(means, variances, targets),
        "nll_moment_matched": gaussian_nll(mu, var, targets),
    }
    for level in (0.5, 0.9, 0.95):
        out[f"coverage_{int(level * 100)}"] = interval_coverage(mu, var, targets, level)
    return out
