"""Every CLI verb on tiny data, and the user errors (one line, exit 2, nothing written or lost)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from bnpo.cli import app
from bnpo.data import load_dataset

runner = CliRunner()


def _invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def room_run(tmp_path_factory):
    """A tiny Room(3) dataset and a 6-epoch nonparametric run on it."""
    root = tmp_path_factory.mktemp("cli")
    data = root / "room.npz"
    result = _invoke(
        "collect", "bnpo/Room-v0", "--out", str(data), "--episodes", "60", "--env-kwargs", '{"n_rooms": 3}'
    )
    assert result.exit_code == 0, result.output
    run = root / "run"
    result = _invoke("fit", str(data), "--out", str(run), "--epochs", "6", "--seed", "1")
    assert result.exit_code == 0, result.output
    return data, run, result.output


def test_collect_writes_a_valid_dataset(room_run) -> None:
    data, _, _ = room_run
    dataset = load_dataset(data)
    assert dataset.n_episodes == 60 and dataset.n_actions == 4 and dataset.options is not None
    assert dataset.env_id == "bnpo/Room-v0"


def test_fit_writes_run_directory_and_table(room_run) -> None:
    _, run, output = room_run
    assert "room_score" in output and "K" in output
    summary = json.loads((run / "summary.json").read_text())
    assert summary["all"]["K"] >= 1 and "heldout" in summary
    assert (run / "checkpoints" / "last.safetensors").is_file()
    assert (run / "training.png").stat().st_size > 1000
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 6 and "options/K" in json.loads(lines[0])


def test_fit_resume_continues_to_more_epochs_and_matches_one_run(room_run, tmp_path) -> None:
    data, _, _ = room_run
    one = tmp_path / "one"
    assert _invoke("fit", str(data), "--out", str(one), "--epochs", "4", "--k", "2").exit_code == 0
    two = tmp_path / "two"
    assert _invoke("fit", str(data), "--out", str(two), "--epochs", "4", "--k", "2").exit_code == 0
    # same seed -> same numbers
    assert (one / "metrics.jsonl").read_text() == (two / "metrics.jsonl").read_text()
    result = runner.invoke(app, ["fit", str(data), "--out", str(two), "--epochs", "4", "--k", "2"])
    assert result.exit_code == 2 and "already holds a run" in result.output


def test_segment_and_evaluate(room_run, tmp_path) -> None:
    data, run, _ = room_run
    result = _invoke("segment", str(run), str(data), "--out", str(tmp_path / "seg"), "--n-plot", "5")
    assert result.exit_code == 0, result.output
    segments = json.loads((tmp_path / "seg" / "segments.json").read_text())
    assert np.array(segments["options"]).shape == (60, 5)
    assert (tmp_path / "seg" / "segmentation.png").stat().st_size > 1000
    result = _invoke(
        "evaluate", str(run / "checkpoints" / "last.safetensors"), str(data), "--out", str(tmp_path / "ev")
    )
    assert result.exit_code == 0 and "loglik_per_step" in result.output
    scores = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    assert 0.0 <= scores["room_score"] <= 1.0 and scores["loglik_per_traj"] < 0


def test_demo_fast(tmp_path) -> None:
    result = _invoke("demo", "--fast", "--out", str(tmp_path / "demo"))
    assert result.exit_code == 0, result.output
    for name in ("summary.json", "segmentation.png", "training.png", "data.npz", "downstream.png", "downstream.json"):
        assert (tmp_path / "demo" / name).is_file()
    assert "K" in result.output and "auc_options" in result.output and "auc_primitive" in result.output
    downstream = json.loads((tmp_path / "demo" / "summary.json").read_text())["downstream"]
    assert downstream["env"] == "bnpo/Room-v0" and len(downstream["options"]["auc"]) == 2


def _user_error(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: ") or "Error" in result.output
    return result.output


def test_user_errors_write_nothing(room_run, tmp_path) -> None:
    data, run, _ = room_run
    out = tmp_path / "x"
    assert "does not exist" in _user_error(["fit", str(tmp_path / "none.npz"), "--out", str(out)])
    assert not out.exists()
    assert "not both" in _user_error(["fit", str(data), "--out", str(out), "--k", "2", "--nonparametric"])
    assert "shorter than seq_len=9" in _user_error(["fit", str(data), "--out", str(out), "--seq-len", "9"])
    assert not out.exists()
    bad = tmp_path / "bad.npz"
    np.savez(bad, observations=np.zeros((4, 3), np.float32))
    assert "lacks key(s)" in _user_error(["fit", str(bad), "--out", str(out)])
    assert "invalid fit option epochs" in _user_error(["fit", str(data), "--out", str(out), "--epochs", "0"])
    assert not out.exists()
    before = data.read_bytes()
    assert "already exists" in _user_error(["collect", "bnpo/Room-v0", "--out", str(data), "--episodes", "2"])
    assert data.read_bytes() == before
    assert "no scripted expert" in _user_error(["collect", "CartPole-v1", "--out", str(tmp_path / "c.npz")])
    assert "--env-kwargs" in _user_error(
        ["collect", "bnpo/Room-v0", "--out", str(tmp_path / "d.npz"), "--env-kwargs", "[1"]
    )
    assert not (tmp_path / "c.npz").exists() and not (tmp_path / "d.npz").exists()
    assert "neither a checkpoint" in _user_error(["evaluate", str(tmp_path), str(data), "--out", str(tmp_path / "e")])
    assert "--resume" in _user_error(["fit", str(data), "--out", str(tmp_path / "fresh"), "--resume"])
    line = tmp_path / "line.npz"
    assert _invoke("collect", "bnpo/Line-v0", "--out", str(line), "--episodes", "3").exit_code == 0
    assert "the model expects obs_dim=3" in _user_error(["segment", str(run), str(line), "--out", str(tmp_path / "s")])
    assert not (tmp_path / "s").exists()
    assert "--env must be one of" in _user_error(["demo", "--env", "atari", "--out", str(tmp_path / "dm")])


def test_config_file_sets_options_and_rejects_unknown_keys(room_run, tmp_path) -> None:
    data, _, _ = room_run
    config = tmp_path / "fit.toml"
    config.write_text("epochs = 2\nk = 2\n")
    run = tmp_path / "cfg"
    result = _invoke("fit", str(data), "--out", str(run), "--config", str(config))
    assert result.exit_code == 0, result.output
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    assert json.loads((run / "summary.json").read_text())["all"]["K"] == 2
    config.write_text("epoch = 2\n")
    result = runner.invoke(app, ["fit", str(data), "--out", str(tmp_path / "cfg2"), "--config", str(config)])
    assert result.exit_code == 2 and "unknown option(s) epoch" in result.output
    assert not (tmp_path / "cfg2").exists()


def test_every_fit_config_field_is_reachable_with_the_dataclass_defaults() -> None:
    from bnpo.cli import FIT_OWN
    from bnpo.downstream import DownstreamConfig
    from bnpo.fit import FitConfig
    from sixlab_shared.cli import config_coverage

    # k and nonparametric are set from --k (fixed K) / its absence (grow from 1): checked just below
    assert config_coverage(app, "fit", FitConfig, exclude=FIT_OWN) == []
    # seeds is set from --seed and --seeds (a count)
    assert config_coverage(app, "rl", DownstreamConfig, exclude=("seeds",)) == []


def test_k_and_network_sizes_reach_the_config(monkeypatch, tmp_path) -> None:
    import importlib

    cli = importlib.import_module("bnpo.cli")  # the module object itself, whatever `bnpo` attributes other tests left

    seen = {}
    monkeypatch.setattr(cli, "fit_job", lambda data, out, config, **kw: seen.setdefault("config", config) and {})
    monkeypatch.setattr(cli, "summary_rows", lambda summary: [])
    args = ["fit", "d.npz", "--out", str(tmp_path / "r")]
    assert (
        runner.invoke(
            app,
            [
                *args,
                "--k",
                "4",
                "--grad-clip",
                "2.5",
                "--policy-hidden",
                "8",
                "--policy-hidden",
                "8",
                "--split-noise",
                "0.1",
                "--encoder-hidden",
                "12",
            ],
        ).exit_code
        == 0
    )
    config = seen.pop("config")
    assert (config.k, config.nonparametric, config.grad_clip, config.policy_hidden) == (4, False, 2.5, [8, 8])
    assert (config.split_noise, config.encoder_hidden) == (0.1, 12)
    assert runner.invoke(app, args).exit_code == 0
    assert seen["config"].nonparametric and seen["config"].k == 3


def test_resume_cuts_metrics_back_to_the_checkpoint(room_run, tmp_path) -> None:
    data, _, _ = room_run
    straight = tmp_path / "straight"
    base = ["fit", str(data), "--k", "2", "--checkpoint-every", "3"]
    assert _invoke(*base, "--out", str(straight), "--epochs", "6").exit_code == 0
    run = tmp_path / "run"
    assert _invoke(*base, "--out", str(run), "--epochs", "3").exit_code == 0
    with open(run / "metrics.jsonl", "a") as handle:  # a killed run had logged epochs 3-4 after its checkpoint
        handle.write(json.dumps({"step": 3, "epoch": 3}) + "\n" + json.dumps({"step": 4, "epoch": 4}) + "\n")
    assert _invoke(*base, "--out", str(run), "--epochs", "6", "--resume").exit_code == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2, 3, 4, 5]
    assert (run / "metrics.jsonl").read_text() == (straight / "metrics.jsonl").read_text()


def test_overwrite_replaces_a_run_and_messages_name_real_flags(room_run, tmp_path) -> None:
    data, run, _ = room_run
    out = tmp_path / "o"
    assert _invoke("fit", str(data), "--out", str(out), "--epochs", "1", "--k", "2").exit_code == 0
    result = runner.invoke(app, ["fit", str(data), "--out", str(out), "--epochs", "1", "--k", "2"])
    assert result.exit_code == 2 and "--resume" in result.stderr and "--overwrite" in result.stderr
    assert _invoke("fit", str(data), "--out", str(out), "--epochs", "2", "--k", "2", "--overwrite").exit_code == 0
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
    seg = tmp_path / "seg"
    assert _invoke("segment", str(run), str(data), "--out", str(seg)).exit_code == 0
    result = runner.invoke(app, ["segment", str(run), str(data), "--out", str(seg)])
    assert result.exit_code == 2 and "--overwrite" in result.stderr
    assert _invoke("segment", str(run), str(data), "--out", str(seg), "--overwrite").exit_code == 0
    ev = tmp_path / "ev"
    assert _invoke("evaluate", str(run), str(data), "--out", str(ev)).exit_code == 0
    result = runner.invoke(app, ["evaluate", str(run), str(data), "--out", str(ev)])
    assert result.exit_code == 2 and "--overwrite" in result.stderr


def test_shared_options_on_every_verb() -> None:
    for verb in ("collect", "fit", "segment", "evaluate", "rl", "demo"):
        text = runner.invoke(app, [verb, "--help"], terminal_width=200).output
        for flag in ("--out", "--device", "--threads", "--config", "--verbose"):
            assert flag in text, (verb, flag)
    assert "--fast" in runner.invoke(app, ["demo", "--help"]).output
