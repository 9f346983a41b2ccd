"""CLIP computes what open_clip's ``VisionTransformer`` computes: its forward written out here from its definition.

open_clip's image tower (the paper's code loads ``ViT-L-14`` / ``datacomp_xl_s13b_b90k`` through it): a patch
convolution without bias, the class embedding prepended, learned position embeddings added, ``ln_pre``, residual
blocks ``x + attn(ln_1(x))`` (``nn.MultiheadAttention`` with a fused ``in_proj``) and ``x + mlp(ln_2(x))``
(``c_fc``, GELU, or QuickGELU ``x·σ(1.702x)`` for OpenAI's weights, ``c_proj``), then ``ln_post`` of the class
token and ``@ proj``. LayerNorm eps 1e-5. The test builds random weights in open_clip's layout, maps them onto
transformers' names (the mapping the Hugging Face conversions use), and compares our encoder (depth 0: ``ln_post``
CLS before the projection; depth 1: projected) with the formula at 1e-5.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dgm_eval.encoders.clip import CLIPEncoder

W, LAYERS, HEADS, PATCH, SIZE, PROJ = 64, 2, 4, 32, 224, 16


def _open_clip_state(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=0.05):
        return torch.randn(*shape, generator=g) * scale

    grid = SIZE // PATCH
    state = {
        "conv1.weight": rnd(W, 3, PATCH, PATCH),
        "class_embedding": rnd(W, scale=0.5),
        "positional_embedding": rnd(grid * grid + 1, W, scale=0.5),
        "ln_pre.weight": 1 + rnd(W, scale=0.2),
        "ln_pre.bias": rnd(W, scale=0.2),
        "ln_post.weight": 1 + rnd(W, scale=0.2),
        "ln_post.bias": rnd(W, scale=0.2),
        "proj": rnd(W, PROJ, scale=0.2),
    }
    for i in range(LAYERS):
        b = f"transformer.resblocks.{i}."
        state |= {
            b + "ln_1.weight": 1 + rnd(W, scale=0.2),
            b + "ln_1.bias": rnd(W, scale=0.2),
            b + "attn.in_proj_weight": rnd(3 * W, W, scale=0.15),
            b + "attn.in_proj_bias": rnd(3 * W),
            b + "attn.out_proj.weight": rnd(W, W, scale=0.1),
            b + "attn.out_proj.bias": rnd(W),
            b + "ln_2.weight": 1 + rnd(W, scale=0.2),
            b + "ln_2.bias": rnd(W, scale=0.2),
            b + "mlp.c_fc.weight": rnd(4 * W, W, scale=0.1),
            b + "mlp.c_fc.bias": rnd(4 * W),
            b + "mlp.c_proj.weight": rnd(W, 4 * W, scale=0.1),
            b + "mlp.c_proj.bias": rnd(W),
        }
    return state


def _open_clip_forward(s: dict[str, torch.Tensor], x: torch.Tensor, quick_gelu: bool) -> tuple:
    s = {k: v.double() for k, v in s.items()}
    x = x.double()
    b = x.shape[0]
    t = F.conv2d(x, s["conv1.weight"], stride=PATCH).reshape(b, W, -1).permute(0, 2, 1)
    t = torch.cat([s["class_embedding"].expand(b, 1, W), t], dim=1) + s["positional_embedding"]
    t = F.layer_norm(t, (W,), s["ln_pre.weight"], s["ln_pre.bias"], eps=1e-5)
    for i in range(LAYERS):
        p = f"transformer.resblocks.{i}."
        y = F.layer_norm(t, (W,), s[p + "ln_1.weight"], s[p + "ln_1.bias"], eps=1e-5)
        q, k, v = F.linear(y, s[p + "attn.in_proj_weight"], s[p + "attn.in_proj_bias"]).chunk(3, dim=-1)
        q, k, v = (z.reshape(b, -1, HEADS, W // HEADS).transpose(1, 2) for z in (q, k, v))
        a = ((q @ k.transpose(-2, -1)) / (W // HEADS) ** 0.5).softmax(-1) @ v
        t = t + F.linear(
            a.transpose(1, 2).reshape(b, -1, W), s[p + "attn.out_proj.weight"], s[p + "attn.out_proj.bias"]
        )
        y = F.layer_norm(t, (W,), s[p + "ln_2.weight"], s[p + "ln_2.bias"], eps=1e-5)
        h = F.linear(y, s[p + "mlp.c_fc.weight"], s[p + "mlp.c_fc.bias"])
        h = h * torch.sigmoid(1.702 * h) if quick_gelu else F.gelu(h)
        t = t + F.linear(h, s[p + "mlp.c_proj.weight"], s[p + "mlp.c_proj.bias"])
    pooled = F.layer_norm(t[:, 0], (W,), s["ln_post.weight"], s["ln_post.bias"], eps=1e-5)
    return pooled, pooled @ s["proj"]


def _to_transformers(s: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    v = "vision_model."
    out = {
        v + "embeddings.patch_embedding.weight": s["conv1.weight"],
        v + "embeddings.class_embedding": s["class_embedding"],
        v + "embeddings.position_embedding.weight": s["positional_embedding"],
        v + "pre_layrnorm.weight": s["ln_pre.weight"],
        v + "pre_layrnorm.bias": s["ln_pre.bias"],
        v + "post_layernorm.weight": s["ln_post.weight"],
        v + "post_layernorm.bias": s["ln_post.bias"],
        "visual_projection.weight": s["proj"].T.contiguous(),
    }
    for i in range(LAYERS):
        p, h = f"transformer.resblocks.{i}.", f"{v}encoder.layers.{i}."
        weights, biases = s[p + "attn.in_proj_weight"].chunk(3), s[p + "attn.in_proj_bias"].chunk(3)
        for part, w, bias in zip("qkv", weights, biases, strict=True):
            out[f"{h}self_attn.{part}_proj.weight"], out[f"{h}self_attn.{part}_proj.bias"] = w, bias
        pairs = {
            "attn.out_proj": "self_attn.out_proj", "ln_1": "layer_norm1", "ln_2": "layer_norm2",
            "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2",
        }  # fmt: skip
        for ours, theirs in pairs.items():
            for kind in ("weight", "bias"):
                out[f"{h}{theirs}.{kind}"] = s[f"{p}{ours}.{kind}"]
    return out


@pytest.mark.parametrize("quick_gelu", [False, True], ids=["datacomp-gelu", "openai-quickgelu"])
def test_clip_features_equal_the_open_clip_forward(quick_gelu):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    state = _open_clip_state(seed=3)
    config = CLIPVisionConfig(
        hidden_size=W, intermediate_size=4 * W, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
        image_size=SIZE, patch_size=PATCH, projection_dim=PROJ, layer_norm_eps=1e-5,
        hidden_act="quick_gelu" if quick_gelu else "gelu",
    )  # fmt: skip
    model = CLIPVisionModelWithProjection(config)
    missing, unexpected = model.load_state_dict(_to_transformers(state), strict=False)
    assert not unexpected and all("position_ids" in key for key in missing)
    x = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(4))
    pooled, projected = _open_clip_forward(state, x, quick_gelu)
    for depth, expected in ((0, pooled), (1, projected)):
        encoder = CLIPEncoder(model, arch="vitl14", weights_id="random", depth=depth)
        with torch.no_grad():
            np.testing.assert_allclose(encoder(x).numpy(), expected.numpy(), rtol=0, atol=1e-5)
    # the activation matters: the other one is told apart
    other = CLIPVisionModelWithProjection(
        CLIPVisionConfig(**{**config.to_dict(), "hidden_act": "gelu" if quick_gelu else "quick_gelu"})
    )
    other.load_state_dict(_to_transformers(state), strict=False)
    with torch.no_grad():
        assert (CLIPEncoder(other, arch="vitl14", weights_id="random")(x) - pooled.float()).abs().max() > 1e-4
