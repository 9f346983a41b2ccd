"""Concatenated latents of several encoders of one modality (the paper's audio latent: HTS-AT ⊕ Whisper encoder).

Layout: ``[part_0 latent | part_1 latent | ...]`` along the last axis, in the order of ``spec.parts``; each part
reads the same inputs and does its own resampling, trimming and pooling.
"""

from __future__ import annotations

from typing import Any

import torch

from fusemix.encoders.spec import EncoderSpec, resolve_encoder


class ConcatEncoder:
    """``encode(inputs) -> (B, sum of part dims)`` float32 CPU latents.

    Args:
        spec: a ``concat`` spec.
        device: where the parts run.
        loader: builds one part's encoder (``fusemix.encoders.load_encoder``).

    Raises:
        UserError: a part cannot be loaded; ``spec.dim`` differs from the sum of the parts' dims.
    """

    def __init__(self, spec: EncoderSpec, device: torch.device | str, loader: Any) -> None:
        from sixlab_shared import UserError

        self.spec = spec
        self.parts = []
        try:
            for name in spec.parts:
                self.parts.append(loader(resolve_encoder(name, spec.modality), device))
        except BaseException:
            self.close()
            raise
        self.dims = [int(part.dim) for part in self.parts]
        self.dim = sum(self.dims)
        if spec.dim is not None and spec.dim != self.dim:
            raise UserError(f"encoder {spec.name!r}: expected {spec.dim}-d latents, its parts give {self.dim}")

    def encode(self, inputs: list[Any]) -> torch.Tensor:
        """Each part's latents, concatenated in the order of ``spec.parts``."""
        return torch.cat([part.encode(inputs) for part in self.parts], dim=1)

    def close(self) -> None:
        """Release every part."""
        for part in self.parts:
            part.close()
        self.parts = []
