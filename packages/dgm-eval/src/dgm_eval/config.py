"""The configuration dataclasses of the ``compute``, ``features`` and ``stats`` jobs: the one table of defaults.

The CLI builds them from its options (``sixlab_shared.cli.config_options``: one option per field, the field's
docstring as help), ``--config`` TOML files set the same fields, and ``config.json`` beside the results holds them
(with what they resolved to). Values are checked here, so a bad one is one line whichever way it came in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from dgm_eval.metric_registry import DEFAULT_METRICS
from dgm_eval.metrics import defaults

Precision = Literal["fp32", "bf16", "fp16"]


def _at_least(name: str, value: int | None, least: int) -> None:
    if value is not None and value < least:
        raise ValueError(f"--{name.replace('_', '-')} must be >= {least}, got {value}")


@dataclass
class EncoderConfig:
    """Which encoder extracts features, and how."""

    encoder: str = "dinov2"
    """Feature encoder (see `dgm-eval encoders`): inception, sinception, dinov2, clip, convnext, mae, data2vec,
    swav, pixel, random."""
    arch: str | None = None
    """Encoder architecture, e.g. dinov2: vits14|vitb14|vitl14|vitg14 (default: the encoder's)."""
    weights: str | None = None
    """Local weights file/folder (dinov2 also takes the torch.hub .pth), or another Hugging Face id / URL."""
    depth: int = 0
    """clip: 1 = projected features, -k drops the last k blocks."""
    clean_resize: bool = False
    """clean-fid's float32 resizer instead of the encoder's default resize."""
    batch_size: int = 64
    """Images per forward pass (results do not depend on it)."""
    num_workers: int = 0
    """DataLoader workers for decoding/preprocessing."""
    precision: Precision = "fp32"
    """Autocast precision of the encoder (bf16/fp16 on GPUs); part of the feature cache key."""
    device: str | None = None
    """Where the encoder and the metrics run (the shared --device)."""

    def __post_init__(self) -> None:
        _at_least("batch_size", self.batch_size, 1)
        _at_least("num_workers", self.num_workers, 0)
        if self.precision not in ("fp32", "bf16", "fp16"):
            raise ValueError(f"--precision must be fp32, bf16 or fp16, got {self.precision!r}")


@dataclass
class ComputeConfig:
    """Everything ``dgm-eval compute`` does (the resolved configuration written beside the results)."""

    ref: str = ""
    """Reference (training) set: image folder, ADM .npz, features .npz or statistics .npz."""
    gens: list[str] = field(default_factory=list)
    """Generated sets (image folders, ADM .npz or features .npz); PATH:train is a training set drawn with
    replacement (nsample draws, seeded) in a generated set's place, e.g. the baseline of memorisation metrics."""
    out: str = "dgm-eval-results"
    """Output folder (results.json, results.csv, config.json)."""
    test: str | None = None
    """Held-out real images/features (ct*, fls*)."""
    metrics: list[str] = field(default_factory=lambda: list(DEFAULT_METRICS))
    """Metrics (repeat the option or separate by commas; 'all' for every one); see `dgm-eval metrics`."""
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    nsample: int | None = 50000
    """Cap per set (seeded choice, without replacement)."""
    seed: int = 0
    nearest_k: int = defaults.NEAREST_K
    """k of prdc and realism."""
    reduced_n: int = defaults.REDUCED_N
    """Sample cap of prdc (both sets) and fls."""
    splits: int = defaults.IS_SPLITS
    """Inception-score splits."""
    kd_subset_size: int = defaults.KD_SUBSET_SIZE
    """KD subset size."""
    kd_num_subsets: int = defaults.KD_NUM_SUBSETS
    """KD number of subsets."""
    recursive: bool = False
    """Take every image below each folder."""
    strict: bool = False
    """Unreadable images are an error (default: skipped and counted)."""
    cache: bool = True
    """Reuse/store features in the feature cache."""
    cache_dir: str | None = None
    """Cache folder (default $DGM_EVAL_CACHE, else ~/.cache/dgm-eval)."""
    verify_cache: bool = False
    """Re-hash every input file (default: trust unchanged path, size and mtime)."""
    heatmaps: bool = False
    """Write FD heatmaps (Grad-CAM of FD) of the first generated images: heatmaps_runNN.png in --out."""
    heatmap_count: int = 16
    """How many images per generated set get a heatmap (16: a 4x4 grid)."""
    overwrite: bool = False
    """Replace what --out already holds."""

    def __post_init__(self) -> None:
        _at_least("nsample", self.nsample, 1)
        _at_least("heatmap_count", self.heatmap_count, 1)
        _at_least("nearest_k", self.nearest_k, 1)
        _at_least("reduced_n", self.reduced_n, 2)
        _at_least("splits", self.splits, 1)
        _at_least("kd_subset_size", self.kd_subset_size, 2)
        _at_least("kd_num_subsets", self.kd_num_subsets, 1)


@dataclass
class FeaturesConfig:
    """``dgm-eval features``: the features of one image set, written to an ``.npz``."""

    path: str = ""
    """Image folder or ADM .npz."""
    out: str = ""
    """Features .npz to write."""
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    logits: bool = False
    """Also store classifier logits (inception)."""
    nsample: int | None = None
    """Cap (seeded choice, without replacement)."""
    seed: int = 0
    recursive: bool = False
    """Take every image below the folder."""
    strict: bool = False
    """Unreadable images are an error (default: skipped and counted)."""
    overwrite: bool = False
    """Replace an existing output file."""

    def __post_init__(self) -> None:
        _at_least("nsample", self.nsample, 1)


@dataclass
class StatsConfig:
    """``dgm-eval stats``: float64 mean and covariance of one set, streamed in chunks, written to an ``.npz``."""

    path: str = ""
    """Image folder, ADM .npz or features .npz."""
    out: str = ""
    """Statistics .npz to write (mu, sigma, n)."""
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    save_features: bool = False
    """Also store the features."""
    chunk: int = 4096
    """Images per streaming chunk."""
    nsample: int | None = None
    """Cap (seeded choice, without replacement)."""
    seed: int = 0
    recursive: bool = False
    """Take every image below the folder."""
    strict: bool = False
    """Unreadable images are an error (default: skipped and counted)."""
    overwrite: bool = False
    """Replace an existing output file."""

    def __post_init__(self) -> None:
        _at_least("chunk", self.chunk, 2)
        _at_least("nsample", self.nsample, 1)
