"""`bnpo fit --method compile` end to end: outputs, --resume (bit-identical), refused resumes, segment/evaluate."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from bnpo.cli import app
from bnpo.fit_config import FitConfig
from bnpo.workflows import apply_preset
from sixlab_shared import load_checkpoint

runner = CliRunner()


def _invoke(*args: str):
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def _snapshot(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("compile") / "room.npz"
    _invoke("collect", "bnpo/Room-v0", "--out", str(path), "--episodes", "60", "--env-kwargs", '{"n_rooms": 3}')
    return path


FIT = ("--method", "compile", "--batch-size", "32", "--checkpoint-every", "2", "--threads", "1")


def test_fit_compile_writes_the_same_outputs_as_bnpo(data, tmp_path, cli_error) -> None:
    run = tmp_path / "run"
    result = _invoke("fit", str(data), "--out", str(run), "--k", "3", "--epochs", "3", *FIT)
    assert "CompILE" in result.output and "accuracy" in result.output and "heldout_loglik_per_step" in result.output
    summary = json.loads((run / "summary.json").read_text())
    assert (
        summary["method"] == "CompILE" and summary["all"]["K"] == 3 and np.isfinite(summary["all"]["loglik_per_step"])
    )
    assert json.loads((run / "config.json").read_text())["config"]["fit"]["method"] == "compile"
    assert load_checkpoint(run / "checkpoints" / "last.safetensors")["model_kind"] == "compile"
    assert (run / "training.png").stat().st_size > 1000
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 3
    _invoke("segment", str(run), str(data), "--out", str(tmp_path / "seg"), "--n-plot", "4")
    segments = json.loads((tmp_path / "seg" / "segments.json").read_text())
    assert np.array(segments["options"]).shape == (60, 5)
    result = _invoke("evaluate", str(run), str(data), "--out", str(tmp_path / "ev"))
    scores = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    assert scores["K"] == 3 and 0 <= scores["accuracy"] <= 1 and scores["loglik_per_traj"] < 0
    # Room's episodes all have 5 steps, so whole padded episodes are the same rows as the windows: same scores
    _invoke("evaluate", str(run), str(data), "--out", str(tmp_path / "ev2"), "--padding")
    padded = json.loads((tmp_path / "ev2" / "evaluation.json").read_text())
    assert padded["accuracy"] == pytest.approx(scores["accuracy"])
    assert padded["loglik_per_traj"] == pytest.approx(scores["loglik_per_traj"], rel=1e-5)


def test_np_compile_resume_is_bit_identical_and_mismatches_are_refused(data, tmp_path, cli_error) -> None:
    whole, part = tmp_path / "whole", tmp_path / "part"
    args = ("--growth-every", "2", *FIT)
    _invoke("fit", str(data), "--out", str(whole), "--epochs", "6", *args)
    _invoke("fit", str(data), "--out", str(part), "--epochs", "4", *args)
    result = _invoke("fit", str(data), "--out", str(part), "--epochs", "6", "--resume", *args)
    assert "NP-CompILE" in result.output
    assert (part / "metrics.jsonl").read_text() == (whole / "metrics.jsonl").read_text()
    one = load_checkpoint(whole / "checkpoints" / "last.safetensors")
    two = load_checkpoint(part / "checkpoints" / "last.safetensors")
    assert one["n_options"] == two["n_options"]
    for key, value in one["model"].items():
        assert np.array_equal(value.numpy(), two["model"][key].numpy()), key
    before = _snapshot(part)
    line = cli_error("fit", str(data), "--out", str(part), "--epochs", "8", "--resume", "--k", "3", *args)
    assert "changed" in line and "nonparametric" in line
    line = cli_error("fit", str(data), "--out", str(part), "--epochs", "8", "--resume", "--growth-every", "2")
    assert "method 'compile' -> 'bnpo'" in line
    line = cli_error("fit", str(data), "--out", str(part), "--epochs", "8", "--resume", "--seed", "1", *args)
    assert "seed 0 -> 1" in line
    assert _snapshot(part) == before


def test_compile_option_errors_are_one_line(data, tmp_path, cli_error) -> None:
    out = tmp_path / "x"
    assert "method" in cli_error("fit", str(data), "--out", str(out), "--method", "ddo")
    assert "objective" in cli_error("fit", str(data), "--out", str(out), "--method", "compile", "--objective", "exact")
    assert "compile_segments" in cli_error("fit", str(data), "--out", str(out), "--compile-segments", "0")
    assert not out.exists()


def test_preset_room_applies_the_documented_recipe_where_options_are_defaults(data, tmp_path, cli_error) -> None:
    run = tmp_path / "preset"
    _invoke("fit", str(data), "--out", str(run), "--epochs", "2", "--preset", "room", "--threads", "1")
    fit = json.loads((run / "config.json").read_text())["config"]["fit"]
    assert fit["objective"] == "exact" and fit["split_epochs"] == [150, 200, 250, 300, 350, 400]
    explicit = apply_preset(FitConfig(split_epochs=[7], entropy_decay=0.99), "room")  # an explicit option wins
    assert explicit.split_epochs == [7] and explicit.objective == "exact" and explicit.entropy_decay == 0.99
    assert "--preset" in cli_error("fit", str(data), "--out", str(tmp_path / "p3"), "--preset", "atari")
    assert "method=compile" in cli_error("fit", str(data), "--out", str(tmp_path / "p4"), "--preset", "room", *FIT)
    assert not (tmp_path / "p3").exists() and not (tmp_path / "p4").exists()
