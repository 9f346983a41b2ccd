"""``dinov2``: DINOv2 ViT-S/B/L/g-14 through transformers; the final-norm CLS token (the paper's encoder).

Preprocessing as the paper's code (and EDM2's ``DINOv2Detector(resize_mode='pil')``): PIL bicubic resize to
exactly 224x224 (aspect ratio not kept), scale to [0, 1], ImageNet mean/std. The position embeddings (trained at
518 px) are interpolated to the 16x16 patch grid by the model. Weights: the Hugging Face conversions of the
``facebookresearch/dinov2`` torch.hub checkpoints (``facebook/dinov2-{small,base,large,giant}``).
"""

from __future__ import annotations

import torch

from dgm_eval.encoders.base import Encoder, EncoderInfo, reject_depth
from dgm_eval.encoders.preprocessing import IMAGENET_MEAN, IMAGENET_STD, ImagePreprocessing
from dgm_eval.encoders.weights import load_hf_model

DINOV2_SIZE = 224
#: arch -> (Hugging Face id, feature dimension)
DINOV2_ARCHS: dict[str, tuple[str, int]] = {
    "vits14": ("facebook/dinov2-small", 384),
    "vitb14": ("facebook/dinov2-base", 768),
    "vitl14": ("facebook/dinov2-large", 1024),
    "vitg14": ("facebook/dinov2-giant", 1536),
}
DEFAULT_ARCH = "vitl14"


def dinov2_preprocessing(clean_resize: bool = False) -> ImagePreprocessing:
    """PIL bicubic (or clean-fid) resize to 224x224, ImageNet normalisation."""
    return ImagePreprocessing(
        size=(DINOV2_SIZE, DINOV2_SIZE),
        mode="clean" if clean_resize else "pil",
        filter="bicubic",
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
    )


INFO = EncoderInfo(
    name="dinov2",
    dim=DINOV2_ARCHS[DEFAULT_ARCH][1],
    weight_source=f"Hugging Face {DINOV2_ARCHS[DEFAULT_ARCH][0]}",
    preprocessing=dinov2_preprocessing().describe(),
    archs=tuple(DINOV2_ARCHS),
    default_arch=DEFAULT_ARCH,
    dims={arch: dim for arch, (_, dim) in DINOV2_ARCHS.items()},
    weight_sources={arch: f"Hugging Face {hf_id}" for arch, (hf_id, _) in DINOV2_ARCHS.items()},
    notes="CLS token after the final LayerNorm (pooler_output); paper default vitl14, vitb14 ~4x cheaper",
)


class DINOv2Encoder(Encoder):
    """A transformers ``Dinov2Model``; features = final-norm CLS token, ``(N, hidden_size)``."""

    name = "dinov2"
    input_size = (DINOV2_SIZE, DINOV2_SIZE)

    def __init__(self, model: torch.nn.Module, *, arch: str, weights_id: str, clean_resize: bool = False) -> None:
        super().__init__()
        self.model = model
        self.arch = arch
        self.dim = int(model.config.hidden_size)
        self.weights_id = weights_id
        self.preprocessing = dinov2_preprocessing(clean_resize)
        self.freeze()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(pixel_values=x)  # last_hidden_state: N x (1 + 256) x D, after the final LayerNorm
        return out.pooler_output  # N x D (CLS)


def build(arch: str | None, *, weights: str | None, depth: int, clean_resize: bool, seed: int) -> DINOv2Encoder:
    """Registry builder: ``facebook/dinov2-*`` from the Hugging Face cache, or a local model directory."""
    from transformers import Dinov2Model

    reject_depth("dinov2", depth)
    arch = arch or DEFAULT_ARCH
    model, weights_id = load_hf_model(
        "dinov2", arch, Dinov2Model, DINOV2_ARCHS[arch][0], weights, allow_missing=("embeddings.mask_token",)
    )  # the mask token is only used in training
    return DINOv2Encoder(model, arch=arch, weights_id=weights_id, clean_resize=clean_resize)
