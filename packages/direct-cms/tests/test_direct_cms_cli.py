"""Every CLI verb on tiny data, and the user errors (one line, exit 2, nothing written or lost)."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from direct_cms.cli import app

runner = CliRunner()


def _ok(args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def _user_error(args, message):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert lines[-1].startswith("error: ") or "Invalid value" in result.output, result.output
    assert message in result.output, result.output
    return result


@pytest.fixture(scope="module")
def students(tiny_teacher_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("students")
    out = {}
    for objective in ("cd", "direct"):
        run = root / objective
        _ok(
            [
                "distill",
                "--teacher",
                tiny_teacher_dir,
                "--out",
                run,
                "--objective",
                objective,
                "--steps",
                2,
                "--batch-size",
                4,
                "--num-intervals",
                10,
                "--lora-rank",
                2,
                "--device",
                "cpu",
                "--no-tensorboard",
            ]
        )
        out[objective] = run
    return out


def test_help_lists_verbs():
    result = _ok(["--help"])
    for verb in ("train-teacher", "distill", "sample", "evaluate", "demo"):
        assert verb in result.output


def test_train_teacher_and_refuse_overwrite(tmp_path):
    out = tmp_path / "teacher"
    result = _ok(["train-teacher", "--out", out, "--dataset", "ring", "--steps", 3, "--device", "cpu"])
    assert "final_loss" in result.output and (out / "unet" / "config.json").is_file()
    before = (out / "teacher.json").read_text()
    _user_error(["train-teacher", "--out", out, "--dataset", "ring", "--steps", 3], "already holds a teacher")
    assert (out / "teacher.json").read_text() == before
    _user_error(["train-teacher", "--out", tmp_path / "x", "--dataset", "faces"], "unknown dataset")
    assert not (tmp_path / "x").exists()


def test_distill_outputs(students):
    for objective, run in students.items():
        summary = json.loads((run / "summary.json").read_text())
        assert summary["objective"] == objective and (run / "student.safetensors").is_file()
        assert (run / "checkpoints" / "last.safetensors").is_file()
        assert len((run / "metrics.jsonl").read_text().splitlines()) == 1  # log_every 10 → only the last step


def test_distill_tensorboard_and_resume(tiny_teacher_dir, tmp_path):
    run = tmp_path / "run"
    common = [
        "distill",
        "--teacher",
        tiny_teacher_dir,
        "--out",
        run,
        "--batch-size",
        4,
        "--num-intervals",
        10,
        "--lora-rank",
        2,
        "--device",
        "cpu",
    ]
    _ok([*common, "--steps", 2])
    assert any((run / "tensorboard").rglob("events.out.tfevents.*"))
    _ok([*common, "--steps", 3, "--resume"])
    assert json.loads((run / "summary.json").read_text())["steps"] == 3
    _user_error([*common, "--steps", 3], "already holds a run")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--guidance", "-1"], "guidance"),
        (["--num-intervals", "30"], "must divide"),
        (["--objective", "both"], "objective"),
        (["--device", "tpu"], "--device"),
    ],
)
def test_distill_user_errors(tiny_teacher_dir, tmp_path, extra, message):
    _user_error(["distill", "--teacher", tiny_teacher_dir, "--out", tmp_path / "run", *extra], message)
    assert not (tmp_path / "run").exists()


def test_distill_missing_teacher(tmp_path):
    _user_error(["distill", "--teacher", tmp_path / "nope", "--out", tmp_path / "run"], "neither an existing local")
    assert not (tmp_path / "run").exists()


def test_uncached_hub_teacher_offline_is_one_line_naming_the_id(tmp_path, monkeypatch):
    # an empty cache and offline mode: nothing may reach the network, and nothing may load before the refusal
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    import direct_cms.distill
    import direct_cms.text_teacher

    def must_not_load(*args, **kwargs):
        raise AssertionError("a teacher was loaded before the hub id was refused")

    monkeypatch.setattr(direct_cms.distill, "load_checked_scheduler", must_not_load)
    monkeypatch.setattr(direct_cms.distill, "load_teacher", must_not_load)
    monkeypatch.setattr(direct_cms.text_teacher, "check_teacher_source", must_not_load)
    monkeypatch.chdir(tmp_path)
    repo = "some-org/some-sdxl-pipeline"
    result = _user_error(["distill", "--teacher", repo, "--out", tmp_path / "run", "--device", "cpu"], repr(repo))
    line = result.output.strip().splitlines()[-1]
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert "HF_HUB_OFFLINE" in line and "hf download some-org/some-sdxl-pipeline" in line and "local folder" in line
    assert "train-teacher" not in line  # no longer mistaken for a built-in teacher folder
    assert not (tmp_path / "run").exists() and not (tmp_path / "hf-cache").exists()


def test_sample(students, tmp_path):
    _ok(["sample", "--student", students["cd"], "--out", tmp_path / "s", "--steps", 2, "--num-samples", 6])
    assert (tmp_path / "s" / "samples.png").stat().st_size > 0
    assert (tmp_path / "s" / "samples.safetensors").is_file()
    _user_error(["sample", "--student", students["cd"], "--out", tmp_path / "t", "--steps", 11], "K=11")
    assert not (tmp_path / "t").exists()
    if not torch.cuda.is_available():  # an unavailable device is refused at parse time, not ignored
        _user_error(["sample", "--student", students["cd"], "--out", tmp_path / "t", "--device", "cuda"], "cuda")
        assert not (tmp_path / "t").exists()


def test_builtin_sample_takes_a_non_cpu_device(students, tmp_path, monkeypatch):
    """`sample --device cuda` of a built-in student is no longer refused: the device reaches the sampler (CUDA is
    faked at parse time here and the job is handed the CPU, so this runs on a machine without a GPU)."""
    import direct_cms.experiment

    asked = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(
        direct_cms.experiment, "get_device", lambda device=None: asked.append(device) or torch.device("cpu")
    )
    _ok(
        [
            "sample",
            "--student",
            students["cd"],
            "--out",
            tmp_path / "s",
            "--steps",
            1,
            "--num-samples",
            2,
            "--device",
            "cuda",
        ]
    )
    assert asked == ["cuda"] and (tmp_path / "s" / "samples.safetensors").is_file()


def test_builtin_sample_and_evaluate_on_a_device_keep_the_cpu_numbers(students, tmp_path, classifier_path):
    """`sample`/`evaluate --device cpu` of built-in students equal the package's sampler and teacher solve called
    directly on CPU tensors (the computation before they became device-aware), bit for bit."""
    from direct_cms.data import load_dataset
    from direct_cms.distill import load_student
    from direct_cms.evaluation import EvalNoise, student_sample, teacher_sample
    from direct_cms.guidance import GuidedTeacher, UNetEps
    from direct_cms.metrics import ode_error
    from direct_cms.scheduler import DirectCMScheduler
    from direct_cms.solvers import DDIMSolver
    from direct_cms.teacher import load_teacher
    from sixlab_shared import load_checkpoint

    _ok(["sample", "--student", students["cd"], "--out", tmp_path / "s", "--steps", 2, "--num-samples", 6, "--seed", 3])
    _ok(["sample", "--student", students["cd"], "--out", tmp_path / "c", "--steps", 2, "--num-samples", 6])
    models, config, teacher = load_student(students["cd"])
    scheduler = DirectCMScheduler.from_teacher_config(teacher.scheduler.config, config.num_intervals)
    noise = EvalNoise.generate(tuple(load_dataset(teacher.dataset).x.shape[1:]), 6, teacher.num_classes, 3, 2)
    direct = student_sample(models.student_eps, scheduler, noise.x_T, noise.labels, 2, noise.renoise)
    assert torch.equal(load_checkpoint(tmp_path / "s" / "samples.safetensors")["samples"], direct)

    out = tmp_path / "eval"
    args = ["evaluate", "--student", students["cd"], "--out", out, "--num-samples", 8, "--ks", 1, "--ks", 2]
    _ok([*args, "--sanity-samples", 0, "--classifier", classifier_path, "--device", "cpu"])
    stored = load_checkpoint(out / "eval_noise.safetensors")
    reference_teacher = load_teacher(config.teacher)
    guided = GuidedTeacher(UNetEps(reference_teacher.network), config.guidance, torch.tensor(teacher.null_class))
    reference = teacher_sample(guided, DDIMSolver(teacher.grid(config.num_intervals)), stored["x_T"], stored["labels"])
    assert torch.equal(load_checkpoint(out / "teacher_samples.safetensors")["samples"], reference)
    summary = json.loads((out / "summary.json").read_text())
    for k in (1, 2):
        samples = student_sample(models.student_eps, scheduler, stored["x_T"], stored["labels"], k, stored["renoise"])
        assert summary["students"]["cd"][str(k)]["ode_error"] == ode_error(samples, reference)


def test_evaluate(students, tmp_path, classifier_path, tiny_teacher_dir):
    out = tmp_path / "eval"
    result = _ok(
        [
            "evaluate",
            "--student",
            students["cd"],
            "--student",
            students["direct"],
            "--out",
            out,
            "--num-samples",
            12,
            "--ks",
            1,
            "--ks",
            2,
            "--sanity-samples",
            4,
            "--sanity-intervals",
            100,
            "--classifier",
            classifier_path,
        ]
    )
    assert "ode_error" in result.output and "direct" in result.output
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["students"]) == {"cd", "direct"} and set(summary["students"]["cd"]) == {"1", "2"}
    assert summary["teacher"]["ode_error_vs_fine"] >= 0
    assert (out / "samples.png").is_file() and (out / "eval_noise.safetensors").is_file()
    # the ODE-error reference is the teacher alone (adapters of the loaded students play no part)
    from direct_cms.evaluation import teacher_sample
    from direct_cms.guidance import GuidedTeacher, UNetEps
    from direct_cms.solvers import DDIMSolver
    from direct_cms.teacher import load_teacher
    from sixlab_shared import load_checkpoint

    teacher = load_teacher(tiny_teacher_dir)
    noise = load_checkpoint(out / "eval_noise.safetensors")
    expected = teacher_sample(
        GuidedTeacher(UNetEps(teacher.network), 3.0, torch.tensor(10)),
        DDIMSolver(teacher.grid(10)),
        noise["x_T"],
        noise["labels"],
    )
    torch.testing.assert_close(load_checkpoint(out / "teacher_samples.safetensors")["samples"], expected)
    noise_before = (out / "eval_noise.safetensors").read_bytes()
    _ok(
        [
            "evaluate",
            "--student",
            students["cd"],
            "--out",
            out,
            "--num-samples",
            12,
            "--ks",
            1,
            "--sanity-samples",
            0,
            "--classifier",
            classifier_path,
        ]
    )
    assert (out / "eval_noise.safetensors").read_bytes() == noise_before  # stored once, reused
    _user_error(
        ["evaluate", "--student", students["cd"], "--out", out, "--num-samples", 10, "--ks", 1], "holds noise for 12"
    )
    _user_error(["evaluate", "--student", students["cd"], "--out", tmp_path / "e2", "--ks", 1, "--ks", 20], "exceeds")
    _user_error(["evaluate", "--student", tmp_path, "--out", tmp_path / "e3"], "student.safetensors")
    assert not (tmp_path / "e3").exists()


def test_demo_fast(tmp_path):
    out = tmp_path / "demo"
    result = _ok(["demo", "--fast", "--out", out])
    assert "cd" in result.output and "direct" in result.output and "teacher calls/update" in result.output
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["students"]) == {"cd", "direct"}
    assert (out / "seed0" / "eval" / "samples.png").is_file() and (out / "teacher" / "teacher.json").is_file()


def test_distill_config_file(tiny_teacher_dir, tmp_path):
    config = tmp_path / "distill.toml"
    config.write_text(
        f'teacher = "{tiny_teacher_dir}"\nsteps = 1\nbatch-size = 4\nnum-intervals = 10\nlora-rank = 2\n'
        'tensorboard = false\nobjective = "direct"\ndevice = "cpu"\n'
    )
    _ok(["distill", "--config", config, "--out", tmp_path / "run"])
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["objective"] == "direct"
    bad = tmp_path / "bad.toml"
    bad.write_text("stepz = 1\n")
    result = runner.invoke(app, ["distill", "--config", str(bad), "--out", str(tmp_path / "run2")])
    assert result.exit_code == 2 and "stepz" in result.output
    assert not (tmp_path / "run2").exists()


def _distill_config(monkeypatch, args):
    """The DistillConfig that `direct-cms distill ARGS` hands to the library (the run itself is replaced)."""
    import direct_cms.distill

    seen = []

    def fake_distill(config, out, **kwargs):
        seen.append(config)
        return {"steps": 0, "first_loss": 0, "final_loss": 0, "teacher_calls_per_update": 0, "updates_per_s": 0}

    monkeypatch.setattr(direct_cms.distill, "distill", fake_distill)
    _ok(["distill", *args])
    return seen[0]


def test_preset_never_overrides_an_explicit_option(monkeypatch, tmp_path):
    from direct_cms.config import PRESETS, DistillConfig

    base = ["--teacher", "x", "--out", tmp_path / "run"]
    paper = PRESETS["paper"]
    defaults = DistillConfig()
    alone = _distill_config(monkeypatch, [*base, "--preset", "paper"])
    assert alone.preset == "paper"
    assert {name: getattr(alone, name) for name in paper} == paper
    # given at their default values (which the preset changes): the user's values win
    explicit = _distill_config(
        monkeypatch,
        [*base, "--preset", "paper", "--lr", defaults.lr, "--seed", defaults.seed, "--no-gradient-checkpointing"],
    )
    assert (explicit.lr, explicit.seed, explicit.gradient_checkpointing) == (defaults.lr, defaults.seed, False)
    assert explicit.lr != paper["lr"] and explicit.batch_size == paper["batch_size"]
    # --config beats the preset, the command line beats --config
    toml = tmp_path / "c.toml"
    toml.write_text(f'preset = "paper"\nlr = {defaults.lr}\nbatch-size = {defaults.batch_size}\n')
    from_file = _distill_config(monkeypatch, [*base, "--config", toml])
    assert (from_file.preset, from_file.lr, from_file.batch_size) == ("paper", defaults.lr, defaults.batch_size)
    assert from_file.steps == paper["steps"]
    both = _distill_config(monkeypatch, [*base, "--config", toml, "--batch-size", 3])
    assert (both.lr, both.batch_size, both.steps) == (defaults.lr, 3, paper["steps"])
    # no preset: plain defaults
    assert _distill_config(monkeypatch, base).lr == defaults.lr


@pytest.mark.parametrize(
    ("verb", "config_cls", "exclude"),
    [
        ("train-teacher", "direct_cms.teacher:TeacherConfig", ("device",)),
        ("distill", "direct_cms.distill:DistillConfig", ("device",)),
        ("sample", "direct_cms.jobs:SampleConfig", ("device",)),
        ("evaluate", "direct_cms.jobs:EvaluateConfig", ("device",)),
    ],
)
def test_config_coverage(verb, config_cls, exclude):
    import importlib

    from sixlab_shared.cli import config_coverage

    module, name = config_cls.split(":")
    cls = getattr(importlib.import_module(module), name)
    # device is the shared --device option (checked at parse time), passed into the config by the command
    assert config_coverage(app, verb, cls, exclude=exclude) == []
    command = typer_command(verb)
    assert "device" in {p.name for p in command.params}


def typer_command(verb):
    import typer

    return typer.main.get_command(app).commands[verb]


def test_distill_device_cuda_without_cuda_is_one_line(tiny_teacher_dir, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    _user_error(["distill", "--teacher", tiny_teacher_dir, "--out", tmp_path / "run", "--device", "cuda"], "cuda")
    assert not (tmp_path / "run").exists()


def test_demo_fast_smoke_label_overwrite_and_teacher_per_dataset(tmp_path):
    out = tmp_path / "demo"
    first = _ok(["demo", "--fast", "--out", out, "--dataset", "ring", "--threads", 1])
    assert "SMOKE RUN" in first.output and "nan" not in first.output and "skipped" in first.output
    _user_error(["demo", "--fast", "--out", out, "--dataset", "ring"], "--overwrite")
    # a demo on another dataset into the same folder trains a new teacher instead of reusing the ring one
    _ok(["demo", "--fast", "--out", out, "--dataset", "digits", "--overwrite"])
    assert json.loads((out / "teacher" / "teacher.json").read_text())["dataset"] == "digits"


def test_text_to_image_cli(tiny_sd_dir, captioned_dir, tiny_clip_dir, tmp_path):
    run = tmp_path / "run"
    # a relative --teacher path is stored absolute: the run reloads from any working directory
    import os

    cwd = os.getcwd()
    os.chdir(tiny_sd_dir.parent)
    try:
        _ok(
            [
                "distill",
                "--teacher",
                tiny_sd_dir.name,
                "--data",
                captioned_dir,
                "--resolution",
                16,
                "--out",
                run,
                "--steps",
                1,
                "--batch-size",
                2,
                "--num-intervals",
                10,
                "--lora-rank",
                2,
                "--lora-targets",
                "to_q",
                "--lora-targets",
                "conv1",
                "--no-tensorboard",
                "--threads",
                1,
            ]
        )
    finally:
        os.chdir(cwd)
    assert json.loads((run / "config.json").read_text())["config"]["lora_targets"] == ["to_q", "conv1"]
    _ok(["sample", "--student", run, "--out", tmp_path / "s", "--prompt", "a cat", "--prompt", "dog", "--steps", 2])
    assert (tmp_path / "s" / "sample_001.png").is_file()
    _user_error(["sample", "--student", run, "--out", tmp_path / "s", "--prompt", "x"], "--overwrite")
    _user_error(["sample", "--student", run, "--out", tmp_path / "s2"], "--prompt")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a cat\na dog\n")
    result = _ok(
        [
            "evaluate",
            "--student",
            run,
            "--prompts",
            prompts,
            "--out",
            tmp_path / "e",
            "--ks",
            1,
            "--ks",
            2,
            "--clip-model",
            tiny_clip_dir,
            "--precision",
            "bf16",
        ]
    )
    assert (
        "latent_mse" in result.output
        and "nan" not in result.output
        and "clip_score" in result.output
        and "nfe" in result.output
    )
    _user_error(["evaluate", "--student", run, "--out", tmp_path / "e2"], "--prompts")
    _user_error(
        [
            "distill",
            "--teacher",
            tiny_sd_dir,
            "--out",
            tmp_path / "r2",
            "--optimizer",
            "adamw8bit",
            "--data",
            captioned_dir,
        ],
        "bitsandbytes",
    )
    assert not (tmp_path / "r2").exists()


def test_only_the_main_process_prints(tiny_teacher_dir, tmp_path, monkeypatch):
    import direct_cms.cli as cli

    monkeypatch.setattr(cli, "is_main_process", lambda: False)  # as under torchrun on rank 1
    args = ["distill", "--teacher", tiny_teacher_dir, "--out", tmp_path / "run", "--steps", 1, "--batch-size", 2]
    result = _ok([*args, "--num-intervals", 10, "--lora-rank", 2, "--no-tensorboard", "--device", "cpu"])
    assert result.output.strip() == ""
