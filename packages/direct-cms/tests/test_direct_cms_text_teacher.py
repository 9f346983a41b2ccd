"""SD 1.5 / SDXL teachers: refused schedulers (before any weights load), ᾱ from the teacher's scheduler, VAE
override, text conditioning through CFG and the masked solve (against diffusers' own encode_prompt and UNet)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from direct_cms.conditioning import TextCond
from direct_cms.grid import TimeGrid
from direct_cms.guidance import GuidedTeacher, UNetEps
from direct_cms.scheduler import DirectCMScheduler
from direct_cms.solvers import DDIMSolver, solve
from direct_cms.text_teacher import check_teacher_source, load_text_teacher
from sixlab_shared import UserError


def _configs_only(src, dst, **scheduler_changes):
    """A copy of a pipeline holding only model_index.json and the scheduler config (no weights at all)."""
    (dst / "scheduler").mkdir(parents=True)
    shutil.copy(src / "model_index.json", dst / "model_index.json")
    config = json.loads((src / "scheduler" / "scheduler_config.json").read_text())
    config.update(scheduler_changes)
    (dst / "scheduler" / "scheduler_config.json").write_text(json.dumps(config))
    return dst


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"_class_name": "FlowMatchEulerDiscreteScheduler"}, "flow-matching"),
        ({"_class_name": "CMStochasticIterativeScheduler"}, "not DDPM-like"),
        ({"prediction_type": "v_prediction"}, "v_prediction"),
        ({"prediction_type": "sample"}, "epsilon-prediction"),
        ({"rescale_betas_zero_snr": True}, "zero-terminal-SNR"),
    ],
)
def test_refused_schedulers_before_any_weights(tiny_sdxl_dir, tmp_path, changes, message):
    folder = _configs_only(tiny_sdxl_dir, tmp_path / "p", **changes)
    with pytest.raises(UserError, match=message) as info:
        load_text_teacher(folder)  # no unet/ folder exists: the refusal must come first
    assert "\n" not in str(info.value)


def test_refused_pipeline_kind_and_missing(tiny_sd_dir, tmp_path):
    folder = _configs_only(tiny_sd_dir, tmp_path / "p")
    index = json.loads((folder / "model_index.json").read_text())
    (folder / "model_index.json").write_text(json.dumps({**index, "_class_name": "StableDiffusion3Pipeline"}))
    with pytest.raises(UserError, match="StableDiffusion3Pipeline"):
        check_teacher_source(folder)
    with pytest.raises(UserError, match="could not read the pipeline"):
        check_teacher_source(tmp_path / "nothing-here")


@pytest.mark.parametrize("kind", ["sd", "sdxl"])
def test_grid_and_sampler_take_alphas_from_teacher_scheduler(kind, tiny_sd_dir, tiny_sdxl_dir, caplog):
    import logging

    import diffusers

    teacher = load_text_teacher(tiny_sd_dir if kind == "sd" else tiny_sdxl_dir)
    diffusers.utils.logging.enable_propagation()
    caplog.set_level(logging.WARNING)
    assert teacher.kind == kind
    grid = teacher.grid(100)
    acp = teacher.scheduler.alphas_cumprod.double()
    np.testing.assert_array_equal(grid.alphas_cumprod.numpy(), acp.numpy())
    sampler = DirectCMScheduler.from_teacher_config(teacher.scheduler.config, 100)
    np.testing.assert_array_equal(sampler.grid.alphas_cumprod.numpy(), acp.numpy())
    assert not [r for r in caplog.records if "not expected" in r.getMessage()]  # no "ignored config" warning


def test_sampler_squaredcos_schedule_equals_ddpm():
    from diffusers import DDPMScheduler

    sampler = DirectCMScheduler(beta_schedule="squaredcos_cap_v2", num_original_inference_steps=10)
    reference = DDPMScheduler(beta_schedule="squaredcos_cap_v2").alphas_cumprod.double()
    np.testing.assert_array_equal(sampler.grid.alphas_cumprod.numpy(), reference.numpy())
    with pytest.raises(ValueError, match="zero-terminal-SNR"):
        DirectCMScheduler(rescale_betas_zero_snr=True)


def test_vae_override(tiny_sd_dir, tiny_vae_dir):
    from diffusers import AutoencoderKL

    teacher = load_text_teacher(tiny_sd_dir, vae=str(tiny_vae_dir))
    override = AutoencoderKL.from_pretrained(tiny_vae_dir)
    for (name, a), (_, b) in zip(teacher.vae.state_dict().items(), override.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    plain = load_text_teacher(tiny_sd_dir)
    assert not torch.equal(plain.vae.encoder.conv_in.weight, override.encoder.conv_in.weight)


@pytest.mark.parametrize("kind", ["sd", "sdxl"])
def test_text_cfg_equals_diffusers_encode_prompt(kind, tiny_sd_dir, tiny_sdxl_dir):
    teacher = load_text_teacher(tiny_sd_dir if kind == "sd" else tiny_sdxl_dir)
    pipe, unet = teacher.pipe, teacher.network
    prompts = ["a red cat", "two dogs"]
    w = 9.0
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 8, 8, generator=gen)
    t = torch.tensor([1000, 370])
    guided = GuidedTeacher(UNetEps(unet), w, teacher.null_cond())
    ours = guided(x, t, teacher.encode_prompts(prompts))
    # the same with diffusers' encode_prompt (with CFG: it returns the negative branch diffusers uses)
    with torch.no_grad():
        if kind == "sd":
            cond, uncond = pipe.encode_prompt(prompts, "cpu", 1, True)
            extra_c = extra_u = {}
        else:
            cond, uncond, pooled, pooled_u = pipe.encode_prompt(
                prompt=prompts, device="cpu", num_images_per_prompt=1, do_classifier_free_guidance=True
            )
            time_ids = torch.tensor([[16.0, 16.0, 0.0, 0.0, 16.0, 16.0]]).expand(2, 6)
            extra_c = {"added_cond_kwargs": {"text_embeds": pooled, "time_ids": time_ids}}
            extra_u = {"added_cond_kwargs": {"text_embeds": pooled_u, "time_ids": time_ids}}
            assert torch.count_nonzero(uncond) == 0
        eps_c = unet(x, t, encoder_hidden_states=cond, **extra_c).sample
        eps_u = unet(x, t, encoder_hidden_states=uncond, **extra_u).sample
    torch.testing.assert_close(ours, eps_u + w * (eps_c - eps_u), atol=1e-5, rtol=1e-5)
    assert guided.network_calls == 2


def test_null_condition_broadcasts(tiny_sd_dir):
    teacher = load_text_teacher(tiny_sd_dir)
    null = teacher.null_cond()
    assert null.prompt_embeds.shape[0] == 1
    with torch.no_grad():
        empty, _ = teacher.pipe.encode_prompt([""], "cpu", 1, False)
    torch.testing.assert_close(null.prompt_embeds, empty)


@pytest.mark.parametrize("kind", ["sd", "sdxl"])
def test_masked_direct_solve_equals_per_sample(kind, tiny_sd_dir, tiny_sdxl_dir):
    teacher = load_text_teacher(tiny_sd_dir if kind == "sd" else tiny_sdxl_dir)
    grid: TimeGrid = teacher.grid(10)
    guided = GuidedTeacher(UNetEps(teacher.network), 3.0, teacher.null_cond())
    cond = teacher.encode_prompts(["a", "bb", "ccc"])
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3, 4, 8, 8, generator=gen)
    t = torch.tensor([300, 1000, 100])
    solver = DDIMSolver(grid)
    with torch.no_grad():
        batched = solve(solver, guided, x, t, cond)
        for i in range(3):
            single = solve(solver, guided, x[i : i + 1], t[i : i + 1], cond[torch.tensor([i])])
            torch.testing.assert_close(batched[i : i + 1], single, atol=2e-5, rtol=1e-5)
    assert isinstance(cond, TextCond) and len(cond) == 3
