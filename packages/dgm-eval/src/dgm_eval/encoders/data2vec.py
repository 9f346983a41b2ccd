"""``data2vec``: data2vec-vision ViT-L/16, through transformers.

Weights: ``facebook/data2vec-vision-large``. Preprocessing: the model's Hugging Face processor settings (PIL
bicubic to 224x224, mean = std = 0.5). Features: ``pooler_output``, the LayerNorm of the mean patch token (1024-d).
"""

from __future__ import annotations

import torch

from dgm_eval.encoders.base import EncoderInfo, reject_depth
from dgm_eval.encoders.hf_backbone import HFBackboneEncoder
from dgm_eval.encoders.preprocessing import ImagePreprocessing
from dgm_eval.encoders.weights import load_hf_model

DATA2VEC_ID = "facebook/data2vec-vision-large"


def data2vec_preprocessing(clean_resize: bool = False) -> ImagePreprocessing:
    return ImagePreprocessing(
        size=(224, 224), mode="clean" if clean_resize else "pil", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)
    )


INFO = EncoderInfo(
    name="data2vec",
    dim=1024,
    weight_source=f"Hugging Face {DATA2VEC_ID}",
    preprocessing=data2vec_preprocessing().describe(),
    notes="data2vec-vision ViT-L/16; pooler_output (LayerNorm of the mean patch token)",
)


class Data2VecEncoder(HFBackboneEncoder):
    """``Data2VecVisionModel``; features = ``pooler_output``, ``(N, hidden_size)``."""

    name = "data2vec"

    def heatmap_layer(self) -> tuple[torch.nn.Module, int]:
        """The last block's first LayerNorm, CLS dropped."""
        return self.model.encoder.layer[-1].layernorm_before, 1

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=x).pooler_output  # N x D


def build(arch: str | None, *, weights: str | None, depth: int, clean_resize: bool, seed: int) -> Data2VecEncoder:
    """Registry builder for ``data2vec``."""
    from transformers import Data2VecVisionModel

    reject_depth("data2vec", depth)
    model, weights_id = load_hf_model(
        "data2vec",
        None,
        Data2VecVisionModel,
        DATA2VEC_ID,
        weights,
        # a pre-training-only checkpoint may lack the pooler LayerNorm: its init (weight 1, bias 0) is then used,
        # as transformers does for the public code
        allow_missing=("pooler.",),
        add_pooling_layer=True,
    )
    return Data2VecEncoder(model, weights_id=weights_id, preprocessing=data2vec_preprocessing(clean_resize))
