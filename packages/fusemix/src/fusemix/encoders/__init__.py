"""Frozen unimodal encoders: a validated registry of specs and the loaders behind it."""

from __future__ import annotations

import torch

from fusemix.encoders.spec import (
    MINILM_PACKAGE_MODEL,
    EncoderSpec,
    register_encoder,
    registered_encoders,
    resolve_encoder,
)


def load_encoder(spec: EncoderSpec, device: torch.device | str = "cpu"):
    """Instantiate the encoder a spec describes (an object with ``dim``, ``encode(list) -> (B, D)`` and ``close()``).

    ``encode`` takes PIL images, :class:`fusemix.audio.Waveform` clips or caption strings, per ``spec.modality``.

    Raises:
        UserError: weights unavailable (see :class:`fusemix.encoders.huggingface.HFEncoder`).
    """
    if spec.backend == "concat":
        from fusemix.encoders.concat import ConcatEncoder

        return ConcatEncoder(spec, device, load_encoder)
    if spec.backend == "diffusers":
        from fusemix.generate import PipelineTextEncoder

        return PipelineTextEncoder(spec, device)
    if spec.backend == "frozen":
        from fusemix.encoders.frozen import FrozenEncoder

        return FrozenEncoder(spec, device)
    from fusemix.encoders.huggingface import HFEncoder

    return HFEncoder(spec, device)


__all__ = [
    "MINILM_PACKAGE_MODEL",
    "EncoderSpec",
    "load_encoder",
    "register_encoder",
    "registered_encoders",
    "resolve_encoder",
]
