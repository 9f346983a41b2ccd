"""Features of one input through the cache: images (extracted or cached), saved features, saved statistics.

The cache key (:func:`feature_key_parts`) holds everything the features depend on, so a cache entry can never be
served for a different computation:

- the input: the SHA-256 of each selected image file (via a :class:`~dgm_eval.cache.FileHashIndex`, so unchanged
  files, same path, size and mtime, are not re-read; ``verify_cache`` re-hashes), or of the ADM ``.npz`` file and
  the selected indices, or of the pixels of an in-memory batch; the sample selection (cap, seed); ``strict``;
- the encoder (:func:`encoder_identity`): name, arch, depth, class, every preprocessing parameter, the weights id,
  the SHA-256 of local weight files/folders (and of a URL's file in the torch.hub cache), the model's config
  (including the Hugging Face commit hash when it came from the hub);
- how it runs: precision (``fp32``/``bf16``/``fp16``) and whether logits are stored;
- versions of dgm-eval, torch, torchvision and transformers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import torch

from dgm_eval._version import __version__
from dgm_eval.cache import FeatureCache, FileHashIndex, cache_key
from dgm_eval.inputs import ImageSource, SavedFeatures, SavedStats
from dgm_eval.metrics import GaussianStats

logger = logging.getLogger(__name__)

#: the libraries whose versions can change features (their versions are part of every cache key).
KEY_LIBRARIES = ("torch", "torchvision", "transformers")


def library_versions() -> dict[str, str | None]:
    """``{"dgm-eval": ..., "torch": ..., ...}``: the versions that go into cache keys and ``config.json``."""
    versions: dict[str, str | None] = {"dgm-eval": __version__}
    for name in KEY_LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def weights_digest(weights_id: str, index: FileHashIndex) -> str | None:
    """SHA-256 of local weights: a file, a folder (every file, by relative name), or a URL's torch.hub cache file.

    ``None`` for Hugging Face ids (their commit hash is in the model config) and for weights that are not files.
    """
    if "://" in weights_id:
        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(weights_id).path).name
        return index.digest(cached) if cached.is_file() else None
    path = Path(weights_id).expanduser()
    if path.is_file():
        return index.digest(path)
    if path.is_dir():
        digest = hashlib.sha256()
        for item in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(item.relative_to(path).as_posix().encode() + b"\0" + index.digest(item).encode())
        return digest.hexdigest()
    return None


def _model_config(encoder: Any) -> dict[str, Any] | None:
    config = getattr(getattr(encoder, "model", None), "config", None)
    if config is None or not hasattr(config, "to_dict"):
        return None
    data = {k: v for k, v in config.to_dict().items() if k not in ("_name_or_path", "transformers_version")}
    data["_commit_hash"] = getattr(config, "_commit_hash", None)
    return data


def encoder_identity(encoder: Any, index: FileHashIndex | None = None) -> dict[str, Any]:
    """Everything about an encoder that its features depend on (JSON-ready; also written to ``config.json``)."""
    index = index or FileHashIndex(None)
    pre = encoder.preprocessing
    return {
        "name": encoder.name,
        "arch": encoder.arch,
        "dim": encoder.dim,
        "depth": encoder.depth,
        "class": f"{type(encoder).__module__}.{type(encoder).__qualname__}",
        "id": encoder.preprocess_id(),
        "preprocessing": dataclasses.asdict(pre) if dataclasses.is_dataclass(pre) else repr(pre),
        "weights": encoder.weights_id,
        "weights_sha256": weights_digest(str(encoder.weights_id), index),
        "model_config": _model_config(encoder),
    }


def feature_key_parts(
    source: ImageSource,
    encoder: Any,
    *,
    index: FileHashIndex,
    selection: dict[str, Any] | None = None,
    strict: bool = False,
    with_logits: bool = False,
    precision: str = "fp32",
) -> dict[str, Any]:
    """The parts of an image source's cache key (see the module docstring); ``cache_key(**parts)`` is the key."""
    return {
        "content": source.content_hash(index.digest),
        "selection": selection or {},
        "strict": strict,
        "encoder": encoder_identity(encoder, index),
        "precision": precision,
        "logits": with_logits,
        "versions": library_versions(),
    }


