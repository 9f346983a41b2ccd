"""The feature cache key holds everything features depend on: each part, changed alone, recomputes."""

from __future__ import annotations

import dataclasses
import os
import shutil

import numpy as np
import torch

from dgm_eval import cache as cache_module
from dgm_eval import features as features_module
from dgm_eval.cache import FeatureCache
from dgm_eval.encoders import load_encoder
from dgm_eval.features import image_features
from dgm_eval.inputs import ImageSource


def _folder(tmp_path, n=6, ext="png"):
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, size=(20, 20, 3), dtype=np.uint8)).save(folder / f"im{i}.{ext}")
    return folder


def _run(folder, encoder, cache, **kwargs):
    return image_features(ImageSource.from_folder(folder), encoder, cache=cache, batch_size=8, **kwargs)


def test_precision_versions_preprocessing_and_config_each_recompute(tmp_path, monkeypatch):
    folder = _folder(tmp_path)
    cache = FeatureCache(tmp_path / "cache")
    enc = load_encoder("random", device="cpu", seed=0)
    assert not _run(folder, enc, cache).cached
    assert _run(folder, enc, cache).cached
    assert not _run(folder, enc, cache, precision="bf16").cached  # a bf16 run is never served fp32 features
    assert _run(folder, enc, cache, precision="bf16").cached
    # every preprocessing parameter, not only the resize mode
    enc.preprocessing = dataclasses.replace(enc.preprocessing, filter="bilinear")
    assert not _run(folder, enc, cache).cached
    enc2 = load_encoder("random", device="cpu", seed=0)
    enc2.preprocessing = dataclasses.replace(enc2.preprocessing, mean=(0.4, 0.5, 0.5), std=(0.2, 0.2, 0.2))
    assert not _run(folder, enc2, cache).cached
    # library versions
    real = features_module.library_versions()
    monkeypatch.setattr(features_module, "library_versions", lambda: {**real, "torch": "0.0.1"})
    assert not _run(folder, load_encoder("random", device="cpu", seed=0), cache).cached
    monkeypatch.setattr(features_module, "library_versions", lambda: {**real, "transformers": "0.0.1"})
    assert not _run(folder, load_encoder("random", device="cpu", seed=0), cache).cached
    monkeypatch.setattr(features_module, "__version__", "9.9.9")
    monkeypatch.setattr(features_module, "library_versions", lambda: {**real, "dgm-eval": "9.9.9"})
    assert not _run(folder, load_encoder("random", device="cpu", seed=0), cache).cached


def test_model_config_and_local_weight_content_recompute(tmp_path, tiny_hf_models):
    folder = _folder(tmp_path, n=2)
    cache = FeatureCache(tmp_path / "cache")
    local = tmp_path / "dino"
    shutil.copytree(tiny_hf_models["dinov2"], local)
    first = _run(folder, load_encoder("dinov2", weights=str(local), device="cpu"), cache)
    assert not first.cached and _run(folder, load_encoder("dinov2", weights=str(local), device="cpu"), cache).cached
    # the encoder config (here the LayerNorm eps) is part of the key
    enc = load_encoder("dinov2", weights=str(local), device="cpu")
    enc.model.config.layer_norm_eps = 1e-5
    assert not _run(folder, enc, cache).cached
    # same folder path, new weight bytes: recomputed (keyed by content, not by path)
    from transformers import Dinov2Model

    model = Dinov2Model.from_pretrained(local)
    with torch.no_grad():
        model.layernorm.bias.add_(0.5)
    model.save_pretrained(local)
    changed = _run(folder, load_encoder("dinov2", weights=str(local), device="cpu"), cache)
    assert not changed.cached and not np.allclose(changed.features, first.features)


def test_hub_weight_file_content_recomputes(tmp_path):
    folder = _folder(tmp_path, n=2)
    cache = FeatureCache(tmp_path / "cache")
    from dgm_eval.encoders.dinov2 import hub_to_transformers  # noqa: F401 - the layout the file must have

    sys_path = tmp_path / "dinov2_vits14_pretrain.pth"
    state = _tiny_hub_state(0)
    torch.save(state, sys_path)
    a = _run(folder, load_encoder("dinov2", "vits14", weights=str(sys_path), device="cpu"), cache)
    assert not a.cached
    assert _run(folder, load_encoder("dinov2", "vits14", weights=str(sys_path), device="cpu"), cache).cached
    torch.save(_tiny_hub_state(1), sys_path)
    assert not _run(folder, load_encoder("dinov2", "vits14", weights=str(sys_path), device="cpu"), cache).cached


def _tiny_hub_state(seed):
    gen = torch.Generator().manual_seed(seed)
    d = 64
    state = {
        "cls_token": torch.randn(1, 1, d, generator=gen),
        "pos_embed": torch.randn(1, 1 + 4, d, generator=gen),
        "patch_embed.proj.weight": torch.randn(d, 3, 14, 14, generator=gen) * 0.02,
        "patch_embed.proj.bias": torch.zeros(d),
        "norm.weight": torch.ones(d),
        "norm.bias": torch.randn(d, generator=gen),
    }
    b = "blocks.0."
    for name, shape in [
        ("norm1.weight", (d,)), ("norm1.bias", (d,)), ("attn.qkv.weight", (3 * d, d)), ("attn.qkv.bias", (3 * d,)),
        ("attn.proj.weight", (d, d)), ("attn.proj.bias", (d,)), ("ls1.gamma", (d,)), ("norm2.weight", (d,)),
        ("norm2.bias", (d,)), ("mlp.fc1.weight", (4 * d, d)), ("mlp.fc1.bias", (4 * d,)),
        ("mlp.fc2.weight", (d, 4 * d)), ("mlp.fc2.bias", (d,)), ("ls2.gamma", (d,)),
    ]:  # fmt: skip
        state[b + name] = torch.randn(*shape, generator=gen) * 0.05
    return state


def test_a_hit_reads_no_image_bytes_unless_verify(tmp_path, monkeypatch):
    folder = _folder(tmp_path)
    cache = FeatureCache(tmp_path / "cache")
    enc = load_encoder("random", device="cpu", seed=0)
    calls = []
    real = cache_module.sha256_file
    monkeypatch.setattr(cache_module, "sha256_file", lambda path, **kw: calls.append(path) or real(path, **kw))
    first = _run(folder, enc, cache)
    assert len(calls) == 6 and not first.cached
    calls.clear()
    assert _run(folder, enc, cache).cached and calls == []  # (path, size, mtime) unchanged: nothing re-read
    assert _run(folder, enc, cache, verify_cache=True).cached and len(calls) == 6
    calls.clear()
    assert not _run(folder, enc, FeatureCache(tmp_path / "off", enabled=False)).cached and calls == []  # no key
    # an edit that keeps size and mtime (BMP is uncompressed: one pixel byte flipped, same size): trusted without
    # --verify-cache, caught with it
    (tmp_path / "bmp").mkdir()
    bmp = _folder(tmp_path / "bmp", ext="bmp")
    first = _run(bmp, enc, cache)
    target = bmp / "im2.bmp"
    stat = target.stat()
    data = bytearray(target.read_bytes())
    data[-1] = 255 - data[-1]
    target.write_bytes(bytes(data))
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert target.stat().st_size == stat.st_size
    assert _run(bmp, enc, cache).cached
    changed = _run(bmp, enc, cache, verify_cache=True)
    assert not changed.cached and not np.array_equal(changed.features, first.features)
