"""``dinov2``: DINOv2 ViT-S/B/L/g-14, computing exactly what the torch.hub model computes; final-norm CLS token.

The paper's encoder (and EDM2's FD-DINOv2) is ``torch.hub.load('facebookresearch/dinov2', 'dinov2_vitl14')``.
We run transformers' ``Dinov2Model`` (same blocks: patch embedding by a stride-14 convolution, pre-norm blocks with
LayerNorm eps 1e-6, LayerScale, GELU MLP or SwiGLU for g/14, final LayerNorm, CLS token) with one change that
matters: the position-embedding interpolation. The hub model resizes its 37x37 grid of embeddings (trained at
518 px) with ``F.interpolate(mode="bicubic", scale_factor=(h0 + 0.1) / 37, (w0 + 0.1) / 37)`` (an offset of 0.1
cells, no antialias, in float32), which places the samples differently from transformers' ``size=(h0, w0)``
(up to ~0.2 cell; ~6% of the embedding on a smooth field). :func:`hub_interpolate_pos_encoding` is the hub's
rule and replaces transformers' on every model this module builds.

Preprocessing as the paper's code (and EDM2's ``DINOv2Detector(resize_mode='pil')``): PIL bicubic resize to
exactly 224x224 (aspect ratio not kept), scale to [0, 1], ImageNet mean/std.

Weights: by default the Hugging Face conversions of the torch.hub checkpoints (``facebook/dinov2-{small,base,
large,giant}``). ``--weights`` also takes the torch.hub checkpoint itself (a local ``dinov2_vitl14_pretrain.pth``
or its URL, read from the torch.hub cache), converted to transformers' layout by :func:`hub_to_transformers`.
"""

from __future__ import annotations

import math
import re
import types

import torch
import torch.nn.functional as F

from dgm_eval.encoders.base import Encoder, EncoderInfo, reject_depth
from dgm_eval.encoders.preprocessing import IMAGENET_MEAN, IMAGENET_STD, ImagePreprocessing
from dgm_eval.encoders.weights import load_hf_model, load_url_state_dict

DINOV2_SIZE = 224
#: the hub model's interpolation offset, in grid cells
HUB_INTERPOLATE_OFFSET = 0.1
#: every DINOv2 arch has 64-d attention heads (S 6, B 12, L 16, g 24 heads)
HEAD_DIM = 64
#: arch -> (Hugging Face id, feature dimension)
DINOV2_ARCHS: dict[str, tuple[str, int]] = {
    "vits14": ("facebook/dinov2-small", 384),
    "vitb14": ("facebook/dinov2-base", 768),
    "vitl14": ("facebook/dinov2-large", 1024),
    "vitg14": ("facebook/dinov2-giant", 1536),
}
#: arch -> the torch.hub checkpoint URL (what ``torch.hub.load('facebookresearch/dinov2', 'dinov2_<arch>')`` loads)
HUB_URLS = {
    arch: f"https://dl.fbaipublicfiles.com/dinov2/dinov2_{arch}/dinov2_{arch}_pretrain.pth" for arch in DINOV2_ARCHS
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
    notes="CLS token after the final LayerNorm, torch.hub position-embedding interpolation (scale_factor, +0.1); "
    "--weights also takes the torch.hub .pth; paper default vitl14, vitb14 ~4x cheaper",
)


def hub_interpolate_pos_encoding(self: torch.nn.Module, embeddings: torch.Tensor, height: int, width: int):
    """The torch.hub DINOv2 position-embedding resize, as a method of a transformers ``Dinov2Embeddings``.

    Args:
        embeddings: ``(B, 1 + h0*w0, D)`` tokens (only the count and dtype are used).
        height, width: input image size in pixels; the patch grid is ``(height // 14, width // 14)``.

    Returns:
        ``(1, 1 + h0*w0, D)`` position embeddings in ``embeddings``' dtype: the class embedding, then the
        ``M x M`` grid bicubically resized with ``scale_factor = ((h0 + 0.1) / M, (w0 + 0.1) / M)`` (no antialias,
        float32), flattened row-major. Unchanged when the grid already fits a square input.
    """
    pos = self.position_embeddings
    num_patches = embeddings.shape[1] - 1
    num_positions = pos.shape[1] - 1
    if num_patches == num_positions and height == width:
        return pos
    patch = self.patch_embeddings.patch_size
    patch_h, patch_w = (patch, patch) if isinstance(patch, int) else patch
    h0, w0 = height // patch_h, width // patch_w
    side = int(math.sqrt(num_positions))
    dim = pos.shape[-1]
    grid = pos[:, 1:].float().reshape(1, side, side, dim).permute(0, 3, 1, 2)
    scale = (float((h0 + HUB_INTERPOLATE_OFFSET) / side), float((w0 + HUB_INTERPOLATE_OFFSET) / side))
    grid = F.interpolate(grid, scale_factor=scale, mode="bicubic", align_corners=False)
    if tuple(grid.shape[-2:]) != (h0, w0):  # pragma: no cover - the +0.1 offset guarantees the floor
        raise RuntimeError(f"position grid resized to {tuple(grid.shape[-2:])}, expected {(h0, w0)}")
    grid = grid.permute(0, 2, 3, 1).reshape(1, h0 * w0, dim)
    return torch.cat((pos[:, :1].float(), grid), dim=1).to(embeddings.dtype)


