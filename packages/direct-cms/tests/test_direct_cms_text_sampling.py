"""Pipeline sampling with DirectCMScheduler + the student's LoRA equals the package's own sampler (SD, SDXL)."""

from __future__ import annotations

import pytest
import torch

from direct_cms.distill import DistillConfig, distill, load_student
from direct_cms.evaluation import student_sample
from direct_cms.scheduler import DirectCMScheduler
from direct_cms.text_sampling import sample_prompts, student_pipeline
from sixlab_shared import UserError


@pytest.fixture(scope="module")
def text_runs(tiny_sd_dir, tiny_sdxl_dir, captioned_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("text_runs")
    runs = {}
    for kind, teacher in (("sd", tiny_sd_dir), ("sdxl", tiny_sdxl_dir)):
        config = DistillConfig(
            teacher=str(teacher),
            data=str(captioned_dir),
            resolution=16,
            num_intervals=10,
            lora_rank=4,
            steps=2,
            batch_size=2,
            lr=5e-2,  # large, so the trained LoRA clearly differs from the teacher
            tensorboard=False,
            device="cpu",
        )
        distill(config, root / kind)
        runs[kind] = root / kind
    return runs


@pytest.mark.parametrize("kind", ["sd", "sdxl"])
@pytest.mark.parametrize("steps", [1, 4])
def test_pipeline_equals_own_sampler(kind, steps, text_runs):
    prompts = ["a red cat", "blue"]
    pipe, config = student_pipeline(text_runs[kind])
    assert isinstance(pipe.scheduler, DirectCMScheduler)
    latents = sample_prompts(pipe, prompts, steps, seed=5, output_type="latent")
    # the package's own sampler with the same draws: x_T first, then one re-noising draw per step
    models, _, teacher = load_student(text_runs[kind])
    gen = torch.Generator().manual_seed(5)
    x_T = torch.randn(2, 4, 8, 8, generator=gen)
    renoise = torch.stack([torch.randn(2, 4, 8, 8, generator=gen) for _ in range(max(steps - 1, 1))])
    scheduler = DirectCMScheduler.from_teacher_config(teacher.scheduler.config, 10)
    cond = teacher.encode_prompts(prompts)
    ours = student_sample(models.student_eps, scheduler, x_T, cond, steps, renoise)
    torch.testing.assert_close(latents, ours, atol=1e-4, rtol=1e-4)
    base = student_sample(models.teacher_eps, scheduler, x_T, cond, steps, renoise)
    assert (ours - base).abs().max() > 1e-3  # the LoRA is active in both
    assert config.num_intervals == 10


def test_pipeline_sampling_refuses_k_above_n(text_runs):
    pipe, _ = student_pipeline(text_runs["sd"])
    with pytest.raises(UserError, match="K=11"):
        sample_prompts(pipe, ["x"], 11, seed=0)


def test_clip_score_equals_hand_cosine(tiny_clip_dir):
    import numpy as np
    from PIL import Image
    from transformers import CLIPModel, CLIPProcessor

    from direct_cms.text_evaluation import clip_score

    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)) for _ in range(3)]
    prompts = ["a cat", "dog on a mat", "x"]
    scores = clip_score(images, prompts, str(tiny_clip_dir), batch_size=2)
    model, processor = CLIPModel.from_pretrained(tiny_clip_dir), CLIPProcessor.from_pretrained(tiny_clip_dir)
    with torch.no_grad():
        for image, prompt, score in zip(images, prompts, scores, strict=True):
            inputs = processor(text=[prompt], images=[image], return_tensors="pt", padding=True)
            v = model.visual_projection(model.vision_model(pixel_values=inputs["pixel_values"]).pooler_output)
            t = model.text_projection(model.text_model(input_ids=inputs["input_ids"]).pooler_output)
            v, t = v[0].double().numpy(), t[0].double().numpy()
            assert score == pytest.approx(float(v @ t / np.linalg.norm(v) / np.linalg.norm(t)), abs=1e-6)
    assert all(-1 <= s <= 1 for s in scores)


