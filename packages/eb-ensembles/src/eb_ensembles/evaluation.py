"""Evaluate any method's predictive samples on a dataset: in-distribution, shift ("-C") and OOD metrics."""

from __future__ import annotations

from collections.abc import Callable

import torch

from eb_ensembles.checks import InvalidInputError
from eb_ensembles.data import CORRUPTIONS, OOD_KINDS, Dataset, corrupt, make_ood
from eb_ensembles.metrics import (
    average_probs,
    classification_metrics,
    ood_metrics,
    regression_metrics,
    uncertainty_decomposition,
)
from sixlab_shared import derive_seed

__all__ = ["OOD_SCORES", "evaluate_classification", "evaluate_regression", "ood_scores"]

OOD_SCORES = ("max_prob", "entropy", "mutual_information")
Samples = Callable[[torch.Tensor], torch.Tensor]


def ood_scores(member_probs: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-point OOD scores (higher = more OOD): ``1 - max p̄``, ``H[p̄]`` and the mutual information."""
    parts = uncertainty_decomposition(member_probs)
    return {
        "max_prob": 1 - average_probs(member_probs).max(-1).values,
        "entropy": parts["total"],
        "mutual_information": parts["epistemic"],
    }


def evaluate_classification(
    samples: Samples,
    dataset: Dataset,
    *,
    seed: int = 0,
    corruptions: tuple[str, ...] = CORRUPTIONS,
    severities: tuple[int, ...] = (1, 2, 3, 4, 5),
    ood_kinds: tuple[str, ...] = OOD_KINDS,
    n_ood: int = 500,
) -> dict:
    """All classification metrics of one method.

    Args:
        samples: maps ``(N, D)`` inputs to ``(S, N, K)`` probabilities (ensemble members or posterior samples).
        dataset: a classification :class:`~eb_ensembles.data.Dataset` (its ``ood`` entries are evaluated too).
        seed: seed for corruptions and synthetic OOD sets.
        corruptions, severities: the shift grid (empty to skip).
        ood_kinds: synthetic OOD sets added to ``dataset.ood`` (``uniform``, ``far``).
        n_ood: size of each synthetic OOD set.

    Returns:
        ``{"test": {...}, "shift": {kind: {severity: {acc, nll, ece, brier}}}, "shift_mean": {severity: {...}},
        "ood": {set: {score: {auroc, aupr, fpr95}}}}``.

    Raises:
        InvalidInputError: a regression dataset.
    """
    if dataset.task != "classification":
        raise InvalidInputError(f"dataset {dataset.name!r} is a regression set; use evaluate_regression")
    test_probs = samples(dataset.x_test)
    result: dict = {"test": classification_metrics(test_probs, dataset.y_test)}
    result["members"] = int(test_probs.shape[0])
    shift: dict = {}
    for kind in corruptions:
        shift[kind] = {}
        for severity in severities:
            xc = corrupt(dataset.x_test, kind, severity, derive_seed(seed, "corrupt", kind, severity), dataset.shape)
            m = classification_metrics(samples(xc), dataset.y_test)
            shift[kind][str(severity)] = {k: m[k] for k in ("acc", "nll", "ece", "brier")}
    result["shift"] = shift
    if corruptions:
        result["shift_mean"] = {
            str(s): {k: sum(shift[c][str(s)][k] for c in corruptions) / len(corruptions) for k in ("acc", "nll", "ece")}
            for s in severities
        }
    ood_sets = dict(dataset.ood)
    for kind in ood_kinds:
        ood_sets[kind] = make_ood(kind, dataset.x_train, n_ood, derive_seed(seed, "ood", kind))
    in_scores = ood_scores(test_probs)
    result["ood"] = {}
    for name, x_ood in ood_sets.items():
        out_scores = ood_scores(samples(x_ood))
        result["ood"][name] = {
            score: ood_metrics(in_scores[score], out_scores[score])
            for score in OOD_SCORES
            if not (score == "mutual_information" and test_probs.shape[0] == 1)  # MI ≡ 0 for one sample
        }
    return result


def evaluate_regression(samples: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]], dataset: Dataset) -> dict:
    """RMSE, mixture NLL and coverage on the test split; ``samples`` maps inputs to ``(S, N)`` means, variances."""
    if dataset.task != "regression":
        raise InvalidInputError(f"dataset {dataset.name!r} is a classification set; use evaluate_classification")
    means, variances = samples(dataset.x_test)
    return {"test": regression_metrics(means, variances, dataset.y_test), "members": int(means.shape[0])}