def use_hub_interpolation(model: torch.nn.Module) -> torch.nn.Module:
    """Make a transformers ``Dinov2Model`` resize its position embeddings as the torch.hub model does."""
    model.embeddings.interpolate_pos_encoding = types.MethodType(hub_interpolate_pos_encoding, model.embeddings)
    return model


_HUB_BLOCK = re.compile(r"^blocks\.(?:\d+\.)?(\d+)\.(.+)$")  # block_chunks > 0 adds a chunk index
_HUB_TO_HF_BLOCK = {
    "norm1.weight": "norm1.weight",
    "norm1.bias": "norm1.bias",
    "attn.proj.weight": "attention.o_proj.weight",
    "attn.proj.bias": "attention.o_proj.bias",
    "ls1.gamma": "layer_scale1.lambda1",
    "norm2.weight": "norm2.weight",
    "norm2.bias": "norm2.bias",
    "mlp.fc1.weight": "mlp.fc1.weight",
    "mlp.fc1.bias": "mlp.fc1.bias",
    "mlp.fc2.weight": "mlp.fc2.weight",
    "mlp.fc2.bias": "mlp.fc2.bias",
    "mlp.w3.weight": "mlp.down_proj.weight",
    "mlp.w3.bias": "mlp.down_proj.bias",
    "ls2.gamma": "layer_scale2.lambda1",
}
_HUB_TOP = {
    "cls_token": "embeddings.cls_token",
    "pos_embed": "embeddings.position_embeddings",
    "mask_token": "embeddings.mask_token",
    "patch_embed.proj.weight": "embeddings.patch_embeddings.projection.weight",
    "patch_embed.proj.bias": "embeddings.patch_embeddings.projection.bias",
    "norm.weight": "layernorm.weight",
    "norm.bias": "layernorm.bias",
}


def hub_to_transformers(state: dict[str, torch.Tensor]) -> tuple[dict, dict[str, torch.Tensor]]:
    """Convert a torch.hub DINOv2 state dict (``dinov2_vit*14_pretrain.pth``) to transformers' layout.

    Args:
        state: the hub checkpoint (keys ``cls_token``, ``pos_embed``, ``patch_embed.proj.*``,
            ``blocks.{i}.{norm1,attn.qkv,attn.proj,ls1,norm2,mlp.fc1/fc2 or mlp.w12/w3,ls2}.*``, ``norm.*``).

    Returns:
        ``(config_kwargs, hf_state)``: keyword arguments of ``Dinov2Config`` (sizes read from the shapes; 64-d
        heads) and the state dict of a ``Dinov2Model`` (the fused ``qkv`` split into q/k/v, SwiGLU ``w12`` into
        gate/up).

    Raises:
        ValueError: keys the conversion does not know (e.g. register tokens of the ``_reg`` models) or missing ones.
    """
    hf: dict[str, torch.Tensor] = {}
    unknown = []
    swiglu_hidden = None
    for key, value in state.items():
        if key in _HUB_TOP:
            hf[_HUB_TOP[key]] = value
            continue
        match = _HUB_BLOCK.match(key)
        if match is None:
            unknown.append(key)
            continue
        prefix, rest = f"encoder.layer.{match.group(1)}.", match.group(2)
        if rest in ("attn.qkv.weight", "attn.qkv.bias"):
            q, k, v = value.chunk(3, dim=0)
            kind = rest.rsplit(".", 1)[1]
            for name, part in (("q_proj", q), ("k_proj", k), ("v_proj", v)):
                hf[f"{prefix}attention.{name}.{kind}"] = part.clone()
        elif rest in ("mlp.w12.weight", "mlp.w12.bias"):
            gate, up = value.chunk(2, dim=0)
            swiglu_hidden = gate.shape[0]
            kind = rest.rsplit(".", 1)[1]
            hf[f"{prefix}mlp.gate_proj.{kind}"], hf[f"{prefix}mlp.up_proj.{kind}"] = gate.clone(), up.clone()
        elif rest in _HUB_TO_HF_BLOCK:
            hf[prefix + _HUB_TO_HF_BLOCK[rest]] = value
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f"not a plain torch.hub DINOv2 checkpoint: unknown keys {', '.join(sorted(unknown)[:5])}")
    for key in ("cls_token", "pos_embed", "patch_embed.proj.weight"):
        if key not in state:
            raise ValueError(f"not a torch.hub DINOv2 checkpoint: {key!r} is missing")
    hidden = int(state["cls_token"].shape[-1])
    patch = int(state["patch_embed.proj.weight"].shape[-1])
    side = math.isqrt(int(state["pos_embed"].shape[1]) - 1)
    layers = 1 + max(int(k.split(".")[2]) for k in hf if k.startswith("encoder.layer."))
    config = {
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": max(1, hidden // HEAD_DIM),
        "patch_size": patch,
        "image_size": side * patch,
        "layer_norm_eps": 1e-6,
        "hidden_act": "gelu",
        "use_swiglu_ffn": swiglu_hidden is not None,
    }
    # transformers derives the SwiGLU width from mlp_ratio as the hub does: (int(2/3 * 4D) + 7) // 8 * 8
    fc1 = state.get("blocks.0.mlp.fc1.weight")
    width = int(fc1.shape[0]) if fc1 is not None else 4 * hidden
    if width % hidden:
        raise ValueError(f"MLP width {width} is not a multiple of the embedding dimension {hidden}")
    config["mlp_ratio"] = width // hidden
    hf.setdefault("embeddings.mask_token", torch.zeros(1, hidden))  # unused at inference
    return config, hf


