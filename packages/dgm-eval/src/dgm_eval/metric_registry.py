"""The metric registry: one :class:`MetricSpec` per metric, feeding :func:`~dgm_eval.api.compute_metrics`, the
up-front checks, the CLI's ``--metrics`` choices and help, and the docs (``dgm-eval metrics`` prints it).

A spec says what a metric needs (a test set, class probabilities, how many samples of which set), whether it works
from the reference's saved statistics, and which result keys it writes; its function takes a
:class:`MetricInputs` and returns ``{result key: value}``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from dgm_eval import metrics as M
from dgm_eval.metrics import defaults


@dataclass(frozen=True)
class MetricSettings:
    """The settings metrics take (defaults from :mod:`dgm_eval.metrics.defaults`)."""

    seed: int = 0
    nearest_k: int = defaults.NEAREST_K
    reduced_n: int = defaults.REDUCED_N
    splits: int = defaults.IS_SPLITS
    kd_subset_size: int = defaults.KD_SUBSET_SIZE
    kd_num_subsets: int = defaults.KD_NUM_SUBSETS


@dataclass
class MetricInputs:
    """What one generated set's metrics are computed from.

    Attributes:
        ref: ``(N_R, D)`` reference features, or saved statistics (for metrics with ``works_from_stats``).
        gen: ``(N_G, D)`` generated features. test: ``(N_T, D)`` held-out real features or None.
        settings: the metric settings. gen_probs: ``(N_G, C)`` class probabilities or None.
        gen_labels: ``(N_G,)`` class labels or None. device: where to compute.
        shared: results one metric leaves for another (prdc's and realism's common subsample).
    """

    ref: Any
    gen: Any
    test: Any = None
    settings: MetricSettings = field(default_factory=MetricSettings)
    gen_probs: Any = None
    gen_labels: Any = None
    device: str | torch.device | None = None
    shared: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MetricSpec:
    """One metric.

    Attributes:
        name: the ``--metrics`` name. help: one line for the CLI and docs.
        function: ``MetricInputs -> {result key: value}``.
        result_keys: the scalar keys it writes (tables, ``results.csv``).
        needs_test: needs held-out real features (``--test``). works_from_stats: the reference may be saved
            statistics. needs_probs: needs class probabilities (inception logits). default: computed when no
            metric is named.
        min_samples: ``settings -> [(set, fewest samples)]`` with set one of ``"reference"``, ``"generated"``,
            ``"test"``, ``"prdc"`` (both sets after prdc's cap).
    """

    name: str
    help: str
    function: Callable[[MetricInputs], dict[str, Any]]
    result_keys: tuple[str, ...]
    needs_test: bool = False
    works_from_stats: bool = False
    needs_probs: bool = False
    default: bool = False
    min_samples: Callable[[MetricSettings], list[tuple[str, int]]] = lambda s: []


def _to_numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, np.float64)


def _subsample(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    return x if x.shape[0] <= n else x[np.sort(rng.choice(x.shape[0], n, replace=False))]


def prdc_subsets(inputs: MetricInputs) -> tuple[np.ndarray, np.ndarray]:
    """prdc's seeded subsamples of both sets to ``min(reduced_n, N_R, N_G)`` (shared with realism)."""
    if "prdc_subsets" not in inputs.shared:
        rng = np.random.default_rng(inputs.settings.seed)
        r_np, g_np = _to_numpy(inputs.ref), _to_numpy(inputs.gen)
        n = min(inputs.settings.reduced_n, r_np.shape[0], g_np.shape[0])
        inputs.shared["prdc_subsets"] = (_subsample(r_np, n, rng), _subsample(g_np, n, rng))
    return inputs.shared["prdc_subsets"]


def _prdc(i: MetricInputs) -> dict[str, Any]:
    r_sub, g_sub = prdc_subsets(i)
    return M.prdc(r_sub, g_sub, nearest_k=i.settings.nearest_k, device=i.device)


def _realism(i: MetricInputs) -> dict[str, Any]:
    r_sub, _ = prdc_subsets(i)  # the same reference subsample as prdc; every generated sample is scored
    scores = M.realism(r_sub, _to_numpy(i.gen), nearest_k=i.settings.nearest_k, device=i.device)
    finite = np.isfinite(scores)
    return {
        "realism": scores,
        "realism_mean": float(np.mean(scores[finite])) if finite.any() else float("inf"),
        "realism_n_inf": int((~finite).sum()),  # samples at distance 0 from a reference (copies): not averaged
    }


def _vendi(i: MetricInputs) -> dict[str, Any]:
    labels = np.zeros(len(i.gen), dtype=np.int64) if i.gen_labels is None else np.asarray(i.gen_labels)
    per_class = M.vendi_per_class(i.gen, labels, device=i.device)
    return {"vendi": float(np.mean(list(per_class.values()))), "vendi_per_class": per_class}


def _kd(i: MetricInputs) -> dict[str, Any]:
    s = i.settings
    mean, std = M.kernel_distance(
        i.ref, i.gen, subset_size=s.kd_subset_size, num_subsets=s.kd_num_subsets, seed=s.seed, device=i.device
    )
    return {"kd_mean": mean, "kd_std": std}


def _is(i: MetricInputs) -> dict[str, Any]:
    mean, std = M.inception_score(i.gen_probs, splits=i.settings.splits, seed=2020 + i.settings.seed)
    return {"is_mean": mean, "is_std": std}


def _memorisation(fn: Callable[..., float], name: str, **extra: Any) -> Callable[[MetricInputs], dict[str, Any]]:
    def run(i: MetricInputs) -> dict[str, Any]:
        kwargs = {key: getattr(i.settings, key) for key in extra}
        return {name: fn(i.ref, i.test, i.gen, seed=i.settings.seed, device=i.device, **kwargs)}

    return run


def _ct_needs(ref: int, gen: int, test: int) -> Callable[[MetricSettings], list[tuple[str, int]]]:
    return lambda s: [("reference", ref), ("generated", gen), ("test", test)]


#: every metric, in the order results are reported.
METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("fd", "Fréchet distance", lambda i: {"fd": M.frechet_distance(i.ref, i.gen, device=i.device)},
               ("fd",), works_from_stats=True, default=True,
               min_samples=lambda s: [("reference", 2), ("generated", 2)]),
    MetricSpec("fd_eff", "FD with tr√ from Σ Re√λ(Σ_R Σ_G) (torch-fidelity's form)",
               lambda i: {"fd_eff": M.frechet_distance_eff(i.ref, i.gen, device=i.device)},
               ("fd_eff",), works_from_stats=True, min_samples=lambda s: [("reference", 2), ("generated", 2)]),
    MetricSpec("fd_infinity", "FD extrapolated to infinitely many generated samples (Chong & Forsyth)",
               lambda i: {"fd_infinity": M.fd_infinity(i.ref, i.gen, seed=i.settings.seed, device=i.device)},
               ("fd_infinity",), works_from_stats=True, default=True, min_samples=lambda s: [("generated", 4)]),
    MetricSpec("kd", "kernel distance (unbiased polynomial-kernel MMD²; mean and std over subsets)", _kd,
               ("kd_mean", "kd_std"), default=True, min_samples=lambda s: [("reference", 2), ("generated", 2)]),
    MetricSpec("prdc", "precision, recall, density, coverage (k-NN balls, strict <)", _prdc,
               ("precision", "recall", "density", "coverage"), default=True,
               min_samples=lambda s: [("prdc", s.nearest_k + 1)]),
    MetricSpec("realism", "realism score per generated sample (mean of the finite ones, count of infinite)",
               _realism, ("realism_mean", "realism_n_inf"), min_samples=lambda s: [("prdc", s.nearest_k + 1)]),
    MetricSpec("is", "Inception score (needs --encoder inception)", _is, ("is_mean", "is_std"), needs_probs=True),
    MetricSpec("vendi", "Vendi score of the generated set (mean over its classes)", _vendi, ("vendi",),
               default=True),
    MetricSpec("authpct", "percentage of authentic generated samples",
               lambda i: {"authpct": M.authpct(i.ref, i.gen, device=i.device)}, ("authpct",), default=True,
               min_samples=lambda s: [("reference", 2)]),
    MetricSpec("sw_approx", "approximate sliced Wasserstein distance",
               lambda i: {"sw_approx": M.sw_approx(i.ref, i.gen, device=i.device)}, ("sw_approx",), default=True),
    MetricSpec("ct", "C_T memorisation test (generated vs test distances to the reference)",
               _memorisation(M.ct, "ct"), ("ct",), needs_test=True, min_samples=_ct_needs(3, 21, 2)),
    MetricSpec("ct_test", "C_T with the test set split in halves (mode shrinkage)",
               _memorisation(M.ct_test, "ct_test"), ("ct_test",), needs_test=True,
               min_samples=lambda s: [("test", 6), ("generated", 21)]),
    MetricSpec("ct_modified", "C_T with reference and generated swapped (memorisation)",
               _memorisation(M.ct_modified, "ct_modified"), ("ct_modified",), needs_test=True,
               min_samples=_ct_needs(21, 3, 2)),
    MetricSpec("fls", "feature likelihood score", _memorisation(M.fls, "fls", reduced_n=True), ("fls",),
               needs_test=True, min_samples=lambda s: [("reference", 2), ("test", 1)]),
    MetricSpec("fls_overfit", "FLS overfitting percentage (FLS-POG)",
               _memorisation(M.fls_overfit, "fls_overfit", reduced_n=True), ("fls_overfit",), needs_test=True,
               min_samples=lambda s: [("reference", 2), ("test", 1)]),
)  # fmt: skip

REGISTRY: dict[str, MetricSpec] = {spec.name: spec for spec in METRICS}
#: every metric name ``--metrics`` accepts, in the order results are reported.
METRIC_NAMES: tuple[str, ...] = tuple(REGISTRY)
#: metrics computed when none are named (none of them needs a test set).
DEFAULT_METRICS: tuple[str, ...] = tuple(spec.name for spec in METRICS if spec.default)


def metrics_help() -> str:
    """One line per metric (``name: help [needs --test] [from stats]``), for ``--metrics`` help and the docs."""
    lines = []
    for spec in METRICS:
        tags = [t for t, on in (("needs --test", spec.needs_test), ("reference may be stats", spec.works_from_stats))
                if on]  # fmt: skip
        lines.append(f"{spec.name}: {spec.help}" + (f" [{'; '.join(tags)}]" if tags else ""))
    return "\n".join(lines)
