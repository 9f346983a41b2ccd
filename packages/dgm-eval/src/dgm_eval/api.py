"""The Python API behind the CLI: metric names, up-front checks and :func:`compute_metrics` (features through
the cache are in :mod:`dgm_eval.features`).

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> res = compute_metrics(rng.normal(size=(200, 8)), rng.normal(size=(200, 8)), metrics=["fd", "prdc"])
    >>> sorted(res)
    ['coverage', 'density', 'fd', 'precision', 'recall']
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

from dgm_eval.metrics import (
    GaussianStats,
    authpct,
    ct,
    ct_modified,
    ct_test,
    fd_infinity,
    fls,
    fls_overfit,
    frechet_distance,
    frechet_distance_eff,
    inception_score,
    kernel_distance,
    prdc,
    realism,
    sw_approx,
    vendi_per_class,
)
from sixlab_shared import UserError

logger = logging.getLogger(__name__)

#: every metric name ``--metrics`` accepts, in the order results are reported.
METRIC_NAMES: tuple[str, ...] = (
    "fd",
    "fd_eff",
    "fd_infinity",
    "kd",
    "prdc",
    "realism",
    "is",
    "vendi",
    "authpct",
    "sw_approx",
    "ct",
    "ct_test",
    "ct_modified",
    "fls",
    "fls_overfit",
)
#: metrics computed when none are named (none of them needs a test set).
DEFAULT_METRICS: tuple[str, ...] = ("fd", "fd_infinity", "kd", "prdc", "vendi", "authpct", "sw_approx")
#: metrics that need held-out real data (``--test``).
NEEDS_TEST: frozenset[str] = frozenset({"ct", "ct_test", "ct_modified", "fls", "fls_overfit"})
#: metrics that work from the reference set's saved mean and covariance alone.
STATS_ONLY_OK: frozenset[str] = frozenset({"fd", "fd_eff", "fd_infinity"})
#: result keys of each metric (in the results table and files).
RESULT_KEYS: dict[str, tuple[str, ...]] = {
    "kd": ("kd_mean", "kd_std"),
    "prdc": ("precision", "recall", "density", "coverage"),
    "is": ("is_mean", "is_std"),
    "realism": ("realism_mean",),
}


class MetricError(UserError):
    """A metric request that cannot be served: unknown name, missing test set, too few samples."""


def parse_metrics(spec: str | Iterable[str] | None) -> tuple[str, ...]:
    """Metric names from ``"fd,kd prdc"`` or a list; ``"all"`` gives every metric; dashes read as underscores.

    Raises:
        MetricError: an unknown name (typos are errors, never skipped) or an empty list.
    """
    if spec is None:
        return DEFAULT_METRICS
    items = re.split(r"[,\s]+", spec) if isinstance(spec, str) else list(spec)
    names = [item.strip().lower().replace("-", "_") for item in items if item and item.strip()]
    if not names:
        raise MetricError("no metric named; pass --metrics with one or more of: " + ", ".join(METRIC_NAMES))
    if "all" in names:
        return METRIC_NAMES
    unknown = [name for name in names if name not in METRIC_NAMES]
    if unknown:
        raise MetricError(f"unknown metric(s) {', '.join(map(repr, unknown))}; choose from: {', '.join(METRIC_NAMES)}")
    return tuple(name for name in METRIC_NAMES if name in names)


def check_metric_inputs(
    metrics: Sequence[str],
    *,
    n_ref: int | None,
    n_gen: int,
    n_test: int | None = None,
    nearest_k: int = 5,
    reduced_n: int = 10000,
    kd_subset_size: int = 1000,
    ref_is_stats: bool = False,
    has_probs: bool = False,
) -> None:
    """Raise :class:`MetricError` for any requested metric that these sample counts cannot serve.

    Called before any feature is computed, so a doomed run stops at once with one clear line.
    """
    if n_test is None:
        missing = [m for m in metrics if m in NEEDS_TEST]
        if missing:
            raise MetricError(f"metric(s) {', '.join(missing)} need held-out real images; pass --test PATH")
    if ref_is_stats:
        bad = [m for m in metrics if m not in STATS_ONLY_OK]
        if bad:
            raise MetricError(
                f"the reference is saved statistics, which serve only {', '.join(sorted(STATS_ONLY_OK))}; "
                f"drop {', '.join(bad)} or pass reference images/features"
            )
    need: list[tuple[str, str, int, int]] = []  # (metric, set, have, need)
    for m in metrics:
        if m in {"fd", "fd_eff"}:
            need.append((m, "generated", n_gen, 2))
            if n_ref is not None:
                need.append((m, "reference", n_ref, 2))
        elif m == "fd_infinity":
            need.append((m, "generated", n_gen, 4))
        elif m == "kd":
            need += [(m, "reference", n_ref or 0, 2), (m, "generated", n_gen, 2)]
        elif m in {"prdc", "realism"}:
            n = min(reduced_n, n_ref or 0, n_gen)
            need.append((m, f"reference/generated (after the cap of {reduced_n})", n, nearest_k + 1))
        elif m == "is" and not has_probs:
            raise MetricError("metric 'is' needs class probabilities: use --encoder inception")
        elif m == "authpct":
            need.append((m, "reference", n_ref or 0, 2))
        elif m == "ct":  # a cell counts only with more than 20 generated samples
            need += [(m, "reference", n_ref or 0, 3), (m, "generated", n_gen, 21), (m, "test", n_test or 0, 2)]
        elif m == "ct_modified":  # reference and generated swap roles
            need += [(m, "reference", n_ref or 0, 21), (m, "generated", n_gen, 3), (m, "test", n_test or 0, 2)]
        elif m == "ct_test":
            need += [(m, "test", n_test or 0, 6), (m, "generated", n_gen, 21)]
        elif m in {"fls", "fls_overfit"}:
            need += [(m, "reference", n_ref or 0, 2), (m, "test", n_test or 0, 1)]
    for metric, which, have, least in need:
        if have < least:
            raise MetricError(f"metric {metric!r} needs at least {least} {which} samples, got {have}")


def _to_numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, np.float64)


def _subsample(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    return x if x.shape[0] <= n else x[np.sort(rng.choice(x.shape[0], n, replace=False))]


def compute_metrics(
    ref_feats: Any,
    gen_feats: Any,
    metrics: str | Iterable[str] | None = None,
    test_feats: Any = None,
    seed: int = 0,
    *,
    nearest_k: int = 5,
    reduced_n: int = 10000,
    splits: int = 10,
    kd_subset_size: int = 1000,
    kd_num_subsets: int = 100,
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
    ref_is_stats = isinstance(ref_feats, (GaussianStats, str)) or hasattr(ref_feats, "__fspath__")
    n_ref = None if ref_is_stats else len(ref_feats)
    check_metric_inputs(
        names,
        n_ref=n_ref,
        n_gen=len(gen_feats),
        n_test=None if test_feats is None else len(test_feats),
        nearest_k=nearest_k,
        reduced_n=reduced_n,
        kd_subset_size=kd_subset_size,
        ref_is_stats=ref_is_stats,
        has_probs=gen_probs is not None,
    )
    out: dict[str, Any] = {}
    for name in names:
        logger.info("computing %s", name)
        if name == "fd":
            out["fd"] = frechet_distance(ref_feats, gen_feats, device=device)
        elif name == "fd_eff":
            out["fd_eff"] = frechet_distance_eff(ref_feats, gen_feats, device=device)
        elif name == "fd_infinity":
            out["fd_infinity"] = fd_infinity(ref_feats, gen_feats, seed=seed, device=device)
        elif name == "kd":
            out["kd_mean"], out["kd_std"] = kernel_distance(
                ref_feats, gen_feats, subset_size=kd_subset_size, num_subsets=kd_num_subsets, seed=seed, device=device
            )
        elif name in {"prdc", "realism"}:
            if "realism" in out or "precision" in out:
                continue
            rng = np.random.default_rng(seed)
            r_np, g_np = _to_numpy(ref_feats), _to_numpy(gen_feats)
            n = min(reduced_n, r_np.shape[0], g_np.shape[0])
            r_sub, g_sub = _subsample(r_np, n, rng), _subsample(g_np, n, rng)
            if "prdc" in names:
                out.update(prdc(r_sub, g_sub, nearest_k=nearest_k, device=device))
            if "realism" in names:
                scores = realism(r_sub, g_np, nearest_k=nearest_k, device=device)
                out["realism"] = scores
                out["realism_mean"] = (
                    float(np.mean(scores[np.isfinite(scores)])) if np.isfinite(scores).any() else float("inf")
                )
        elif name == "is":
            out["is_mean"], out["is_std"] = inception_score(gen_probs, splits=splits, seed=2020 + seed)
        elif name == "vendi":
            labels = np.zeros(len(gen_feats), dtype=np.int64) if gen_labels is None else np.asarray(gen_labels)
            per_class = vendi_per_class(gen_feats, labels, device=device)
            out["vendi"] = float(np.mean(list(per_class.values())))
            out["vendi_per_class"] = per_class
        elif name == "authpct":
            out["authpct"] = authpct(ref_feats, gen_feats, device=device)
        elif name == "sw_approx":
            out["sw_approx"] = sw_approx(ref_feats, gen_feats, device=device)
        elif name in {"ct", "ct_test", "ct_modified"}:
            fn = {"ct": ct, "ct_test": ct_test, "ct_modified": ct_modified}[name]
            out[name] = fn(ref_feats, test_feats, gen_feats, seed=seed, device=device)
        elif name in {"fls", "fls_overfit"}:
            fn = fls if name == "fls" else fls_overfit
            out[name] = fn(ref_feats, test_feats, gen_feats, seed=seed, reduced_n=reduced_n, device=device)
    return out


def scalar_results(results: dict[str, Any]) -> dict[str, float]:
    """The scalar entries of :func:`compute_metrics`'s result (what the table and ``results.csv`` show)."""
    return {key: float(value) for key, value in results.items() if isinstance(value, (int, float, np.floating))}
