"""DINOv2 computes what the torch.hub model computes: the hub's forward written out here from its definition.

The hub side below is written from the definition of ``facebookresearch/dinov2``'s ``DinoVisionTransformer``
(patch embedding by a stride-p convolution, class token, position embeddings resized with
``F.interpolate(scale_factor=((h0 + 0.1) / M, (w0 + 0.1) / M), mode='bicubic')`` in float32, pre-norm blocks
``x + γ1·attn(LN(x))``, ``x + γ2·ffn(LN(x))`` with LayerNorm eps 1e-6, fused qkv, GELU MLP or SwiGLU
``w3(silu(a) * b)`` with ``[a, b] = w12(x)``, final LayerNorm, CLS token). It reads the hub-layout state dict
directly, so it is independent of transformers and of our conversion.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dgm_eval.encoders import load_encoder
from dgm_eval.encoders.dinov2 import hub_to_transformers, model_from_hub_state
from sixlab_shared import UserError

DIM, DEPTH, HEADS, PATCH, GRID = 128, 2, 2, 14, 37


def _hub_state(seed: int, swiglu: bool = False) -> dict[str, torch.Tensor]:
    """Random weights in the torch.hub layout (ViT with 64-d heads, a 37x37 position grid as the real ones)."""
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=0.05):
        return torch.randn(*shape, generator=gen) * scale

    state = {
        "cls_token": rnd(1, 1, DIM, scale=0.5),
        "pos_embed": rnd(1, 1 + GRID * GRID, DIM, scale=0.5),
        "mask_token": torch.zeros(1, DIM),
        "patch_embed.proj.weight": rnd(DIM, 3, PATCH, PATCH),
        "patch_embed.proj.bias": rnd(DIM),
        "norm.weight": 1 + rnd(DIM, scale=0.2),
        "norm.bias": rnd(DIM, scale=0.2),
    }
    hidden = 4 * DIM
    swi = (int(hidden * 2 / 3) + 7) // 8 * 8
    for i in range(DEPTH):
        b = f"blocks.{i}."
        state |= {
            b + "norm1.weight": 1 + rnd(DIM, scale=0.2),
            b + "norm1.bias": rnd(DIM, scale=0.2),
            b + "attn.qkv.weight": rnd(3 * DIM, DIM, scale=0.15),
            b + "attn.qkv.bias": rnd(3 * DIM),
            b + "attn.proj.weight": rnd(DIM, DIM, scale=0.1),
            b + "attn.proj.bias": rnd(DIM),
            b + "ls1.gamma": rnd(DIM, scale=0.5),
            b + "norm2.weight": 1 + rnd(DIM, scale=0.2),
            b + "norm2.bias": rnd(DIM, scale=0.2),
            b + "ls2.gamma": rnd(DIM, scale=0.5),
        }
        if swiglu:
            state |= {
                b + "mlp.w12.weight": rnd(2 * swi, DIM, scale=0.1),
                b + "mlp.w12.bias": rnd(2 * swi),
                b + "mlp.w3.weight": rnd(DIM, swi, scale=0.1),
                b + "mlp.w3.bias": rnd(DIM),
            }
        else:
            state |= {
                b + "mlp.fc1.weight": rnd(hidden, DIM, scale=0.1),
                b + "mlp.fc1.bias": rnd(hidden),
                b + "mlp.fc2.weight": rnd(DIM, hidden, scale=0.1),
                b + "mlp.fc2.bias": rnd(DIM),
            }
    return state


def _hub_pos_embed(pos: torch.Tensor, h: int, w: int) -> torch.Tensor:
    n = pos.shape[1] - 1
    m = int(math.sqrt(n))
    h0, w0 = h // PATCH + 0.1, w // PATCH + 0.1
    grid = pos[:, 1:].float().reshape(1, m, m, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, scale_factor=(h0 / m, w0 / m), mode="bicubic")
    grid = grid.permute(0, 2, 3, 1).reshape(1, -1, pos.shape[-1])
    return torch.cat((pos[:, :1], grid), dim=1)


def _hub_forward(state: dict[str, torch.Tensor], x: torch.Tensor, swiglu: bool = False) -> torch.Tensor:
    """The hub's ``model(x)`` = final-norm CLS token, from its definition, on the hub-layout weights."""
    x = x.double()
    s = {k: v.double() for k, v in state.items()}
    b, _, h, w = x.shape
    t = F.conv2d(x, s["patch_embed.proj.weight"], s["patch_embed.proj.bias"], stride=PATCH)
    t = t.flatten(2).transpose(1, 2)
    t = torch.cat((s["cls_token"].expand(b, -1, -1), t), dim=1)
    t = t + _hub_pos_embed(state["pos_embed"], h, w).double()
    for i in range(DEPTH):
        p = f"blocks.{i}."
        y = F.layer_norm(t, (DIM,), s[p + "norm1.weight"], s[p + "norm1.bias"], eps=1e-6)
        qkv = F.linear(y, s[p + "attn.qkv.weight"], s[p + "attn.qkv.bias"])
        q, k, v = qkv.reshape(b, -1, 3, HEADS, DIM // HEADS).permute(2, 0, 3, 1, 4)
        attn = ((q * (DIM // HEADS) ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
        y = (attn @ v).transpose(1, 2).reshape(b, -1, DIM)
        t = t + s[p + "ls1.gamma"] * F.linear(y, s[p + "attn.proj.weight"], s[p + "attn.proj.bias"])
        y = F.layer_norm(t, (DIM,), s[p + "norm2.weight"], s[p + "norm2.bias"], eps=1e-6)
        if swiglu:
            a, g = F.linear(y, s[p + "mlp.w12.weight"], s[p + "mlp.w12.bias"]).chunk(2, dim=-1)
            y = F.linear(F.silu(a) * g, s[p + "mlp.w3.weight"], s[p + "mlp.w3.bias"])
        else:
            y = F.gelu(F.linear(y, s[p + "mlp.fc1.weight"], s[p + "mlp.fc1.bias"]))
            y = F.linear(y, s[p + "mlp.fc2.weight"], s[p + "mlp.fc2.bias"])
        t = t + s[p + "ls2.gamma"] * y
    return F.layer_norm(t, (DIM,), s["norm.weight"], s["norm.bias"], eps=1e-6)[:, 0]


@pytest.mark.parametrize("swiglu", [False, True], ids=["mlp", "swiglu-g14"])
def test_features_equal_the_hub_forward_on_shared_random_weights(swiglu):
    state = _hub_state(seed=1, swiglu=swiglu)
    x = torch.randn(3, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    expected = _hub_forward(state, x, swiglu=swiglu)
    model = model_from_hub_state(state)
    with torch.no_grad():
        ours = model(pixel_values=x).pooler_output
    np.testing.assert_allclose(ours.numpy(), expected.numpy(), rtol=0, atol=1e-5)
    # transformers' own size=(16, 16) interpolation places the samples differently: the test can tell them apart
    from transformers.models.dinov2.modeling_dinov2 import Dinov2Embeddings

    del model.embeddings.interpolate_pos_encoding  # back to the class's (transformers') method
    assert isinstance(model.embeddings, Dinov2Embeddings)
    with torch.no_grad():
        stock = model(pixel_values=x).pooler_output
    assert (stock - expected.float()).abs().max() > 1e-3


def test_position_grid_resize_differs_from_an_explicit_size():
    pos = _hub_state(seed=3)["pos_embed"]
    hub = _hub_pos_embed(pos, 224, 224)[:, 1:]
    grid = pos[:, 1:].reshape(1, GRID, GRID, DIM).permute(0, 3, 1, 2)
    sized = F.interpolate(grid, size=(16, 16), mode="bicubic").permute(0, 2, 3, 1).reshape(1, -1, DIM)
    assert hub.shape == sized.shape == (1, 256, DIM)
    assert (hub - sized).abs().max() > 1e-2


def test_hub_checkpoint_loads_through_weights_and_extracts(tmp_path, images):
    state = _hub_state(seed=4)
    path = tmp_path / "dinov2_vitl14_pretrain.pth"
    torch.save(state, path)
    encoder = load_encoder("dinov2", weights=str(path), device="cpu")
    assert encoder.dim == DIM and encoder.weights_id == str(path.resolve())
    x = torch.stack([encoder.transform(im) for im in images[:2]])
    with torch.no_grad():
        ours = encoder(x)
    np.testing.assert_allclose(ours.numpy(), _hub_forward(state, x).numpy(), rtol=0, atol=1e-5)


def test_hf_directory_weights_also_use_the_hub_interpolation(tiny_hf_models, images):
    """A saved transformers model gives the hub's numbers once its weights are written in the hub layout."""
    from transformers import Dinov2Model

    model = Dinov2Model.from_pretrained(tiny_hf_models["dinov2"]).eval()
    config, _ = hub_to_transformers(_hub_state(seed=0))
    assert config["layer_norm_eps"] == model.config.layer_norm_eps == 1e-6
    encoder = load_encoder("dinov2", weights=str(tiny_hf_models["dinov2"]), device="cpu")
    assert encoder.model.embeddings.interpolate_pos_encoding.__func__.__name__ == "hub_interpolate_pos_encoding"


def test_bad_hub_checkpoints_are_one_line_errors(tmp_path):
    state = _hub_state(seed=5)
    state["register_tokens"] = torch.zeros(1, 4, DIM)
    path = tmp_path / "dinov2_vitl14_reg4_pretrain.pth"
    torch.save(state, path)
    with pytest.raises(UserError, match="unknown keys register_tokens"):
        load_encoder("dinov2", weights=str(path))
    with pytest.raises(UserError, match="does not exist"):
        load_encoder("dinov2", weights=str(tmp_path / "missing.pth"))


def test_fd_heatmap_reads_the_last_blocks_norm1_patch_tokens(images):
    from dgm_eval.encoders.dinov2 import DINOv2Encoder
    from dgm_eval.heatmaps import fd_heatmaps
    from dgm_eval.metrics import feature_statistics

    encoder = DINOv2Encoder(model_from_hub_state(_hub_state(seed=6)), arch="vitl14", weights_id="random")
    module, prefix = encoder.heatmap_layer()
    assert module is encoder.model.encoder.layer[-1].norm1 and prefix == 1  # hub: blocks.{last}.norm1, CLS dropped
    x = torch.stack([encoder.transform(im) for im in images])
    with torch.no_grad():
        feats = encoder(x).double().numpy()
    ref = feature_statistics(np.random.default_rng(0).normal(size=(40, DIM)))
    maps = fd_heatmaps(encoder, images[:2], [0, 1], ref, feats, size=32)
    assert [m.shape for m in maps] == [(32, 32), (32, 32)] and all(m.max() > 0 for m in maps)
