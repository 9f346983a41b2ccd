"""CLI smoke tests on tiny budgets (reference §5 item 17) and every user error (one line, exit 2, nothing lost)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from eb_ensembles.cli import app

runner = CliRunner()


def _ok(args):
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output + str(result.exception)
    return result


def _user_error(args, message):
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    return result


@pytest.mark.parametrize("verb", ["train", "evaluate", "experiment", "demo"])
def test_help_shows_defaults(verb):
    result = _ok([verb, "--help"])
    assert "--config" in result.output


def test_experiment_e1_fast_writes_metrics_and_png(tmp_path):
    out = tmp_path / "e1"
    result = _ok(["experiment", "E1", "--fast", "--out", str(out)])
    assert "eb_gap" in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["max_residual"] <= 1e-8 and metrics["eb_gap"] == pytest.approx(0.0, abs=1e-9)
    assert {"config.json", "summary.json", "e1_functions.png"} <= {p.name for p in out.iterdir()}


def test_experiment_e2_fast(tmp_path):
    _ok(["experiment", "e2", "--fast", "--out", str(tmp_path / "e2")])
    assert json.loads((tmp_path / "e2" / "metrics.json").read_text())["shared_mass_on_argmax"] > 1 - 1e-6


def test_train_evaluate_and_resume(tmp_path):
    run = tmp_path / "run"
    args = ["train", "--dataset", "blobs", "--members", "2", "--epochs", "2", "--hidden", "8", "--out", str(run)]
    result = _ok(args)
    assert "member 1" in result.output
    summary = json.loads((run / "summary.json").read_text())
    assert summary["usable_members"] == 2 and summary["failed_members"] == []
    assert len(list((run / "members").glob("*.safetensors"))) == 2
    # resuming a finished run loads the members and reproduces the summary
    _ok([*args, "--resume"])
    assert json.loads((run / "summary.json").read_text())["members"] == summary["members"]
    ev = tmp_path / "eval"
    result = _ok(["evaluate", "--run", str(run), "--out", str(ev), "--fast"])
    metrics = json.loads((ev / "metrics.json").read_text())
    assert set(metrics) >= {"test", "shift", "shift_mean", "ood"} and 0 <= metrics["test"]["acc"] <= 1
    assert "ensemble M=2" in result.output


def test_same_seed_same_files(tmp_path):
    for name in ("a", "b"):
        _ok(
            [
                "train",
                "--dataset",
                "moons",
                "--members",
                "2",
                "--epochs",
                "1",
                "--hidden",
                "4",
                "--out",
                str(tmp_path / name),
            ]
        )
        _ok(["evaluate", "--run", str(tmp_path / name), "--out", str(tmp_path / f"eval_{name}"), "--fast"])
    assert (tmp_path / "eval_a" / "metrics.json").read_bytes() == (tmp_path / "eval_b" / "metrics.json").read_bytes()
    summary_a = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary_a == json.loads((tmp_path / "b" / "summary.json").read_text())


def test_train_regression_and_config_file(tmp_path):
    config = tmp_path / "train.toml"
    config.write_text('dataset = "cubic"\nmembers = 2\nepochs = 2\nhidden = [8]\n')
    _ok(["train", "--config", str(config), "--out", str(tmp_path / "run")])
    ev = tmp_path / "eval"
    _ok(["evaluate", "--run", str(tmp_path / "run"), "--out", str(ev)])
    assert "coverage_90" in json.loads((ev / "metrics.json").read_text())["test"]


def test_user_errors_write_nothing_and_lose_nothing(tmp_path):
    out = tmp_path / "x"
    _user_error(["train", "--dataset", "mnist", "--out", str(out)], "unknown dataset 'mnist'")
    _user_error(["train", "--members", "0", "--out", str(out)], "M >= 1")
    # a non-integer width is a click usage error (exit 2; click prints its usage box, not one line)
    assert runner.invoke(app, ["train", "--hidden", "a", "--out", str(out)]).exit_code == 2
    _user_error(["train", "--dataset", "digits", "--holdout", "12", "--out", str(out)], "not classes of 'digits'")
    _user_error(["experiment", "E9", "--out", str(out)], "unknown experiment 'E9'")
    _user_error(["experiment", "E5", "--dataset", "moons", "--out", str(out)], "E5 runs on digits, mnist1d")
    _user_error(["evaluate", "--run", str(tmp_path / "missing"), "--out", str(out)], "holds no training run")
    assert not out.exists()
    # an existing run is never clobbered
    _ok(["experiment", "E1", "--fast", "--members", "3", "--out", str(out)])
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    _user_error(["experiment", "E1", "--fast", "--out", str(out)], "already holds a run")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    # resume with different options is refused
    run = tmp_path / "run"
    _ok(["train", "--dataset", "blobs", "--members", "1", "--epochs", "1", "--hidden", "4", "--out", str(run)])
    _user_error(
        [
            "train",
            "--dataset",
            "blobs",
            "--members",
            "2",
            "--epochs",
            "1",
            "--hidden",
            "4",
            "--out",
            str(run),
            "--resume",
        ],
        "the options differ",
    )
    bad_config = tmp_path / "bad.toml"
    bad_config.write_text("membrs = 3\n")
    result = runner.invoke(app, ["train", "--config", str(bad_config), "--out", str(tmp_path / "y")])
    assert result.exit_code == 2 and "membrs" in result.output + result.stderr
    assert not (tmp_path / "y").exists()


def test_demo_fast(tmp_path):
    out = tmp_path / "demo"
    result = _ok(["demo", "--fast", "--out", str(out)])
    assert "ensemble_M3" in result.output and "map" in result.output and "E1 (" in result.output
    assert "SMOKE RUN (--fast)" in result.output
    e5 = json.loads((out / "E5" / "metrics.json").read_text())
    assert set(e5["table"]) == {"single", "ensemble_M3", "map", "mc_dropout", "vi", "laplace", "swag", "hmc"}
    assert 0 <= e5["table"]["map"]["agree_hmc"] <= 1 and e5["table"]["hmc"]["tv_hmc"] == 0.0
    assert (out / "E1" / "e1_functions.png").is_file() and (out / "E5" / "e5_digits_shift.png").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["E1"]["eb_gap"] == pytest.approx(0.0, abs=1e-9)


def test_config_coverage_every_field_reachable_with_the_dataclass_defaults():
    from eb_ensembles.cli import TRAIN_EXCLUDED_METHOD_FIELDS
    from eb_ensembles.methods import MethodConfig
    from eb_ensembles.runs import RunConfig
    from eb_ensembles.training.config import TrainConfig
    from sixlab_shared.cli import config_coverage

    assert config_coverage(app, "train", TrainConfig) == []
    # `train` trains a deep ensemble: the BNN-only fields are used by experiment E5 / demo, device is --device
    assert config_coverage(app, "train", MethodConfig, exclude=TRAIN_EXCLUDED_METHOD_FIELDS) == []
    assert config_coverage(app, "train", RunConfig, exclude=("method",), aliases={}) == []


@pytest.mark.parametrize("verb", ["train", "evaluate", "experiment", "demo"])
def test_shared_options_on_every_verb(verb):
    text = _ok([verb, "--help"]).output
    for option in ("--out", "--seed", "--device", "--threads", "--config", "--verbose", "--overwrite"):
        assert option in text, (verb, option)


def test_resume_of_a_finished_run_does_not_repeat_metric_rows(tmp_path):
    run = tmp_path / "run"
    args = ["train", "--dataset", "blobs", "--members", "2", "--epochs", "1", "--hidden", "4", "--out", str(run)]
    _ok(args)
    before = (run / "metrics.jsonl").read_text().splitlines()
    assert len(before) == 2
    _ok([*args, "--resume"])
    assert (run / "metrics.jsonl").read_text().splitlines() == before
    # --overwrite replaces the run (and may change its options)
    _ok([*args[:-2], "--members", "1", "--out", str(run), "--overwrite"])
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1


def test_demo_already_holds_a_run_names_only_its_flags(tmp_path):
    out = tmp_path / "e1"
    _ok(["experiment", "E1", "--fast", "--members", "3", "--out", str(out)])
    result = runner.invoke(app, ["experiment", "E1", "--fast", "--out", str(out)])
    assert result.exit_code == 2 and "--overwrite" in result.stderr and "--resume" not in result.stderr
    _ok(["experiment", "E1", "--fast", "--members", "3", "--out", str(out), "--overwrite"])


def test_experiment_e6_fast_through_the_registry(tmp_path):
    out = tmp_path / "e6"
    result = _ok(["experiment", "E6", "--fast", "--members", "2", "--threads", "1", "--out", str(out)])
    assert "posterior_ess" in result.output and "n=100/wd off" in result.output
    assert {"metrics.json", "summary.json", "e6_posterior_ess.png"} <= {p.name for p in out.iterdir()}