def model_from_hub_state(state: dict[str, torch.Tensor]) -> torch.nn.Module:
    """A transformers ``Dinov2Model`` holding a torch.hub state dict, with the hub's interpolation.

    Raises:
        ValueError: the state dict does not convert or does not fit (missing/unexpected keys, shapes).
    """
    from transformers import Dinov2Config, Dinov2Model

    config_kwargs, hf_state = hub_to_transformers(state)
    model = Dinov2Model(Dinov2Config(**config_kwargs))
    try:
        model.load_state_dict(hf_state, strict=True)
    except RuntimeError as err:
        raise ValueError(" ".join(str(err).split())[:400]) from err
    return use_hub_interpolation(model.eval())


class DINOv2Encoder(Encoder):
    """A transformers ``Dinov2Model`` with the hub's interpolation; features = final-norm CLS, ``(N, hidden)``."""

    name = "dinov2"
    input_size = (DINOV2_SIZE, DINOV2_SIZE)

    def __init__(self, model: torch.nn.Module, *, arch: str, weights_id: str, clean_resize: bool = False) -> None:
        super().__init__()
        self.model = use_hub_interpolation(model)
        self.arch = arch
        self.dim = int(model.config.hidden_size)
        self.weights_id = weights_id
        self.preprocessing = dinov2_preprocessing(clean_resize)
        self.freeze()

    def preprocess_id(self) -> str:
        return super().preprocess_id() + f"|posinterp=hub-scale+{HUB_INTERPOLATE_OFFSET}"

    def heatmap_layer(self) -> tuple[torch.nn.Module, int]:
        """The last block's first LayerNorm (the paper's ``blocks.23.norm1`` for ViT-L/14), CLS dropped."""
        return self.model.encoder.layer[-1].norm1, 1

    def features(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(pixel_values=x)  # last_hidden_state: N x (1 + 256) x D, after the final LayerNorm
        return out.pooler_output  # N x D (CLS)


def _is_hub_checkpoint(weights: str | None) -> bool:
    if weights is None:
        return False
    return "://" in weights or weights.lower().endswith((".pth", ".pt"))


def build(arch: str | None, *, weights: str | None, depth: int, clean_resize: bool, seed: int) -> DINOv2Encoder:
    """Registry builder: ``facebook/dinov2-*`` (HF cache), a local model directory, or a torch.hub ``.pth``/URL."""
    from transformers import Dinov2Model

    from sixlab_shared import UserError

    reject_depth("dinov2", depth)
    arch = arch or DEFAULT_ARCH
    if _is_hub_checkpoint(weights):
        state, weights_id = load_url_state_dict("dinov2", HUB_URLS[arch], weights)
        try:
            model = model_from_hub_state(state)
        except ValueError as err:
            raise UserError(f"weights {weights!r} do not fit encoder 'dinov2' ({arch}): {err}") from err
        return DINOv2Encoder(model, arch=arch, weights_id=weights_id, clean_resize=clean_resize)
    model, weights_id = load_hf_model(
        "dinov2", arch, Dinov2Model, DINOV2_ARCHS[arch][0], weights, allow_missing=("embeddings.mask_token",)
    )  # the mask token is only used in training
    return DINOv2Encoder(model, arch=arch, weights_id=weights_id, clean_resize=clean_resize)
