"""``convnext``: ConvNeXt-L trained on ImageNet-22k at 224 px, through transformers.

Weights: ``facebook/convnext-large-224-22k`` (the checkpoint behind timm's ``convnext_large_in22k``, which the
paper's code used). Preprocessing (timm's eval transform for it): shorter side to 256 with PIL bicubic, centre crop
224, ImageNet mean/std. Features: global average pool of the last stage through the head LayerNorm (1536-d).
"""

from __future__ import annotations

import torch

from dgm_eval.encoders.base import EncoderInfo, reject_depth
from dgm_eval.encoders.hf_backbone import HFBackboneEncoder
from dgm_eval.encoders.preprocessing import IMAGENET_MEAN, IMAGENET_STD, ImagePreprocessing
from dgm_eval.encoders.weights import load_hf_model

CONVNEXT_ID = "facebook/convnext-large-224-22k"


def convnext_preprocessing(clean_resize: bool = False) -> ImagePreprocessing:
    return ImagePreprocessing(
        shorter_side=256,
        crop=(224, 224),
        mode="clean" if clean_resize else "pil",
        filter="bicubic",
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
    )


INFO = EncoderInfo(
    name="convnext",
    dim=1536,
    weight_source=f"Hugging Face {CONVNEXT_ID}",
    preprocessing=convnext_preprocessing().describe(),
    notes="ConvNeXt-L ImageNet-22k; global average pool + head LayerNorm (pooler_output)",
)


class ConvNeXtEncoder(HFBackboneEncoder):
    """``ConvNextModel``; features = LayerNorm(global average pool of the last stage), ``(N, hidden_sizes[-1])``."""

    name = "convnext"

    def heatmap_layer(self) -> tuple[torch.nn.Module, int]:
        """The last stage (its ``(N, C, 7, 7)`` map is pooled into the features)."""
        return self.model.encoder.stages[-1], -1

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=x).pooler_output  # N x C


def build(arch: str | None, *, weights: str | None, depth: int, clean_resize: bool, seed: int) -> ConvNeXtEncoder:
    """Registry builder for ``convnext``."""
    from transformers import ConvNextModel

    reject_depth("convnext", depth)
    model, weights_id = load_hf_model("convnext", None, ConvNextModel, CONVNEXT_ID, weights)
    return ConvNeXtEncoder(model, weights_id=weights_id, preprocessing=convnext_preprocessing(clean_resize))
