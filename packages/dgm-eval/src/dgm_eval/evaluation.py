"""The ``compute``, ``features`` and ``stats`` jobs end to end: inputs → features (cached) → metrics → files.

Everything the user can get wrong (metric names, a missing ``--test``, unusable inputs, too few samples, an
output folder that already holds results) is checked before any feature is computed, and nothing is written
until the results exist; files are written atomically.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from dgm_eval.api import (
    MetricError,
    check_metric_inputs,
    compute_metrics,
    parse_metrics,
)
from dgm_eval.cache import FeatureCache, FileHashIndex
from dgm_eval.config import ComputeConfig, EncoderConfig, FeaturesConfig, StatsConfig
from dgm_eval.features import (
    Features,
    encoder_identity,
    image_features,
    library_versions,
    saved_features,
    saved_stats,
)
from dgm_eval.inputs import ImageSource, InputError, SavedFeatures, SavedStats, open_input
from dgm_eval.metric_registry import REGISTRY
from dgm_eval.metrics import FeatureError, StatsAccumulator
from dgm_eval.results import write_results
from sixlab_shared import (
    UserError,
    atomic_open,
    is_main_process,
    progress,
    require_output_file,
)

logger = logging.getLogger(__name__)


def _open(path: str, role: str, *, recursive: bool, allow_stats: bool) -> ImageSource | SavedFeatures | SavedStats:
    item = open_input(path, recursive=recursive)
    if isinstance(item, SavedStats) and not allow_stats:
        raise InputError(
            f"{role} {path!r} is saved statistics; only the reference may be (for fd, fd_eff, fd_infinity)"
        )
    return item


#: a generated-set path ending in this is a training set, bootstrapped (drawn with replacement) into GEN's place
TRAIN_SUFFIX = ":train"


def split_train_suffix(path: str) -> tuple[str, bool]:
    """``("PATH", True)`` for ``"PATH:train"`` (a training set in a generated set's place), else ``(path, False)``.

    Example:
        >>> split_train_suffix("runs/cifar_train:train"), split_train_suffix("samples.npz")
        (('runs/cifar_train', True), ('samples.npz', False))
    """
    if path.endswith(TRAIN_SUFFIX) and len(path) > len(TRAIN_SUFFIX):
        return path[: -len(TRAIN_SUFFIX)], True
    return path, False


def _count(item: ImageSource | SavedFeatures | SavedStats) -> int | None:
    if isinstance(item, ImageSource):
        return len(item)
    if isinstance(item, SavedFeatures):
        return int(item.features.shape[0])
    return None


def _check_out(out: Path, overwrite: bool, names: tuple[str, ...]) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {str(out)!r} exists and is not a folder; choose another path")
    existing = [name for name in names if (out / name).exists()]
    if existing and not overwrite:
        raise UserError(f"--out {str(out)!r} already holds {existing[0]}; pass --overwrite or choose another --out")


def _load_encoder(cfg: EncoderConfig, seed: int) -> Any:
    from dgm_eval.encoders import load_encoder

    return load_encoder(
        cfg.encoder,
        cfg.arch,
        device=cfg.device,
        weights=cfg.weights,
        depth=cfg.depth,
        clean_resize=cfg.clean_resize,
        seed=seed,
    )


def _features_of(
    item: ImageSource | SavedFeatures | SavedStats,
    *,
    encoder: Any,
    cfg: ComputeConfig,
    cache: FeatureCache,
    with_logits: bool,
    bootstrap_seed: int | None = None,
) -> Features:
    """Features of one input; ``bootstrap_seed`` (a ``GEN:train`` path): drawn with replacement."""
    if isinstance(item, SavedStats):
        return saved_stats(item)
    if isinstance(item, SavedFeatures):
        if bootstrap_seed is not None:
            return saved_features(item, nsample=cfg.nsample, seed=cfg.seed + bootstrap_seed, replace=True)
        return saved_features(item, nsample=cfg.nsample, seed=cfg.seed)
    return image_features(
        item,
        encoder,
        cache=cache,
        selection={"nsample": cfg.nsample, "seed": cfg.seed, "bootstrap": bootstrap_seed is not None},
        strict=cfg.strict,
        with_logits=with_logits,
        batch_size=cfg.encoder.batch_size,
        num_workers=cfg.encoder.num_workers,
        device=cfg.encoder.device,
        precision=cfg.encoder.precision,
        verify_cache=cfg.verify_cache,
    )


def resolved_settings(cfg: ComputeConfig, encoder: Any, cache: FeatureCache) -> dict[str, Any]:
    """What the options resolved to (``config.json``'s ``resolved``): the encoder's identity (weights id, file
    hash, preprocessing, model config), precision, device, cache folder and library versions."""
    from sixlab_shared import get_device

    return {
        "encoder": None
        if encoder is None
        else encoder_identity(encoder, FileHashIndex(cache.folder if cache.enabled else None)),
        "precision": cfg.encoder.precision,
        "device": str(get_device(cfg.encoder.device)),
        "cache_dir": str(cache.folder) if cache.enabled else None,
        "versions": library_versions(),
    }


RESULT_FILES = ("results.json", "results.csv", "config.json")


def run_compute(cfg: ComputeConfig) -> dict[str, dict[str, Any]]:
    """Run ``dgm-eval compute``: metrics of each generated set against the reference; writes ``cfg.out``.

    Returns:
        ``{gen path: {result key: value}}`` (scalars, plus ``realism`` arrays and ``vendi_per_class`` dicts).

    Raises:
        UserError: any input, option or sample-count problem, before features are computed.
    """
    metrics = parse_metrics(",".join(cfg.metrics))
    if not cfg.ref:
        raise UserError("no reference set given; pass REF GEN [GEN ...]")
    if cfg.test is None and any(REGISTRY[m].needs_test for m in metrics):
        missing = ", ".join(m for m in metrics if REGISTRY[m].needs_test)
        raise MetricError(f"metric(s) {missing} need held-out real images; pass --test PATH")
    if not cfg.gens:
        raise UserError("no generated set given; pass REF GEN [GEN ...]")
    out = Path(cfg.out)
    _check_out(out, cfg.overwrite, RESULT_FILES)
    if cfg.nsample is not None and cfg.nsample < 1:
        raise UserError(f"--nsample must be >= 1, got {cfg.nsample}")

    ref = _open(cfg.ref, "reference", recursive=cfg.recursive, allow_stats=True)
    test = None if cfg.test is None else _open(cfg.test, "test set", recursive=cfg.recursive, allow_stats=False)
    gen_paths = [split_train_suffix(g) for g in cfg.gens]
    gens = [_open(g, "generated set", recursive=cfg.recursive, allow_stats=False) for g, _ in gen_paths]
    bootstrap = [False, False, *(is_train for _, is_train in gen_paths)]
    for role_seed, (item, replace) in enumerate(zip([ref, test, *gens], bootstrap, strict=True)):
        if isinstance(item, ImageSource):
            item.cap(cfg.nsample, cfg.seed + role_seed, replace=replace)
    has_probs = cfg.encoder.encoder == "inception" or all(
        isinstance(g, SavedFeatures) and g.logits is not None for g in gens
    )
    for gen in gens:
        check_metric_inputs(
            metrics,
            n_ref=_count(ref),
            n_gen=_count(gen) or 0,
            n_test=None if test is None else _count(test),
            nearest_k=cfg.nearest_k,
            reduced_n=cfg.reduced_n,
            kd_subset_size=cfg.kd_subset_size,
            ref_is_stats=isinstance(ref, SavedStats),
            has_probs=has_probs,
        )
    if cfg.heatmaps and not all(isinstance(g, ImageSource) for g in gens):
        raise UserError("--heatmaps needs images for every generated set (not features .npz files)")
    needs_images = any(isinstance(item, ImageSource) for item in [ref, test, *gens])
    encoder = _load_encoder(cfg.encoder, cfg.seed) if needs_images else None
    if cfg.heatmaps and encoder.heatmap_layer() is None:
        raise UserError(f"encoder {encoder.name!r} has no heatmap layer; --heatmaps works with every encoder but pixel")
    heatmaps: list[tuple[list[Any], list[np.ndarray]]] = []
    cache = FeatureCache(cfg.cache_dir, enabled=cfg.cache)

    with_logits = "is" in metrics and cfg.encoder.encoder == "inception"
    ref_f = _features_of(ref, encoder=encoder, cfg=cfg, cache=cache, with_logits=False)
    test_f = None if test is None else _features_of(test, encoder=encoder, cfg=cfg, cache=cache, with_logits=False)
    results: dict[str, dict[str, Any]] = {}
    skipped: dict[str, int] = {ref_f.description: ref_f.skipped}
    dims = {ref_f.description: (ref_f.features.shape[1] if ref_f.features is not None else ref_f.stats.dim)}
    for role_seed, (path, gen, (_, is_train)) in enumerate(zip(cfg.gens, gens, gen_paths, strict=True), start=2):
        gen_f = _features_of(
            gen,
            encoder=encoder,
            cfg=cfg,
            cache=cache,
            with_logits=with_logits,
            bootstrap_seed=role_seed if is_train else None,
        )
        dims[gen_f.description] = gen_f.features.shape[1]
        if len(set(dims.values())) > 1:
            listing = ", ".join(f"{name}: D={d}" for name, d in dims.items())
            raise FeatureError(f"feature dimensions differ ({listing}); use the same encoder for every set")
        skipped[gen_f.description] = gen_f.skipped
        results[path] = compute_metrics(
            ref_f.stats if ref_f.stats is not None else ref_f.features,
            gen_f.features,
            metrics,
            None if test_f is None else test_f.features,
            cfg.seed,
            nearest_k=cfg.nearest_k,
            reduced_n=cfg.reduced_n,
            splits=cfg.splits,
            kd_subset_size=cfg.kd_subset_size,
            kd_num_subsets=cfg.kd_num_subsets,
            gen_probs=gen_f.probs,
            gen_labels=gen_f.labels,
            device=cfg.encoder.device,
        )
        results[path]["n_gen"] = len(gen_f)
        results[path]["n_ref"] = len(ref_f)
        if cfg.heatmaps:
            heatmaps.append(_heatmaps(gen, gen_f, ref_f, encoder, cfg))
    if test_f is not None:
        skipped[test_f.description] = test_f.skipped
    write_results(out, cfg, results, skipped=skipped, resolved=resolved_settings(cfg, encoder, cache))
    if is_main_process():
        from dgm_eval.heatmaps import save_heatmap_grid

        for k, (images, maps) in enumerate(heatmaps):
            save_heatmap_grid(images, maps, out / f"heatmaps_run{k:02d}.png")
    return results


def _heatmaps(gen: ImageSource, gen_f: Features, ref_f: Features, encoder: Any, cfg: ComputeConfig) -> tuple:
    """FD heatmaps of the first ``cfg.heatmap_count`` images of a generated set: (images, maps)."""
    from dgm_eval.heatmaps import fd_heatmaps
    from dgm_eval.metrics import feature_statistics

    if gen_f.cached:  # the features skipped unreadable images: drop them from the selection too
        gen.validate(strict=cfg.strict)
    count = min(cfg.heatmap_count, len(gen))
    images = [gen[i] for i in range(count)]
    ref_stats = ref_f.stats if ref_f.stats is not None else feature_statistics(ref_f.features)
    maps = fd_heatmaps(encoder, images, list(range(count)), ref_stats, gen_f.features, device=cfg.encoder.device)
    return images, maps


# -- features and stats ----------------------------------------------------------------------------------------


def _npz_output(output: str, overwrite: bool) -> Path:
    """The ``--out`` file of ``features``/``stats``: an ``.npz`` that does not exist yet unless ``overwrite``."""
    if not output:
        raise UserError("--out is required: the .npz file to write")
    out = Path(output)
    if out.suffix.lower() != ".npz":
        raise UserError(f"--out {output!r} must end in .npz")
    require_output_file(out, overwrite=overwrite, what="--out")
    return out


def run_features(cfg: FeaturesConfig, *, cache: FeatureCache | None = None) -> Features:
    """``dgm-eval features``: write the features of images to an ``.npz`` (``features``, ``labels``, ``logits``)."""
    out = _npz_output(cfg.out, cfg.overwrite)
    item = open_input(cfg.path, recursive=cfg.recursive)
    if not isinstance(item, ImageSource):
        raise InputError(f"{cfg.path!r} already holds features or statistics; pass images (a folder or ADM .npz)")
    if cfg.logits and cfg.encoder.encoder != "inception":
        raise UserError("--logits needs --encoder inception (the only encoder with a classifier head)")
    item.cap(cfg.nsample, cfg.seed)
    encoder = _load_encoder(cfg.encoder, cfg.seed)
    enc = cfg.encoder
    feats = image_features(
        item,
        encoder,
        cache=cache,
        selection={"nsample": cfg.nsample, "seed": cfg.seed},
        strict=cfg.strict,
        with_logits=cfg.logits,
        batch_size=enc.batch_size,
        num_workers=enc.num_workers,
        device=enc.device,
        precision=enc.precision,
    )
    arrays: dict[str, Any] = {"features": feats.features, "encoder": np.asarray(encoder.preprocess_id())}
    if feats.labels is not None:
        arrays["labels"] = feats.labels
    if feats.probs is not None:
        arrays["logits"] = np.log(np.clip(feats.probs, 1e-300, None))  # softmax(log p) = p
    if is_main_process():
        with atomic_open(out) as handle:
            np.savez(handle, **arrays)
    return feats


def run_stats(cfg: StatsConfig) -> Any:
    """``dgm-eval stats``: mean and covariance accumulated in float64 over chunks of images (no N×D array).

    Returns:
        The :class:`~dgm_eval.metrics.GaussianStats` written.
    """
    from dgm_eval.extraction import extract_features

    out = _npz_output(cfg.out, cfg.overwrite)
    item = open_input(cfg.path, recursive=cfg.recursive)
    enc, chunk = cfg.encoder, cfg.chunk
    acc = StatsAccumulator()
    kept: list[np.ndarray] = []
    if isinstance(item, SavedFeatures):
        feats = saved_features(item, nsample=cfg.nsample, seed=cfg.seed).features
        for start in range(0, feats.shape[0], chunk):
            acc.update(feats[start : start + chunk])
        kept = [feats] if cfg.save_features else []
    elif isinstance(item, ImageSource):
        item.cap(cfg.nsample, cfg.seed)
        if len(item) < 2:
            raise InputError(f"{cfg.path!r}: statistics need at least 2 images, got {len(item)}")
        encoder = _load_encoder(enc, cfg.seed)
        item.validate(strict=cfg.strict)
        if len(item) < 2:
            raise InputError(f"{cfg.path!r}: statistics need at least 2 readable images, got {len(item)}")
        for start in progress(range(0, len(item), chunk), desc="stats"):
            part = item.subset(start, start + chunk)
            feats = extract_features(
                part,
                encoder,
                batch_size=enc.batch_size,
                num_workers=enc.num_workers,
                device=enc.device,
                precision=enc.precision,
                progress=False,
            )
            acc.update(np.asarray(feats, np.float64))
            if cfg.save_features:
                kept.append(np.asarray(feats))
    else:
        raise InputError(f"{cfg.path!r} already holds statistics")
    stats = acc.compute()
    if is_main_process():
        stats.save(out, features=np.concatenate(kept) if kept else None)
    return stats
