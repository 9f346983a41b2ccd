"""The encoder zoo: ``load_encoder(name, arch)`` builds a frozen feature extractor that owns its preprocessing.

Each encoder lives in its own module (``pixel``, ``random_conv``, ...), declares an :class:`EncoderInfo`
(``INFO``) and a ``build`` function, and is registered here in the order ``dgm-eval encoders`` lists them.

Example:
    >>> from PIL import Image
    >>> enc = load_encoder("pixel", device="cpu")
    >>> enc(enc.transform(Image.new("RGB", (8, 8)))[None]).shape
    torch.Size([1, 3072])
"""

from __future__ import annotations

import logging
import os

import torch

from dgm_eval.encoders import clip, convnext, data2vec, dinov2, inception, mae, pixel, random_conv, simclr, swav
from dgm_eval.encoders.base import Encoder, EncoderInfo
from dgm_eval.encoders.preprocessing import ImagePreprocessing
from dgm_eval.encoders.registry import EncoderRegistry
from sixlab_shared import UserError, get_device

logger = logging.getLogger(__name__)

REGISTRY = EncoderRegistry()
REGISTRY.register(inception.INFO, inception.build)
REGISTRY.register(inception.SINCEPTION_INFO, inception.build_sinception)
REGISTRY.register(dinov2.INFO, dinov2.build)
REGISTRY.register(clip.INFO, clip.build)
REGISTRY.register(convnext.INFO, convnext.build)
REGISTRY.register(mae.INFO, mae.build)
REGISTRY.register(data2vec.INFO, data2vec.build)
REGISTRY.register(swav.INFO, swav.build)
REGISTRY.register(simclr.INFO, None)
REGISTRY.register(pixel.INFO, pixel.build)
REGISTRY.register(random_conv.INFO, random_conv.build)

#: every registered encoder name (supported or not), for CLI choices.
ENCODER_NAMES: tuple[str, ...] = REGISTRY.names()


def list_encoders() -> list[EncoderInfo]:
    """Descriptions of every registered encoder (supported or not), in listing order.

    Example:
        >>> [info.name for info in list_encoders()][:3]
        ['inception', 'sinception', 'dinov2']
    """
    return REGISTRY.infos()


def get_encoder_info(name: str) -> EncoderInfo:
    """The description of one encoder.

    Raises:
        UserError: ``name`` is not a registered encoder.
    """
    if name not in REGISTRY:
        raise UserError(f"unknown encoder {name!r}; choose one of: {', '.join(REGISTRY.names())}")
    return REGISTRY[name].info


def default_process_device() -> str | None:
    """Under torchrun/accelerate with CUDA, this process's own GPU (``cuda:$LOCAL_RANK``); else ``None`` (automatic).

    Keeps every process from first loading its encoder onto GPU 0.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return None


def load_encoder(
    name: str,
    arch: str | None = None,
    *,
    device: str | torch.device | None = None,
    weights: str | None = None,
    depth: int | None = None,
    clean_resize: bool = False,
    seed: int = 0,
) -> Encoder:
    """Build a frozen encoder on ``device``.

    Args:
        name: registry key (see :data:`ENCODER_NAMES`).
        arch: architecture for encoders that offer a choice (``dinov2``: ``vits14|vitb14|vitl14|vitg14``);
            ``None`` takes the default.
        device: ``"cpu"``, ``"cuda"``, ``"mps"``, a ``torch.device`` or ``None`` (automatic, see
            ``sixlab_shared.get_device``; under several processes with CUDA, each process's own GPU).
        weights: a local file or directory (or another Hugging Face id / URL) to load instead of the default
            weights; ``None`` uses the default source (Hugging Face cache, torch.hub cache).
        depth: feature layer selector (``clip`` only; 0 or ``None`` = the default layer).
        clean_resize: use clean-fid's float32 resizer instead of the encoder's default resize.
        seed: seed of the ``random`` encoder's weights (ignored by the others).

    Returns:
        The encoder, in eval mode with gradients off.

    Raises:
        UserError: unknown or unsupported encoder, unknown arch, an option the encoder does not take, or weights
            that cannot be found (offline and not cached, missing local path).
    """
    info = get_encoder_info(name)
    entry = REGISTRY[name]
    if not info.supported or entry.builder is None:
        raise UserError(f"encoder {name!r} is not supported: {info.reason}")
    if arch is not None and not info.archs:
        raise UserError(f"encoder {name!r} has no architecture choice; drop --arch {arch!r}")
    if arch is not None and arch not in info.archs:
        raise UserError(f"unknown arch {arch!r} for encoder {name!r}; choose one of: {', '.join(info.archs)}")
    arch = arch if arch is not None else info.default_arch
    depth = int(depth or 0)
    torch_device = get_device(device if device is not None else default_process_device())
    encoder = entry.builder(arch, weights=weights, depth=depth, clean_resize=bool(clean_resize), seed=int(seed))
    logger.info("loaded encoder %s (%s), dim %d, weights %s", name, arch, encoder.dim, encoder.weights_id)
    return encoder.to(torch_device)


__all__ = [
    "ENCODER_NAMES",
    "REGISTRY",
    "Encoder",
    "EncoderInfo",
    "ImagePreprocessing",
    "default_process_device",
    "get_encoder_info",
    "list_encoders",
    "load_encoder",
]
