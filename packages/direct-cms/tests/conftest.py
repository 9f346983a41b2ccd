"""Shared fixtures for the direct-cms tests (importlib mode: test modules cannot import each other)."""

from __future__ import annotations

import os

import pytest
import torch


def pytest_configure(config: pytest.Config) -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    # tensorboard's protobuf-generated modules and accelerate's tracker touch deprecated APIs on import
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:google.protobuf.*")
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:tensorboard.*")


@pytest.fixture(scope="session")
def tiny_teacher_dir(tmp_path_factory: pytest.TempPathFactory):
    """A digits teacher (width 8, 5 steps) saved with save_pretrained: loaded through the real code path."""
    from direct_cms.teacher import TeacherConfig, save_teacher, train_teacher

    folder = tmp_path_factory.mktemp("teacher")
    teacher, _ = train_teacher(TeacherConfig(dataset="digits", steps=5, batch_size=16, width=8, device="cpu"))
    save_teacher(teacher, folder)
    return folder


@pytest.fixture(scope="session")
def ring_teacher_dir(tmp_path_factory: pytest.TempPathFactory):
    """A 2-D MLP teacher trained briefly."""
    from direct_cms.teacher import TeacherConfig, save_teacher, train_teacher

    folder = tmp_path_factory.mktemp("ring_teacher")
    teacher, _ = train_teacher(TeacherConfig(dataset="ring", steps=200, batch_size=128, width=16, device="cpu"))
    save_teacher(teacher, folder)
    return folder


@pytest.fixture()
def ddpm_scheduler():
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02)


@pytest.fixture()
def gen():
    return torch.Generator().manual_seed(0)


@pytest.fixture(scope="session")
def classifier_path(tmp_path_factory: pytest.TempPathFactory):
    """A briefly trained digit classifier saved to disk (shared by the metric and CLI tests)."""
    from direct_cms.classifier import save_classifier, train_classifier
    from direct_cms.data import load_dataset

    path = tmp_path_factory.mktemp("classifier") / "clf.safetensors"
    save_classifier(train_classifier(load_dataset("digits"), seed=0, steps=150), path)
    return path


# -- tiny text-to-image pipelines built from configs (no download) ---------------------------------------------------
def _tiny_tokenizer():
    """A byte-level CLIP tokenizer with one token per byte (no merges), max length 16."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTokenizer

    chars = sorted(ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(chars)}
    for c in chars:
        vocab[c + "</w>"] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=16)


def _tiny_text_encoder(tokenizer, projection: bool):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        max_position_embeddings=16,
        projection_dim=32,
        bos_token_id=len(tokenizer) - 2,
        eos_token_id=len(tokenizer) - 1,
        pad_token_id=len(tokenizer) - 1,
    )
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config)


def tiny_vae(seed: int = 0):
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(
        block_out_channels=(8, 16),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=16,
    )


def build_tiny_pipeline(kind: str, folder, seed: int = 0):
    """A random SD 1.5-like (DDIM scheduler) or SDXL-like (Euler scheduler, two text encoders) pipeline with
    16×16 images and 8×8 latents, saved with ``save_pretrained``."""
    from diffusers import (
        DDIMScheduler,
        EulerDiscreteScheduler,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )

    torch.manual_seed(seed)
    tokenizer = _tiny_tokenizer()
    schedule = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}
    if kind == "sd":
        unet = UNet2DConditionModel(
            sample_size=8,
            block_out_channels=(32, 64),
            layers_per_block=1,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=32,
            attention_head_dim=8,
            norm_num_groups=8,
        )
        pipe = StableDiffusionPipeline(
            vae=tiny_vae(seed),
            text_encoder=_tiny_text_encoder(tokenizer, False),
            tokenizer=tokenizer,
            unet=unet,
            scheduler=DDIMScheduler(**schedule, clip_sample=False, set_alpha_to_one=False, steps_offset=1),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
    else:
        unet = UNet2DConditionModel(
            sample_size=8,
            block_out_channels=(32, 64),
            layers_per_block=1,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=64,
            attention_head_dim=(2, 4),
            norm_num_groups=8,
            addition_embed_type="text_time",
            addition_time_embed_dim=8,
            projection_class_embeddings_input_dim=32 + 6 * 8,
            use_linear_projection=True,
        )
        pipe = StableDiffusionXLPipeline(
            vae=tiny_vae(seed),
            text_encoder=_tiny_text_encoder(tokenizer, False),
            text_encoder_2=_tiny_text_encoder(tokenizer, True),
            tokenizer=tokenizer,
            tokenizer_2=tokenizer,
            unet=unet,
            scheduler=EulerDiscreteScheduler(**schedule, steps_offset=1),
        )
    pipe.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_sd_dir(tmp_path_factory: pytest.TempPathFactory):
    return build_tiny_pipeline("sd", tmp_path_factory.mktemp("tiny_sd"))


@pytest.fixture(scope="session")
def tiny_sdxl_dir(tmp_path_factory: pytest.TempPathFactory):
    return build_tiny_pipeline("sdxl", tmp_path_factory.mktemp("tiny_sdxl"))


@pytest.fixture(scope="session")
def tiny_vae_dir(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("tiny_vae")
    tiny_vae(seed=7).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def captioned_dir(tmp_path_factory: pytest.TempPathFactory):
    """Five random RGB images of different sizes with captions in a datasets-style metadata.jsonl."""
    import json

    import numpy as np
    from PIL import Image

    folder = tmp_path_factory.mktemp("captioned")
    rng = np.random.default_rng(0)
    rows = []
    for i, (h, w) in enumerate([(20, 24), (24, 16), (16, 16), (32, 20), (18, 30)]):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"img{i}.png")
        rows.append({"file_name": f"img{i}.png", "text": f"picture number {i}"})
    (folder / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return folder


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory):
    """A config-built CLIPModel with the tiny tokenizer and a 30-px image processor, saved as a folder."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    folder = tmp_path_factory.mktemp("tiny_clip")
    tokenizer = _tiny_tokenizer()
    torch.manual_seed(0)
    text = _tiny_text_encoder(tokenizer, False).config.to_dict()
    vision = {"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2}
    vision.update(image_size=30, patch_size=10)
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16))
    model.save_pretrained(folder)
    image_processor = CLIPImageProcessor(size={"shortest_edge": 30}, crop_size={"height": 30, "width": 30})
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder
