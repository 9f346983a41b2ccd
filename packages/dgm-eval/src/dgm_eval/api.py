"""The Python API behind the CLI: metric names, up-front checks and :func:`compute_metrics`, all driven by the
metric registry (:mod:`dgm_eval.metric_registry`); features through the cache are in :mod:`dgm_eval.features`.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> res = compute_metrics(rng.normal(size=(200, 8)), rng.normal(size=(200, 8)), metrics=["fd", "prdc"])
    >>> sorted(res)
    ['coverage', 'density', 'fd', 'precision', 'recall']
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

from dgm_eval.metric_registry import (
    DEFAULT_METRICS,
    METRIC_NAMES,
    REGISTRY,
    MetricInputs,
    MetricSettings,
)
from dgm_eval.metrics import GaussianStats, defaults
from sixlab_shared import UserError

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_METRICS",
    "METRIC_NAMES",
    "MetricError",
    "check_metric_inputs",
    "compute_metrics",
    "parse_metrics",
    "scalar_results",
]


class MetricError(UserError):
    """A metric request that cannot be served: unknown name, missing test set, too few samples."""


def parse_metrics(spec: str | Iterable[str] | None) -> tuple[str, ...]:
    """Metric names from ``"fd,kd prdc"`` or a list; ``"all"`` gives every metric; dashes read as underscores.

    Raises:
        MetricError: an unknown name (typos are errors, never skipped; the message lists the registry's names)
            or an empty list.
    """
    if spec is None:
        return DEFAULT_METRICS
    items = re.split(r"[,\s]+", spec) if isinstance(spec, str) else list(spec)
    names = [item.strip().lower().replace("-", "_") for item in items if item and item.strip()]
    if not names:
        raise MetricError("no metric named; pass --metrics with one or more of: " + ", ".join(METRIC_NAMES))
    if "all" in names:
        return METRIC_NAMES
    unknown = [name for name in names if name not in REGISTRY]
    if unknown:
        raise MetricError(f"unknown metric(s) {', '.join(map(repr, unknown))}; choose from: {', '.join(METRIC_NAMES)}")
    return tuple(name for name in METRIC_NAMES if name in names)


def check_metric_inputs(
    metrics: Sequence[str],
    *,
    n_ref: int | None,
    n_gen: int,
    n_test: int | None = None,
    nearest_k: int = defaults.NEAREST_K,
    reduced_n: int = defaults.REDUCED_N,
    kd_subset_size: int = defaults.KD_SUBSET_SIZE,
    ref_is_stats: bool = False,
    has_probs: bool = False,
) -> None:
    """Raise :class:`MetricError` for any requested metric that these sample counts cannot serve.

    Called before any feature is computed (and again on the features, after unreadable images were dropped), so
    a doomed run stops with one clear line. ``n_ref`` is None when the reference is saved statistics.
    """
    specs = [REGISTRY[m] for m in metrics]
    if n_test is None:
        missing = [s.name for s in specs if s.needs_test]
        if missing:
            raise MetricError(f"metric(s) {', '.join(missing)} need held-out real images; pass --test PATH")
    if ref_is_stats:
        bad = [s.name for s in specs if not s.works_from_stats]
        if bad:
            served = sorted(s.name for s in REGISTRY.values() if s.works_from_stats)
            raise MetricError(
                f"the reference is saved statistics, which serve only {', '.join(served)}; "
                f"drop {', '.join(bad)} or pass reference images/features"
            )
    if not has_probs and any(s.needs_probs for s in specs):
        raise MetricError("metric 'is' needs class probabilities: use --encoder inception")
    settings = MetricSettings(nearest_k=nearest_k, reduced_n=reduced_n, kd_subset_size=kd_subset_size)
    have = {
        "reference": n_ref or 0,
        "generated": n_gen,
        "test": n_test or 0,
        "prdc": min(reduced_n, n_ref or 0, n_gen),
    }
    for spec in specs:
        for which, least in spec.min_samples(settings):
            if which == "reference" and ref_is_stats:
                continue
            if have[which] < least:
                label = f"reference/generated (after the cap of {reduced_n})" if which == "prdc" else which
                raise MetricError(f"metric {spec.name!r} needs at least {least} {label} samples, got {have[which]}")


def compute_metrics(
    ref_feats: Any,
    gen_feats: Any,
    metrics: str | Iterable[str] | None = None,
    test_feats: Any = None,
    seed: int = 0,
    *,
    nearest_k: int = defaults.NEAREST_K,
    reduced_n: int = defaults.REDUCED_N,
    splits: int = defaults.IS_SPLITS,
    kd_subset_size: int = defaults.KD_SUBSET_SIZE,
    kd_num_subsets: int = defaults.KD_NUM_SUBSETS,
    gen_probs: Any = None,
    gen_labels: Any = None,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Compute the named metrics of one generated set against the reference (and test) features.

    Args:
        ref_feats: ``(N_R, D)`` reference (training) features, numpy or torch; or saved statistics
            (:class:`~dgm_eval.metrics.GaussianStats`, a path) for ``fd``, ``fd_eff``, ``fd_infinity``.
        gen_feats: ``(N_G, D)`` generated features.
        metrics: names from :data:`METRIC_NAMES` (list or comma-separated); default :data:`DEFAULT_METRICS`.
        test_feats: ``(N_T, D)`` held-out real features (for ``ct*`` and ``fls*``).
        seed: seeds every random step (subsets, splits, KMeans, PCA).
        nearest_k: k of prdc, realism. reduced_n: prdc's subsample cap per set and FLS's cap.
        splits: IS splits. kd_subset_size, kd_num_subsets: KD subsets.
        gen_probs: ``(N_G, C)`` class probabilities of the generated images (``is``).
        gen_labels: ``(N_G,)`` class labels of the generated images (``vendi`` per class; flat sets: one class).
        device: where to compute (default: where the features are; CPU for numpy).

    Returns:
        ``{result key: value}``: floats for scalar results (``fd``, ``kd_mean``, ``kd_std``, ``precision`` …),
        plus ``realism`` (``(N_G,)`` array) and ``vendi_per_class`` (dict) where requested.

    Raises:
        MetricError: unknown metric, missing test set, too few samples.
        FeatureError: bad shapes, NaN/inf, mismatched dimensions.
    """
    names = parse_metrics(metrics)
    ref_is_stats = isinstance(ref_feats, (GaussianStats, str, os.PathLike))
    check_metric_inputs(
        names,
        n_ref=None if ref_is_stats else len(ref_feats),
        n_gen=len(gen_feats),
        n_test=None if test_feats is None else len(test_feats),
        nearest_k=nearest_k,
        reduced_n=reduced_n,
        kd_subset_size=kd_subset_size,
        ref_is_stats=ref_is_stats,
        has_probs=gen_probs is not None,
    )
    inputs = MetricInputs(
        ref=ref_feats,
        gen=gen_feats,
        test=test_feats,
        settings=MetricSettings(
            seed=seed,
            nearest_k=nearest_k,
            reduced_n=reduced_n,
            splits=splits,
            kd_subset_size=kd_subset_size,
            kd_num_subsets=kd_num_subsets,
        ),
        gen_probs=gen_probs,
        gen_labels=gen_labels,
        device=device,
    )
    out: dict[str, Any] = {}
    for name in names:
        logger.info("computing %s", name)
        out.update(REGISTRY[name].function(inputs))
    return out


def scalar_results(results: dict[str, Any]) -> dict[str, float]:
    """The scalar entries of :func:`compute_metrics`'s result (what the table and ``results.csv`` show)."""
    return {
        key: float(value)
        for key, value in results.items()
        if isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool)
    }
