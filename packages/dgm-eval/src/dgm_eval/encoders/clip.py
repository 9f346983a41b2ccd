"""``clip``: the CLIP ViT image tower through transformers; ``ln_post(CLS)`` before the projection.

Weights: open_clip's ViT-L/14 trained on DataComp-XL (``datacomp_xl_s13b_b90k``, as the paper's code), in its
Hugging Face form (``laion/CLIP-ViT-L-14-DataComp.XL-s13B-b90K``); the B/32, B/16 and bigG/14 archs take the
LAION-2B checkpoints. ``vitl14_openai`` is OpenAI's own ViT-L/14 (``openai/clip-vit-large-patch14``, QuickGELU, as
in Radford et al.); the default stays the DataComp one because that is what the paper's code loads (its figures
were computed with it). Preprocessing: PIL bicubic to 224x224 (aspect ratio not kept, no centre crop, as the
paper's code), OpenAI CLIP mean/std. The HF conversions hold the open_clip/OpenAI weights with the fused attention
projection split into q/k/v; the tower is ``pre_layrnorm`` (open_clip ``ln_pre``), the blocks, ``post_layernorm``
(``ln_post``) on the CLS token and the projection, as open_clip's ``VisionTransformer``.

``--depth``: 0 (default) = post-LayerNorm CLS before the projection (1024-d for L/14); 1 = the projected image
embedding (768-d for L/14); -k = the CLS token after dropping the last k transformer blocks, through the same
post-LayerNorm (the dropped blocks are removed from the model, so they cost nothing).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from dgm_eval.encoders.base import Encoder, EncoderInfo
from dgm_eval.encoders.preprocessing import CLIP_MEAN, CLIP_STD, ImagePreprocessing
from dgm_eval.encoders.weights import load_hf_model

CLIP_SIZE = 224
#: arch -> (Hugging Face id, feature dimension before the projection)
CLIP_ARCHS: dict[str, tuple[str, int]] = {
    "vitl14": ("laion/CLIP-ViT-L-14-DataComp.XL-s13B-b90K", 1024),
    "vitb16": ("laion/CLIP-ViT-B-16-laion2B-s34B-b88K", 768),
    "vitb32": ("laion/CLIP-ViT-B-32-laion2B-s34B-b79K", 768),
    "vitbigg14": ("laion/CLIP-ViT-bigG-14-laion2B-39B-b160k", 1664),
    "vitl14_openai": ("openai/clip-vit-large-patch14", 1024),
}
#: arch -> projection dimension (``--depth 1``); a full CLIPModel checkpoint keeps it in the top-level config,
#: which the vision-only class would otherwise not see (and re-initialise the projection at the default 512).
CLIP_PROJECTION_DIMS = {"vitl14": 768, "vitb16": 512, "vitb32": 512, "vitbigg14": 1280, "vitl14_openai": 768}
DEFAULT_ARCH = "vitl14"


def clip_preprocessing(clean_resize: bool = False) -> ImagePreprocessing:
    """PIL bicubic (or clean-fid) resize to 224x224, OpenAI CLIP normalisation."""
    return ImagePreprocessing(
        size=(CLIP_SIZE, CLIP_SIZE),
        mode="clean" if clean_resize else "pil",
        filter="bicubic",
        mean=CLIP_MEAN,
        std=CLIP_STD,
    )


INFO = EncoderInfo(
    name="clip",
    dim=CLIP_ARCHS[DEFAULT_ARCH][1],
    weight_source=f"Hugging Face {CLIP_ARCHS[DEFAULT_ARCH][0]}",
    preprocessing=clip_preprocessing().describe(),
    archs=tuple(CLIP_ARCHS),
    default_arch=DEFAULT_ARCH,
    dims={arch: dim for arch, (_, dim) in CLIP_ARCHS.items()},
    weight_sources={arch: f"Hugging Face {hf_id}" for arch, (hf_id, _) in CLIP_ARCHS.items()},
    notes="post-LayerNorm CLS before the projection; --depth 1: projected embedding (768 for L/14); "
    "--depth -k: drop the last k blocks",
)


class CLIPEncoder(Encoder):
    """A transformers ``CLIPVisionModelWithProjection``, cut at the layer ``depth`` selects."""

    name = "clip"
    input_size = (CLIP_SIZE, CLIP_SIZE)

    def __init__(
        self, model: torch.nn.Module, *, arch: str, weights_id: str, depth: int = 0, clean_resize: bool = False
    ) -> None:
        super().__init__()
        from sixlab_shared import UserError

        layers = model.vision_model.encoder.layers
        if depth > 1 or depth <= -len(layers):
            raise UserError(
                f"--depth {depth} is not valid for clip ({arch}, {len(layers)} blocks); use 1 (projection), "
                f"0 (default) or -1..-{len(layers) - 1} (drop the last k blocks)"
            )
        if depth < 0:
            model.vision_model.encoder.layers = layers[: len(layers) + depth]
        self.model = model
        self.arch = arch
        self.depth = depth
        self.dim = int(model.config.projection_dim if depth == 1 else model.config.hidden_size)
        self.weights_id = weights_id
        self.preprocessing = clip_preprocessing(clean_resize)
        self.freeze()

    def heatmap_layer(self) -> tuple[torch.nn.Module, int]:
        """The last kept block's first LayerNorm, CLS dropped."""
        return self.model.vision_model.encoder.layers[-1].layer_norm1, 1

    def features(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.model.vision_model(pixel_values=x).pooler_output  # N x hidden: post_layernorm(CLS)
        if self.depth == 1:
            return self.model.visual_projection(pooled)  # N x projection_dim
        return pooled


def _local_projection_dim(weights: str | None) -> int | None:
    """``projection_dim`` from a local model directory's config.json (CLIPModel or vision-only), if any."""
    if weights is None:
        return None
    config_file = Path(weights).expanduser() / "config.json"
    if not config_file.is_file():
        return None
    config = json.loads(config_file.read_text())
    value = config.get("projection_dim") or config.get("vision_config", {}).get("projection_dim")
    return int(value) if value else None


def build(arch: str | None, *, weights: str | None, depth: int, clean_resize: bool, seed: int) -> CLIPEncoder:
    """Registry builder: the laion/open_clip checkpoint from the Hugging Face cache, or a local model directory."""
    from transformers import CLIPVisionModelWithProjection

    arch = arch or DEFAULT_ARCH
    projection_dim = _local_projection_dim(weights) or CLIP_PROJECTION_DIMS[arch]
    model, weights_id = load_hf_model(
        "clip",
        arch,
        CLIPVisionModelWithProjection,
        CLIP_ARCHS[arch][0],
        weights,
        allow_missing=() if depth == 1 else ("visual_projection.",),
        projection_dim=projection_dim,
    )
    return CLIPEncoder(model, arch=arch, weights_id=weights_id, depth=depth, clean_resize=clean_resize)
