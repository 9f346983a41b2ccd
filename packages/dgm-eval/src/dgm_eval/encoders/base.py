"""The encoder contract: a frozen ``torch.nn.Module`` that owns its preprocessing, and its registry entry.

An :class:`Encoder` maps RGB PIL images to ``(N, dim)`` float32 features in two steps: :meth:`Encoder.transform`
(per image, in DataLoader workers; a picklable :class:`~dgm_eval.encoders.preprocessing.ImagePreprocessing`)
and :meth:`Encoder.forward` (per batch, on the device). :class:`EncoderInfo` describes an encoder without
building it (for ``dgm-eval encoders`` and the CLI's choices).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch
from PIL import Image

from dgm_eval.encoders.preprocessing import ImagePreprocessing


@dataclasses.dataclass(frozen=True)
class EncoderInfo:
    """What ``dgm-eval encoders`` prints about one encoder; built without loading any weights.

    Attributes:
        name: registry key (``"dinov2"``).
        dim: feature dimension of the default architecture.
        weight_source: where the default weights come from (Hugging Face id, URL, or "none").
        preprocessing: the default preprocessing, in words.
        archs: architectures accepted by ``--arch`` (empty where there is no choice).
        default_arch: the architecture used when ``--arch`` is not given (``None`` where there is no choice).
        dims: feature dimension per architecture (``{}`` where there is no choice).
        weight_sources: weight source per architecture (``{}`` where there is no choice).
        supported: whether :func:`~dgm_eval.encoders.load_encoder` can build it.
        reason: why it is not supported (``None`` when it is).
        notes: extra remarks (feature layer, ``--depth`` meaning, deviations from the public code).
    """

    name: str
    dim: int | None
    weight_source: str
    preprocessing: str
    archs: tuple[str, ...] = ()
    default_arch: str | None = None
    dims: Mapping[str, int] = dataclasses.field(default_factory=dict)
    weight_sources: Mapping[str, str] = dataclasses.field(default_factory=dict)
    supported: bool = True
    reason: str | None = None
    notes: str = ""

    def dim_for(self, arch: str | None) -> int | None:
        """Feature dimension for ``arch`` (the default architecture when ``None``)."""
        arch = arch or self.default_arch
        if arch is not None and arch in self.dims:
            return self.dims[arch]
        return self.dim

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        data = dataclasses.asdict(self)
        data["archs"] = list(self.archs)
        data["dims"] = dict(self.dims)
        data["weight_sources"] = dict(self.weight_sources)
        return data


class Encoder(torch.nn.Module):
    """Base class of every encoder: frozen, with its own preprocessing.

    Subclasses set ``name``, ``arch``, ``dim`` and ``preprocessing`` in ``__init__``, implement
    :meth:`features` (``(N, 3, H, W)`` float32 -> ``(N, dim)``), optionally :meth:`logits`, and call
    :meth:`freeze` at the end of ``__init__``. :meth:`forward` checks the input contract and calls
    :meth:`features`.

    Attributes:
        name: registry key, e.g. ``"dinov2"``.
        arch: architecture, e.g. ``"vitl14"``; ``None`` where there is no choice.
        dim: feature dimension.
        preprocessing: the per-image transform (picklable, so DataLoader workers can run it).
        weights_id: which weights were loaded (HF id, URL, local path or ``"random(seed=0)"``), for cache keys.
        depth: the ``--depth`` setting that selected the feature layer (0 = the default layer).
    """

    name: str = ""
    arch: str | None = None
    dim: int = 0
    #: the fixed input size (H, W) forward() expects; None where any size works.
    input_size: tuple[int, int] | None = None
    #: convolutional encoders run faster on channels-last batches (same numbers up to float rounding);
    #: extract_features converts batches when this is True.
    channels_last: bool = False

    def __init__(self) -> None:
        super().__init__()
        self.preprocessing: ImagePreprocessing = ImagePreprocessing()
        self.weights_id: str = "none"
        self.depth: int = 0

    def freeze(self) -> Encoder:
        """Put the module in eval mode and stop gradients to every parameter; returns ``self``."""
        self.eval()
        self.requires_grad_(False)
        return self

    def train(self, mode: bool = True) -> Encoder:
        """Encoders stay in eval mode (batch-norm statistics and dropout must not change features)."""
        return super().train(False)

    def preprocess_id(self) -> str:
        """A stable string naming the weights, architecture, feature layer and preprocessing (for cache keys)."""
        return (
            f"{self.name}|arch={self.arch}|dim={self.dim}|weights={self.weights_id}|depth={self.depth}"
            f"|pre={self.preprocessing.mode}:{self.preprocessing.describe()}"
        )

    def transform(self, image: Image.Image) -> torch.Tensor:
        """Preprocess one RGB PIL image (any size) to the ``(3, H, W)`` float32 tensor :meth:`forward` takes."""
        return self.preprocessing(image)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``x`` is a ``(N, 3, H, W)`` floating tensor (of ``input_size`` if fixed)."""
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != 3:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{self.name}: expected a (N, 3, H, W) tensor from transform(), got {shape}")
        if not torch.is_floating_point(x):
            raise ValueError(f"{self.name}: expected a floating tensor from transform(), got {x.dtype}")
        if self.input_size is not None and tuple(x.shape[-2:]) != tuple(self.input_size):
            raise ValueError(
                f"{self.name}: expected {self.input_size[0]}x{self.input_size[1]} inputs from transform(), "
                f"got {x.shape[-2]}x{x.shape[-1]}"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features of a preprocessed batch.

        Args:
            x: ``(N, 3, H, W)`` float tensor, as stacked from :meth:`transform`.

        Returns:
            ``(N, dim)`` float32 features.

        Raises:
            ValueError: ``x`` is not a ``(N, 3, H, W)`` floating tensor of the expected size.
        """
        self.check_input(x)
        return self.features(x).float()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's computation (``(N, 3, H, W)`` -> ``(N, dim)``); implemented by subclasses."""
        raise NotImplementedError

    def heatmap_layer(self) -> tuple[torch.nn.Module, int] | None:
        """The layer FD heatmaps read (Grad-CAM), and its layout: ``(module, prefix_tokens)``.

        ``prefix_tokens >= 0``: the module outputs ``(N, prefix + h*w, C)`` tokens (ViTs; the prefix tokens,
        e.g. CLS, are dropped); ``-1``: it outputs a ``(N, C, h, w)`` map (conv nets). ``None``: no heatmaps.
        """
        return None

    def forward_with_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(forward(x), logits(x))``; encoders with a head override it to share the trunk's computation."""
        return self.forward(x), self.logits(x)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Classifier logits (only encoders with a head, e.g. inception's ``(N, 1008)``).

        Raises:
            NotImplementedError: this encoder has no classifier head.
        """
        raise NotImplementedError(f"encoder {self.name!r} has no classifier head (only 'inception' has logits)")


def reject_depth(name: str, depth: int) -> None:
    """Raise ``UserError`` when ``--depth`` is given to an encoder with a single feature layer."""
    if depth:
        from sixlab_shared import UserError

        raise UserError(f"encoder {name!r} has one feature layer; --depth {depth} is only supported by 'clip'")


def reject_weights(name: str, weights: str | None) -> None:
    """Raise ``UserError`` when ``--weights`` is given to an encoder without pretrained weights."""
    if weights is not None:
        from sixlab_shared import UserError

        raise UserError(f"encoder {name!r} has no pretrained weights; drop --weights {weights!r}")
