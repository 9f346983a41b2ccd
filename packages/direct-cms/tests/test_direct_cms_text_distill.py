"""Distillation of tiny SD 1.5 / SDXL pipelines on captioned images: both objectives, bit-exact resume, the
data transform and cache, gradient checkpointing, mixed precision, presets and one-line refusals."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from direct_cms.captions import TextBatchSource, build_cache, load_captioned_folder, prepare_image
from direct_cms.distill import DistillConfig, distill
from direct_cms.lora import PAPER_LORA_TARGETS
from direct_cms.text_teacher import load_text_teacher
from sixlab_shared import UserError, load_checkpoint


def _config(teacher, data, **changes):
    base = dict(
        teacher=str(teacher),
        data=str(data),
        resolution=16,
        num_intervals=10,
        guidance=9.0,
        lora_rank=4,
        steps=2,
        batch_size=2,
        checkpoint_every=1,
        tensorboard=False,
        device="cpu",
    )
    return DistillConfig(**{**base, **changes})


@pytest.mark.parametrize("kind", ["sd", "sdxl"])
@pytest.mark.parametrize("objective", ["cd", "direct"])
def test_distill_text_teacher(kind, objective, tiny_sd_dir, tiny_sdxl_dir, captioned_dir, tmp_path):
    teacher = tiny_sd_dir if kind == "sd" else tiny_sdxl_dir
    summary = distill(_config(teacher, captioned_dir, objective=objective), tmp_path / "run")
    assert summary["final_loss"] is not None and summary["final_loss"] > 0
    assert summary["teacher_calls_per_update"] >= 2  # CFG: two network calls per teacher step
    assert (tmp_path / "run" / "lora" / "pytorch_lora_weights.safetensors").is_file()
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["config"]
    assert saved["lora_targets"] == list(PAPER_LORA_TARGETS)  # SD/SDXL students default to the paper's groups
    assert saved["teacher"] == str(teacher.resolve())


def _killed_after(monkeypatch, calls: int):
    """Make the student forward raise after ``calls`` calls (a run killed mid-training)."""
    import direct_cms.distill as module

    real, count = module.student_output, {"n": 0}

    def flaky(*args, **kwargs):
        count["n"] += 1
        if count["n"] > calls:
            raise KeyboardInterrupt("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "student_output", flaky)


@pytest.mark.parametrize(("kind", "objective"), [("sdxl", "cd"), ("sdxl", "direct"), ("sd", "direct")])
def test_text_resume_is_bit_exact(kind, objective, tiny_sd_dir, tiny_sdxl_dir, captioned_dir, tmp_path, monkeypatch):
    config = _config(tiny_sdxl_dir if kind == "sdxl" else tiny_sd_dir, captioned_dir, steps=3, objective=objective)
    distill(config, tmp_path / "full")
    with monkeypatch.context() as patch:
        _killed_after(patch, 1)
        with pytest.raises(KeyboardInterrupt):
            distill(config, tmp_path / "cut")
    assert load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.safetensors")["step"] == 1
    distill(config, tmp_path / "cut", resume=True)
    a = load_checkpoint(tmp_path / "full" / "student.safetensors")["student"]
    b = load_checkpoint(tmp_path / "cut" / "student.safetensors")["student"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    steps = [row["step"] for row in map(json.loads, (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines())]
    assert steps == sorted(set(steps))  # metrics cut back to the checkpoint: no repeated rows


def test_resume_refuses_changed_settings(tiny_sd_dir, captioned_dir, tmp_path):
    out = tmp_path / "run"
    distill(_config(tiny_sd_dir, captioned_dir, steps=1), out)
    changes = {"seed": 1, "batch_size": 3, "lr": 2e-3, "grad_accum": 2, "lora_alpha": 8.0, "ema_decay": 0.5}
    for key, value in changes.items():
        with pytest.raises(UserError, match=key):
            distill(_config(tiny_sd_dir, captioned_dir, steps=2, **{key: value}), out, resume=True)
    with pytest.raises(UserError, match="teacher"):
        distill(_config(tiny_sd_dir.parent, captioned_dir, steps=2), out, resume=True)


def test_captioned_folder_and_transform(captioned_dir, tmp_path):
    data = load_captioned_folder(captioned_dir)
    assert len(data) == 5 and data.captions[1] == "picture number 1"
    gen = torch.Generator().manual_seed(0)
    pixels, time_ids = prepare_image(data.files[0], 16, gen)  # 20×24 → 16×19 (h×w), then a 16×16 crop
    assert pixels.shape == (3, 16, 16) and pixels.min() >= -1 and pixels.max() <= 1
    top, left = int(time_ids[2]), int(time_ids[3])
    assert time_ids[:2].tolist() == [20.0, 24.0] and time_ids[4:].tolist() == [16.0, 16.0]
    assert top == 0 and 0 <= left <= 3
    # the crop is the resized image's window (PIL bilinear resize is the reference)
    import numpy as np
    from PIL import Image

    with Image.open(data.files[0]) as image:
        resized = np.asarray(image.convert("RGB").resize((19, 16), Image.Resampling.BILINEAR), dtype=np.float32)
    expected = torch.from_numpy(resized[top : top + 16, left : left + 16]).permute(2, 0, 1) / 127.5 - 1
    torch.testing.assert_close(pixels, expected)
    # a datasets imagefolder with a train/ split
    import shutil

    shutil.copytree(captioned_dir, tmp_path / "split" / "train")
    assert load_captioned_folder(tmp_path / "split").captions == data.captions
    # sidecar captions, and one-line errors
    side = tmp_path / "side"
    side.mkdir()
    (side / "a.png").write_bytes(data.files[2].read_bytes())
    with pytest.raises(UserError, match="has no caption"):
        load_captioned_folder(side)
    (side / "a.txt").write_text("a caption\n")
    assert load_captioned_folder(side).captions == ["a caption"]
    (side / "b.png").write_bytes(b"not an image")
    (side / "b.txt").write_text("broken")
    with pytest.raises(UserError, match="not a readable image"):
        prepare_image(side / "b.png", 16, gen)


def test_latents_are_scaled_vae_encodings_and_cache(tiny_sdxl_dir, captioned_dir, tmp_path):
    teacher = load_text_teacher(tiny_sdxl_dir)
    data = load_captioned_folder(captioned_dir)
    source = TextBatchSource(teacher, data, 16)
    batch = source.draw(3, 10, seed=0, step=0)
    assert batch.x0.shape == (3, 4, 8, 8) and batch.labels.time_ids.shape == (3, 6)
    # the same rows/crops/VAE noise by hand with diffusers' AutoencoderKL
    from sixlab_shared import derive_seed, make_generator

    gen = make_generator(derive_seed(0, "batch", 0, 0, 0))
    rows = torch.randint(0, 5, (3,), generator=gen)
    crops = [prepare_image(data.files[int(i)], 16, gen) for i in rows]
    with torch.no_grad():
        dist = teacher.vae.encode(torch.stack([c[0] for c in crops])).latent_dist
        latents = dist.sample(gen) * teacher.vae.config.scaling_factor
    torch.testing.assert_close(batch.x0, latents, atol=1e-5, rtol=1e-5)
    # cache: built once, reused, refused for another resolution
    cache = build_cache(teacher, data, 16, 0, tmp_path / "c.safetensors")
    again = build_cache(teacher, data, 16, 0, tmp_path / "c.safetensors")
    assert torch.equal(cache["mean"], again["mean"]) and cache["prompt_embeds"].shape[0] == 5
    with pytest.raises(UserError, match="resolution"):
        build_cache(teacher, data, 24, 0, tmp_path / "c.safetensors")
    cached = TextBatchSource(teacher, data, 16, cache).draw(2, 10, seed=0, step=1)
    assert cached.x0.shape == (2, 4, 8, 8)
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(UserError, match="not a readable safetensors"):
        build_cache(teacher, data, 16, 0, tmp_path / "bad.safetensors")


def test_distill_with_cache_checkpointing_and_bf16(tiny_sd_dir, captioned_dir, tmp_path):
    config = _config(
        tiny_sd_dir,
        captioned_dir,
        cache=str(tmp_path / "cache.safetensors"),
        gradient_checkpointing=True,
        mixed_precision="bf16",
    )
    summary = distill(config, tmp_path / "run")
    assert summary["final_loss"] > 0
    state = load_checkpoint(tmp_path / "run" / "student.safetensors")["student"]
    assert all(v.dtype == torch.float32 for v in state.values())  # LoRA weights stay float32


def test_gradient_checkpointing_same_loss_and_grads(tiny_sdxl_dir, captioned_dir):
    from direct_cms.objectives import l2_loss, student_output
    from direct_cms.students import StudentTeacher

    teacher = load_text_teacher(tiny_sdxl_dir)
    grid = teacher.grid(10)
    cond = teacher.encode_prompts(["a", "b"])
    x, t = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0)), torch.tensor([1000, 500])
    torch.manual_seed(0)
    models = StudentTeacher(teacher.network, "lora", 4, None, ["to_q", "conv1", "time_emb_proj"])
    with torch.no_grad():
        for p in models.trainable_parameters():
            p.add_(0.01)
    results = []
    for checkpointing in (False, True):
        if checkpointing:
            models.network.enable_gradient_checkpointing()
        models.network.zero_grad()
        loss = l2_loss(student_output(models, grid, x, t, cond), torch.zeros_like(x))
        loss.backward()
        results.append((loss.item(), [p.grad.clone() for p in models.trainable_parameters()]))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-6)
    for a, b in zip(results[0][1], results[1][1], strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_paper_preset_and_refusals(tiny_sd_dir, captioned_dir, tmp_path):
    config = DistillConfig.from_preset("paper", teacher="x", lr=5e-4)
    assert (config.lora_rank, config.lora_alpha, config.batch_size, config.steps, config.seed) == (
        64,
        64.0,
        16,
        250,
        24,
    )
    assert config.lr == 5e-4 and config.guidance == 9.0 and config.optimizer == "adamw8bit"
    assert config.checkpoint_every == 50 and config.gradient_checkpointing and config.mixed_precision == "fp16"
    assert dataclasses.replace(config, device="cpu").lr == 5e-4  # a rebuild does not re-apply the preset
    with pytest.raises(UserError, match="--preset"):
        DistillConfig(preset="nope")
    with pytest.raises(UserError, match="--preset"):
        DistillConfig.from_preset("nope")
    with pytest.raises(UserError, match="--data is required"):
        distill(_config(tiny_sd_dir, ""), tmp_path / "a")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="fp16 needs a CUDA"):
            distill(_config(tiny_sd_dir, captioned_dir, mixed_precision="fp16"), tmp_path / "c")
    with pytest.raises(UserError, match="bitsandbytes"):
        distill(_config(tiny_sd_dir, captioned_dir, optimizer="adamw8bit"), tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()