@dataclass
class Features:
    """Features of one input and what came with them.

    Attributes:
        description: the input, for messages and result tables.
        features: ``(N, D)`` float64 (None when the input is saved statistics).
        stats: saved statistics (reference only), else None.
        labels: class labels per row or None. probs: ``(N, C)`` class probabilities (inception) or None.
        skipped: unreadable files skipped. cached: whether the features came from the cache.
    """

    description: str
    features: np.ndarray | None = None
    stats: GaussianStats | None = None
    labels: np.ndarray | None = None
    probs: np.ndarray | None = None
    skipped: int = 0
    cached: bool = False

    def __len__(self) -> int:
        if self.features is not None:
            return int(self.features.shape[0])
        return 0 if self.stats is None or self.stats.n is None else int(self.stats.n)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``(N, C)`` float64 logits."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def image_features(
    source: ImageSource,
    encoder: Any,
    *,
    cache: FeatureCache | None = None,
    selection: dict[str, Any] | None = None,
    strict: bool = False,
    with_logits: bool = False,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str | torch.device | None = None,
    precision: str = "fp32",
    verify_cache: bool = False,
) -> Features:
    """Features of an image source, from the cache when its key matches, else extracted (and cached).

    Args:
        source: the images (selection already applied with :meth:`~dgm_eval.inputs.ImageSource.cap`).
        encoder: a loaded encoder. cache: where entries live (``None``: no caching).
        selection: the sample selection that produced ``source`` (cap, seed), for the key.
        strict: unreadable images are an error rather than skipped.
        with_logits: also store class probabilities (inception).
        batch_size, num_workers, device, precision: passed to :func:`~dgm_eval.extraction.extract_features`.
        verify_cache: re-hash every file instead of trusting unchanged (path, size, mtime).

    Returns:
        :class:`Features` with ``(N, D)`` float64 features; ``cached`` tells whether they came from the cache.
    """
    from dgm_eval.extraction import extract_features
    from sixlab_shared import is_main_process

    cache = cache or FeatureCache(enabled=False)
    key, parts, hit = None, None, None
    if cache.enabled:  # no cache, no key: nothing is hashed
        index = FileHashIndex(cache.folder, verify=verify_cache)
        parts = feature_key_parts(
            source,
            encoder,
            index=index,
            selection=selection,
            strict=strict,
            with_logits=with_logits,
            precision=precision,
        )
        key = cache_key(**parts)
        if is_main_process():
            index.save()
        hit = cache.load(key)
    if hit is not None and "features" in hit:
        logger.info("%s: features from cache %s", source.description, cache.path(key))
        return Features(
            source.description,
            hit["features"].astype(np.float64),
            labels=hit.get("labels"),
            probs=hit.get("probs"),
            skipped=int(hit.get("skipped", 0)),
            cached=True,
        )
    source.validate(strict=strict)
    out = extract_features(
        source,
        encoder,
        batch_size=batch_size,
        num_workers=num_workers,
        device=device,
        precision=precision,
        with_logits=with_logits,
    )
    feats, logits = out if with_logits else (out, None)
    probs = None if logits is None else softmax(np.asarray(logits, np.float64))
    result = Features(
        source.description,
        np.asarray(feats, np.float64),
        labels=source.selected_labels(),
        probs=probs,
        skipped=len(source.skipped),
    )
    if is_main_process() and key is not None:
        cache.save(key, features=feats, labels=result.labels, probs=probs, skipped=np.int64(result.skipped))
        cache.save_parts(key, parts)
    return result


def saved_features(saved: SavedFeatures, *, nsample: int | None, seed: int, replace: bool = False) -> Features:
    """Features read from an ``.npz``, with the same seeded cap as images (``replace``: bootstrap, as images)."""
    feats, labels, logits = saved.features, saved.labels, saved.logits
    n = feats.shape[0]
    if replace or (nsample is not None and nsample < n):
        draws = n if nsample is None else min(nsample, n)
        idx = np.sort(np.random.default_rng(seed).choice(n, draws, replace=replace))
        feats = feats[idx]
        labels = None if labels is None else labels[idx]
        logits = None if logits is None else logits[idx]
    probs = None if logits is None else softmax(np.asarray(logits, np.float64))
    return Features(saved.description, feats, labels=labels, probs=probs)


def saved_stats(saved: SavedStats) -> Features:
    """Statistics read from an ``.npz`` (reference side only)."""
    return Features(saved.description, stats=GaussianStats.load(saved.path))
