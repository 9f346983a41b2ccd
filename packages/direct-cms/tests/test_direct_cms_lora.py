"""The paper's LoRA preset on SD/SDXL UNets, diffusers-format export through ``load_lora_weights`` (checked
against diffusers' own pipeline), and saved teachers without peft keys."""

from __future__ import annotations

import logging

import pytest
import torch

from direct_cms.conditioning import TextCond
from direct_cms.lora import LORA_PRESETS, PAPER_LORA_TARGETS, has_lora, load_lora_into, save_lora, without_lora
from direct_cms.students import StudentTeacher
from direct_cms.text_teacher import load_text_teacher
from sixlab_shared import UserError


def _preset_student(teacher, rank=None, alpha=None):
    preset = LORA_PRESETS["paper"]
    torch.manual_seed(0)
    return StudentTeacher(teacher.network, "lora", rank or preset["rank"], alpha or preset["alpha"], preset["targets"])


def test_paper_preset_targets_every_group_on_sdxl_unet(tiny_sdxl_dir):
    assert len(PAPER_LORA_TARGETS) == 14
    assert LORA_PRESETS["paper"]["rank"] == 64 and LORA_PRESETS["paper"]["alpha"] == 64
    teacher = load_text_teacher(tiny_sdxl_dir)
    models = _preset_student(teacher)
    adapted = {n.rsplit(".lora_A", 1)[0] for n, _ in models.network.named_parameters() if ".lora_A." in n}
    for target in ("to_q", "to_out.0", "proj_in", "ff.net.2", "conv_shortcut", "downsamplers.0.conv", "time_emb_proj"):
        assert any(name.endswith(target) for name in adapted), target
    assert all("lora_" in n for n, p in models.network.named_parameters() if p.requires_grad)


def _capture_diffusers_warnings(caplog):
    import diffusers

    diffusers.utils.logging.enable_propagation()
    caplog.set_level(logging.WARNING)


@pytest.mark.parametrize("kind", ["sd", "sdxl"])
def test_lora_init_pipeline_equals_teacher_and_round_trip(kind, tiny_sd_dir, tiny_sdxl_dir, tmp_path, caplog):
    source = tiny_sd_dir if kind == "sd" else tiny_sdxl_dir
    teacher = load_text_teacher(source)
    models = _preset_student(teacher, rank=4, alpha=8.0)  # α ≠ r: the metadata must carry the scale
    save_lora(models.network, models.peft_config, tmp_path / "init", kind)
    with torch.no_grad():
        for p in models.trainable_parameters():
            p.add_(0.05 * torch.randn_like(p))
    save_lora(models.network, models.peft_config, tmp_path / "trained", kind)
    _capture_diffusers_warnings(caplog)

    def run(pipe):
        gen = torch.Generator().manual_seed(3)
        return pipe("a cat", num_inference_steps=2, height=16, width=16, generator=gen, output_type="latent").images

    reference = run(load_text_teacher(source).pipe)
    with_init = load_text_teacher(source).pipe
    load_lora_into(with_init, tmp_path / "init")
    torch.testing.assert_close(run(with_init), reference, atol=1e-6, rtol=1e-6)
    # the trained adapters reproduce the student's ε̂ inside a fresh pipeline
    fresh = load_text_teacher(source)
    load_lora_into(fresh.pipe, tmp_path / "trained")
    cond = fresh.encode_prompts(["a cat", "dog"])
    x, t = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1)), torch.tensor([1000, 10])
    with torch.no_grad():
        ours = models.student_eps(x, t, cond)
        theirs = fresh.pipe.unet(x, t, **cond.unet_kwargs()).sample
        base = models.teacher_eps(x, t, cond)
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=1e-5)
    assert (ours - base).abs().max() > 1e-3  # the adapters matter
    # the UNet found its keys (diffusers notes the absent text-encoder keys of any UNet-only LoRA, its own too)
    warnings = [r.getMessage() for r in caplog.records if "No LoRA keys" in r.getMessage()]
    assert not [w for w in warnings if "UNet" in w or "unet" in w], warnings
    assert isinstance(cond, TextCond)


def test_missing_lora_folder_is_one_line(tiny_sd_dir, tmp_path):
    teacher = load_text_teacher(tiny_sd_dir)
    with pytest.raises(UserError, match="holds no pytorch_lora_weights"):
        load_lora_into(teacher.pipe, tmp_path)
    (tmp_path / "pytorch_lora_weights.safetensors").write_bytes(b"garbage")
    with pytest.raises(UserError, match="could not be loaded as a LoRA"):
        load_lora_into(teacher.pipe, tmp_path)


def test_saved_network_never_holds_peft_keys(tiny_sd_dir, tmp_path):
    from diffusers import UNet2DConditionModel

    teacher = load_text_teacher(tiny_sd_dir)
    plain_keys = set(teacher.network.state_dict())
    models = _preset_student(teacher, rank=4)
    with torch.no_grad():
        for p in models.trainable_parameters():
            p.add_(0.1)
    assert has_lora(teacher.network)
    cond = teacher.encode_prompts(["x"])
    x, t = torch.randn(1, 4, 8, 8), torch.tensor([500])
    for merge, expected in ((False, models.teacher_eps(x, t, cond)), (True, models.student_eps(x, t, cond))):
        clean = without_lora(teacher.network, merge=merge)
        assert set(clean.state_dict()) == plain_keys
        clean.save_pretrained(tmp_path / f"unet{merge}")
        reloaded = UNet2DConditionModel.from_pretrained(tmp_path / f"unet{merge}")
        with torch.no_grad():
            out = reloaded(x, t, **cond.unet_kwargs()).sample
        torch.testing.assert_close(out, expected.detach(), atol=1e-4, rtol=1e-4)  # merging rounds in float32
    assert has_lora(teacher.network)  # the student itself is untouched
