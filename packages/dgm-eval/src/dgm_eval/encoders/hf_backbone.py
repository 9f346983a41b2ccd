"""Base of the encoders that wrap a transformers vision backbone with a fixed 224x224 input."""

from __future__ import annotations

import torch

from dgm_eval.encoders.base import Encoder
from dgm_eval.encoders.preprocessing import ImagePreprocessing


class HFBackboneEncoder(Encoder):
    """A transformers vision backbone; the feature dimension comes from its config (tiny test models work too)."""

    input_size = (224, 224)

    def __init__(self, model: torch.nn.Module, *, weights_id: str, preprocessing: ImagePreprocessing) -> None:
        super().__init__()
        self.model = model
        hidden = getattr(model.config, "hidden_sizes", None)
        self.dim = int(hidden[-1] if hidden else model.config.hidden_size)
        self.weights_id = weights_id
        self.preprocessing = preprocessing
        self.freeze()