def test_fd_through_dgm_eval_equals_direct_call():
    import numpy as np
    from PIL import Image

    from dgm_eval.api import compute_metrics
    from dgm_eval.encoders import load_encoder
    from dgm_eval.extraction import extract_features
    from direct_cms.text_evaluation import frechet_distance_dgm

    rng = np.random.default_rng(1)
    a = [Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)) for _ in range(6)]
    b = [Image.fromarray(rng.integers(0, 128, (16, 16, 3), dtype=np.uint8)) for _ in range(5)]
    ours = frechet_distance_dgm(a, b, "pixel")
    enc = load_encoder("pixel", device="cpu")
    direct = compute_metrics(
        extract_features(b, enc, device="cpu"), extract_features(a, enc, device="cpu"), metrics=["fd"]
    )
    assert ours == pytest.approx(float(direct["fd"]), rel=1e-9)


def test_evaluate_text(text_runs, tiny_clip_dir, tmp_path):
    from direct_cms.evaluation import teacher_sample
    from direct_cms.guidance import GuidedTeacher
    from direct_cms.metrics import ode_error
    from direct_cms.solvers import make_solver
    from direct_cms.text_evaluation import TextEvalConfig, evaluate_text, format_text_table
    from sixlab_shared import load_checkpoint

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red cat\nblue sky\n\na dog\n")
    config = TextEvalConfig(ks=[1, 2], clip_model=str(tiny_clip_dir), fd_encoders=["pixel"], batch_size=2)
    out = tmp_path / "eval"
    result = evaluate_text({"sd": text_runs["sd"]}, prompts, out, config)
    assert result["prompts"] == 3 and set(result["students"]["sd"]) == {"1", "2"}
    row = result["students"]["sd"]["2"]
    assert row["nfe"] == 2 and row["latent_mse"] > 0 and -1 <= row["clip_score"] <= 1 and row["fd_pixel"] >= 0
    # the teacher's ODE error against itself is 0: re-solve from the stored noise
    models, config_run, teacher = load_student(text_runs["sd"])
    noise = load_checkpoint(out / "eval_noise.safetensors")
    reference = load_checkpoint(out / "teacher_latents.safetensors")["latents"]
    cond = teacher.encode_prompts(["a red cat", "blue sky", "a dog"])
    guided = GuidedTeacher(models.teacher_eps, config_run.guidance, teacher.null_cond())
    again = teacher_sample(guided, make_solver("ddim", teacher.grid(10)), noise["x_T"], cond)
    assert ode_error(again, reference) < 1e-10
    scheduler = DirectCMScheduler.from_teacher_config(teacher.scheduler.config, 10)
    own = student_sample(models.student_eps, scheduler, noise["x_T"], cond, 2, noise["renoise"])
    assert row["latent_mse"] == pytest.approx(ode_error(own, reference), rel=1e-5)
    # the reference is computed once: a second evaluation reuses the cached file
    stamp = (out / "teacher_latents.safetensors").stat().st_mtime_ns
    evaluate_text({"sd": text_runs["sd"]}, prompts, out, TextEvalConfig(ks=[1], clip_model=""))
    assert (out / "teacher_latents.safetensors").stat().st_mtime_ns == stamp
    assert "latent_mse" in format_text_table(result)


def test_exported_pipeline_is_plain_and_samples_like_the_student(text_runs, tmp_path):
    from diffusers import DiffusionPipeline
    from safetensors import safe_open

    from direct_cms.text_sampling import export_pipeline

    out = export_pipeline(text_runs["sdxl"], tmp_path / "pipe")
    files = list((out / "unet").glob("*.safetensors"))
    with safe_open(str(files[0]), "pt") as handle:
        keys = list(handle.keys())
    assert keys and not [k for k in keys if "lora" in k or "base_layer" in k]
    pipe = DiffusionPipeline.from_pretrained(out)
    assert isinstance(pipe.scheduler, DirectCMScheduler)
    pipe.set_progress_bar_config(disable=True)
    fused = sample_prompts(pipe, ["a red cat"], 2, seed=3, output_type="latent")
    student, _ = student_pipeline(text_runs["sdxl"])
    expected = sample_prompts(student, ["a red cat"], 2, seed=3, output_type="latent")
    torch.testing.assert_close(fused, expected, atol=1e-4, rtol=1e-4)
    with pytest.raises(UserError, match="already holds a pipeline"):
        export_pipeline(text_runs["sdxl"], out)
