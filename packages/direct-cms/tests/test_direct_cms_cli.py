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
    _user_error(["distill", "--teacher", tmp_path / "nope", "--out", tmp_path / "run"], "could not load teacher")
    assert not (tmp_path / "run").exists()


def test_sample(students, tmp_path):
    _ok(["sample", "--student", students["cd"], "--out", tmp_path / "s", "--steps", 2, "--num-samples", 6])
    assert (tmp_path / "s" / "samples.png").stat().st_size > 0
    assert (tmp_path / "s" / "samples.safetensors").is_file()
    _user_error(["sample", "--student", students["cd"], "--out", tmp_path / "t", "--steps", 11], "K=11")
    assert not (tmp_path / "t").exists()
    # sampling runs on the CPU in this version: another device is refused, not silently ignored
    _user_error(["sample", "--student", students["cd"], "--out", tmp_path / "t", "--device", "cuda"], "runs on the CPU")
    assert not (tmp_path / "t").exists()


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
            "1,2",
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
            "1",
            "--sanity-samples",
            0,
            "--classifier",
            classifier_path,
        ]
    )
    assert (out / "eval_noise.safetensors").read_bytes() == noise_before  # stored once, reused
    _user_error(
        ["evaluate", "--student", students["cd"], "--out", out, "--num-samples", 10, "--ks", "1"], "holds noise for 12"
    )
    _user_error(["evaluate", "--student", students["cd"], "--out", tmp_path / "e2", "--ks", "1,20"], "exceeds")
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
