"""Out-of-distribution detection from scores ("higher means more OOD"; OOD points are the positives): AUROC, AUPR and
FPR at a TPR (conventions: :mod:`eb_ensembles.metrics`)."""

from __future__ import annotations

import torch

from eb_ensembles.checks import InvalidInputError, check_ndim

__all__ = ["aupr", "auroc", "fpr_at_tpr", "ood_metrics"]


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
