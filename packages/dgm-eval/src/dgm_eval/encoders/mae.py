"""``mae``: the MAE ViT-L/16 self-supervised pre-training checkpoint, through transformers, without masking.

Weights: ``facebook/vit-mae-large`` (the Hugging Face conversion of the ``dl.fbaipublicfiles.com`` MAE
pre-training checkpoint). Preprocessing: PIL bicubic to 224x224, ImageNet mean/std (the public code's default MAE
path crashes; its working ``--clean_resize`` path is this one with clean-fid's resizer). No patch is masked
(``mask_ratio=0`` and an identity patch order). Features: CLS token after the final LayerNorm (1024-d).
"""

from __future__ import annotations

import torch

from dgm_eval.encoders.base import EncoderInfo, reject_depth
from dgm_eval.encoders.hf_backbone import HFBackboneEncoder
from dgm_eval.encoders.preprocessing import IMAGENET_MEAN, IMAGENET_STD, ImagePreprocessing
from dgm_eval.encoders.weights import load_hf_model

MAE_ID = "facebook/vit-mae-large"


def mae_preprocessing(clean_resize: bool = False) -> ImagePreprocessing:
    return ImagePreprocessing(
        size=(224, 224), mode="clean" if clean_resize else "pil", mean=IMAGENET_MEAN, std=IMAGENET_STD
    )


INFO = EncoderInfo(
    name="mae",
    dim=1024,
    weight_source=f"Hugging Face {MAE_ID}",
    preprocessing=mae_preprocessing().describe(),
    notes="MAE ViT-L/16 pre-training weights, no masking; CLS after the final LayerNorm",
)


class MAEEncoder(HFBackboneEncoder):
    """``ViTMAEModel`` without masking; features = CLS after the final LayerNorm, ``(N, hidden_size)``."""

    name = "mae"

    def heatmap_layer(self) -> tuple[torch.nn.Module, int]:
        """The last block's first LayerNorm, CLS dropped (no masking: the patches keep their order)."""
        layers = self.model.layers if hasattr(self.model, "layers") else self.model.encoder.layer
        return layers[-1].layernorm_before, 1

    def features(self, x: torch.Tensor) -> torch.Tensor:
        config = self.model.config
        num_patches = (config.image_size // config.patch_size) ** 2
        # identity patch order: argsort(noise) = arange, so no patch is dropped or shuffled
        noise = torch.arange(num_patches, device=x.device, dtype=torch.float32).expand(x.shape[0], num_patches)
        out = self.model(pixel_values=x, noise=noise)  # N x (1 + L) x D, after the final LayerNorm
        return out.last_hidden_state[:, 0]  # N x D


def build(arch: str | None, *, weights: str | None, depth: int, clean_resize: bool, seed: int) -> MAEEncoder:
    """Registry builder for ``mae`` (masking switched off through ``mask_ratio=0``)."""
    from transformers import ViTMAEModel

    reject_depth("mae", depth)
    model, weights_id = load_hf_model("mae", None, ViTMAEModel, MAE_ID, weights, mask_ratio=0.0)
    return MAEEncoder(model, weights_id=weights_id, preprocessing=mae_preprocessing(clean_resize))
