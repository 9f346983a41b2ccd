"""Encoders: registry, Hugging Face loading from local folders (the same path as hub ids), pooling, prefix, MiniLM."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from fusemix.encoders import EncoderSpec, load_encoder, register_encoder, registered_encoders, resolve_encoder
from fusemix.encoders.huggingface import imagenet_preprocess
from fusemix.pooling import pool_hidden_states
from sixlab_shared import UserError


def _images(n: int, size: tuple[int, int] = (48, 40)) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)) for _ in range(n)]


def test_registry_entries_and_validation() -> None:
    names = registered_encoders()
    for name in ("dinov2-s", "dinov2-b", "dinov2-l", "dinov2-g", "clip-vit-b32", "bge-large", "e5-large", "minilm"):
        assert name in names
    assert names["dinov2-g"].dim == 1536 and names["dinov2-g"].pooling == "cls"
    assert names["bge-large"].pooling == "cls" and names["e5-large"].pooling == "mean"
    assert names["e5-large"].prefix == "query: "
    with pytest.raises(ValueError, match="already registered"):
        register_encoder(names["bge-large"])
    with pytest.raises(ValueError, match="reserved"):
        register_encoder(EncoderSpec("hf:x", "text", "hf", "x"))
    with pytest.raises(ValueError, match="surrounding spaces"):
        EncoderSpec(" a", "text", "hf", "x")
    with pytest.raises(UserError, match="unknown text encoder 'nope'"):
        resolve_encoder("nope", "text")
    with pytest.raises(UserError, match="encodes image"):
        resolve_encoder("dinov2-s", "text")
    with pytest.raises(UserError, match="expected hf:"):
        resolve_encoder("hf:model@avg", "text")


def test_fingerprint_changes_with_pooling_and_prefix() -> None:
    base = resolve_encoder("hf:some/model@mean", "text")
    assert base.fingerprint() != resolve_encoder("hf:some/model@cls", "text").fingerprint()
    assert base.slug() != resolve_encoder("hf:some/model@cls", "text").slug()
    assert resolve_encoder("e5-base", "text").fingerprint() != resolve_encoder("bge-base", "text").fingerprint()
    assert base.fingerprint() == EncoderSpec.from_dict(base.to_dict()).fingerprint()


def test_offline_missing_weights_is_one_clear_error() -> None:
    spec = resolve_encoder("hf:sixlab-test/not-a-model@cls", "image")
    with pytest.raises(UserError, match=r"sixlab-test/not-a-model.*huggingface-cli download"):
        load_encoder(spec)


def test_mean_pooling_against_manual_mask() -> None:
    hidden = torch.randn(2, 4, 3)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])

    class Out:
        last_hidden_state = hidden

    pooled = pool_hidden_states(Out(), "mean", mask)
    torch.testing.assert_close(pooled[0], hidden[0, :2].mean(0))
    torch.testing.assert_close(pooled[1], hidden[1].mean(0))
    torch.testing.assert_close(pool_hidden_states(Out(), "cls"), hidden[:, 0])
    with pytest.raises(ValueError, match="pooler_output"):
        pool_hidden_states(Out(), "pooler")


def test_text_encoder_cls_mean_and_prefix(tiny_bert_dir) -> None:
    from transformers import AutoModel, AutoTokenizer

    captions = ["A Dog, (running)!  on grass.", "two cats"]
    cls_spec = EncoderSpec("test-bert-cls", "text", "hf", str(tiny_bert_dir), "cls")
    mean_spec = EncoderSpec("test-bert-e5", "text", "hf", str(tiny_bert_dir), "mean", prefix="query: ")
    cls_latents = load_encoder(cls_spec).encode(captions)
    mean_latents = load_encoder(mean_spec).encode(captions)
    # independent path: transformers directly, captions cleaned by hand
    model = AutoModel.from_pretrained(tiny_bert_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    with torch.no_grad():
        plain = tokenizer(["a dog, running on grass", "two cats"], padding=True, return_tensors="pt")
        torch.testing.assert_close(cls_latents, model(**plain).last_hidden_state[:, 0])
        pref = tokenizer(["query: a dog, running on grass", "query: two cats"], padding=True, return_tensors="pt")
        states = model(**pref).last_hidden_state
    lengths = pref["attention_mask"].sum(1)
    manual = torch.stack([states[i, : lengths[i]].mean(0) for i in range(2)])
    torch.testing.assert_close(mean_latents, manual, rtol=1e-5, atol=1e-6)
    assert cls_latents.shape == (2, 32) and cls_latents.dtype == torch.float32


def test_image_encoder_imagenet_and_processor_paths(tiny_dinov2_dir) -> None:
    from torchvision import transforms
    from transformers import AutoImageProcessor, AutoModel

    images = _images(3)
    reference = transforms.Compose(
        [transforms.Resize(32, interpolation=transforms.InterpolationMode.BICUBIC), transforms.CenterCrop(32),
         transforms.ToTensor(), transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))]
    )  # fmt: skip
    ours = np.stack([imagenet_preprocess(img, 32) for img in images])
    peer = torch.stack([reference(img) for img in images]).numpy()
    np.testing.assert_allclose(ours, peer, atol=1e-5)

    model = AutoModel.from_pretrained(tiny_dinov2_dir).eval()
    spec = EncoderSpec("test-dino", "image", "hf", str(tiny_dinov2_dir), "cls", image_size=32)
    latents = load_encoder(spec).encode(images)
    with torch.no_grad():
        expected = model(pixel_values=torch.from_numpy(peer)).last_hidden_state[:, 0]
    torch.testing.assert_close(latents, expected, rtol=1e-4, atol=1e-5)
    # generic hf:<folder>@<pooling> route: the model's own image processor
    generic = load_encoder(resolve_encoder(f"hf:{tiny_dinov2_dir}@mean", "image"))
    pixels = AutoImageProcessor.from_pretrained(tiny_dinov2_dir)(images=images, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        expected_mean = model(pixel_values=pixels).last_hidden_state.mean(1)
    torch.testing.assert_close(generic.encode(images), expected_mean, rtol=1e-4, atol=1e-5)


def test_packaged_minilm_matches_sentence_transformers(minilm_path) -> None:
    from sentence_transformers import SentenceTransformer

    captions = ["a small red circle at the top left", "There is a big blue box in the middle."]
    spec = EncoderSpec(
        "test-minilm-raw", "text", "hf", resolve_encoder("minilm", "text").model, "mean", clean_captions=False
    )
    ours = load_encoder(spec).encode(captions)
    assert ours.shape == (2, 384)
    peer = SentenceTransformer(str(minilm_path), device="cpu").encode(captions, convert_to_tensor=True)
    # the packaged model's pipeline ends with Normalize; our latent is the raw mean pool (not normalised)
    torch.testing.assert_close(torch.nn.functional.normalize(ours, dim=1), peer.cpu(), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(ours.norm(dim=1), torch.ones(2))


def test_frozen_encoders_are_seeded() -> None:
    images = _images(4, (64, 64))
    conv = resolve_encoder("frozen-conv", "image")
    a, b = load_encoder(conv).encode(images), load_encoder(conv).encode(images)
    torch.testing.assert_close(a, b)
    other = EncoderSpec("test-conv-seed1", "image", "frozen", "conv", image_size=64, dim=256, seed=1)
    assert not torch.allclose(a, load_encoder(other).encode(images))
    bow = load_encoder(resolve_encoder("frozen-bow", "text"))
    texts = bow.encode(["A red circle.", "a red circle", "a blue square"])
    torch.testing.assert_close(texts[0], texts[1])  # cleaning applies before hashing
    assert texts.shape == (3, 256) and not torch.allclose(texts[0], texts[2])
