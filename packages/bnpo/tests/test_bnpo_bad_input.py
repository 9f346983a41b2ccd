"""Every bad input of issue 16: one line on stderr, exit 2, nothing written and nothing lost."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import bnpo
from bnpo.cli import app
from bnpo.fit import CHECKPOINT_NAME, FitConfig, TrainingDiverged, fit, load_model, save_model
from sixlab_shared import RunDir, UserError, load_checkpoint, save_checkpoint

runner = CliRunner()


def _error(args: list[str]) -> str:
    """Run the CLI, require exit 2 and a single ``error:`` line on stderr; return that line."""
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def _snapshot(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A 40-episode Room(3) dataset file."""
    path = tmp_path_factory.mktemp("bad") / "room.npz"
    result = runner.invoke(
        app, ["collect", "bnpo/Room-v0", "--out", str(path), "--episodes", "40", "--env-kwargs", '{"n_rooms": 3}']
    )
    assert result.exit_code == 0, result.output
    return path


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--k", "0"], "k=0"),
        (["--k", "-2"], "k=-2"),
        (["--tau-initial", "0"], "tau_initial=0.0"),
        (["--tau-initial", "-1"], "tau_initial=-1.0"),
        (["--tau-decay", "0"], "tau_decay=0.0: must be in (0, 1]"),
        (["--tau-decay", "1.01"], "tau_decay=1.01"),
        (["--entropy-decay", "0"], "entropy_decay=0.0"),
        (["--entropy-decay", "1.5"], "entropy_decay=1.5"),
        (["--lr", "0"], "lr=0.0"),
        (["--holdout", "1"], "holdout_fraction=1.0"),
        (["--holdout", "0.99"], "training split is empty"),
    ],
)
def test_fit_option_out_of_range(data, tmp_path, flags, message) -> None:
    out = tmp_path / "run"
    small = data.parent / "two.npz"
    if not small.exists():  # two episodes: --holdout 0.99 holds both out
        full = bnpo.load_dataset(data)
        end = full.episode_bounds()[1][1]
        bnpo.Dataset(full.observations[:end], full.actions[:end], full.episode_starts[:end], full.n_actions).save(small)
    source = small if "empty" in message else data
    assert message in _error(["fit", str(source), "--out", str(out), "--epochs", "1", *flags])
    assert not out.exists()


def test_k_is_no_longer_replaced_by_three() -> None:
    with pytest.raises(UserError, match="k=0"):
        FitConfig(nonparametric=False, k=0)
    assert FitConfig(nonparametric=False, k=1).k == 1


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(data, tmp_path) -> None:
    dataset = bnpo.load_dataset(data)
    # lr 3 with the exact objective, batch 16: the gradient overflows after a few epochs (measured); checkpoints every 2
    config = FitConfig(
        nonparametric=False, k=2, epochs=30, lr=3.0, objective="exact", batch_size=16, checkpoint_every=2
    )
    run = RunDir(tmp_path / "run")
    with pytest.raises(TrainingDiverged) as err:
        fit(dataset, config, run=run)
    message = str(err.value)
    assert "\n" not in message
    failed = int(re.search(r"at epoch (\d+)", message).group(1))
    saved = failed - failed % 2
    assert saved >= 2, message  # the scenario needs a checkpoint before the failure
    assert f"last good checkpoint (after epoch {saved})" in message
    state = load_checkpoint(run.checkpoint_path(CHECKPOINT_NAME))
    assert state["epoch"] == saved
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    assert not (tmp_path / "run" / "summary.json").exists()
    # the kept checkpoint is exactly a clean run of the same configuration stopped there
    clean = fit(dataset, FitConfig(**{**config.__dict__, "epochs": saved}))
    for key, value in clean.model.state_dict().items():
        torch.testing.assert_close(state["model"][key], value, rtol=0, atol=0)


def test_nan_loss_through_the_cli_writes_no_summary(data, tmp_path) -> None:
    out = tmp_path / "run"
    line = _error(["fit", str(data), "--out", str(out), "--k", "2", "--lr", "1000", "--epochs", "3"])
    assert "became NaN or infinite" in line and "lower --lr" in line
    assert not (out / "summary.json").exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--epsilon", "-0.1"], "--epsilon must be a probability in [0, 1]"),
        (["--epsilon", "1.5"], "--epsilon must be a probability in [0, 1]"),
        (["--max-steps", "0"], "--max-steps must be >= 1"),
        (["--max-steps", "-3"], "--max-steps must be >= 1"),
    ],
)
def test_collect_out_of_range(tmp_path, flags, message) -> None:
    out = tmp_path / "d.npz"
    assert message in _error(["collect", "bnpo/Line-v0", "--out", str(out), "--episodes", "2", *flags])
    assert not out.exists()


def test_collect_out_is_a_folder(tmp_path) -> None:
    (tmp_path / "f.npz").mkdir()
    assert "is a folder" in _error(["collect", "bnpo/Line-v0", "--out", str(tmp_path / "f.npz")])
    assert list((tmp_path / "f.npz").iterdir()) == []


def test_n_plot_and_out_that_is_a_file(data, tmp_path) -> None:
    run = tmp_path / "run"
    assert runner.invoke(app, ["fit", str(data), "--out", str(run), "--epochs", "1", "--k", "2"]).exit_code == 0
    for bad in ("0", "-1"):
        assert "--n-plot must be >= 1" in _error(
            ["segment", str(run), str(data), "--out", str(tmp_path / "s"), "--n-plot", bad]
        )
    assert not (tmp_path / "s").exists()
    target = tmp_path / "file.txt"
    target.write_text("keep me")
    for args in (
        ["fit", str(data), "--out", str(target), "--epochs", "1"],
        ["segment", str(run), str(data), "--out", str(target)],
        ["evaluate", str(run), str(data), "--out", str(target)],
        ["demo", "--fast", "--out", str(target)],
    ):
        assert "is not a folder" in _error(args)
        assert target.read_text() == "keep me"


@pytest.mark.parametrize("kind", ["truncated", "random", "text", "empty"])
def test_unreadable_npz(data, tmp_path, kind) -> None:
    bad = tmp_path / "bad.npz"
    content = data.read_bytes()
    bad.write_bytes(
        {
            "truncated": content[: len(content) // 2],
            "random": np.random.default_rng(0).bytes(3000),
            "text": b"hello",
            "empty": b"",
        }[kind]
    )
    line = _error(["fit", str(bad), "--out", str(tmp_path / "o")])
    assert "bad.npz" in line and ("truncated or corrupt" in line or "not a .npz (zip) archive" in line)
    assert not (tmp_path / "o").exists()


def test_non_scalar_n_actions(data, tmp_path) -> None:
    arrays = dict(np.load(data))
    arrays["n_actions"] = np.array([4, 4])
    bad = tmp_path / "vec.npz"
    np.savez(bad, **arrays)
    assert "'n_actions' must be a scalar" in _error(["fit", str(bad), "--out", str(tmp_path / "o")])
    assert not (tmp_path / "o").exists()


def _corrupt_checkpoint(source, target, edit) -> None:
    state = load_checkpoint(source)
    edit(state)
    save_checkpoint(target, state)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s["model_config"].update(colour="blue"), "unknown model_config key(s) colour"),
        (lambda s: s["model_config"].update(obs_dim=0), "invalid model_config"),
        (lambda s: s["model_config"].update(objective="magic"), "invalid model_config"),
        (lambda s: s.update(n_options=0), "n_options must be an integer >= 1"),
        (lambda s: s.update(n_options="two"), "n_options must be an integer >= 1"),
        (lambda s: s.update(model_config=[1, 2]), "model_config must be a JSON object"),
    ],
)
def test_checkpoint_with_bad_config_keys(data, tmp_path, edit, message) -> None:
    model = bnpo.OptionModel(bnpo.OptionModelConfig(obs_dim=4, n_actions=4, n_options=2))
    good = tmp_path / "good.safetensors"
    save_model(good, model)
    bad = tmp_path / "bad.safetensors"
    _corrupt_checkpoint(good, bad, edit)
    with pytest.raises(UserError, match=message.replace("(", "\\(").replace(")", "\\)")):
        load_model(bad)
    assert message in _error(["evaluate", str(bad), str(data), "--out", str(tmp_path / "e")])
    assert not (tmp_path / "e").exists()


def test_resume_from_another_seed_or_config(data, tmp_path) -> None:
    run = tmp_path / "run"
    base = ["fit", str(data), "--out", str(run), "--k", "2", "--epochs", "2"]
    assert runner.invoke(app, base).exit_code == 0
    before = _snapshot(run)
    assert "seed 0 -> 1" in _error([*base, "--epochs", "3", "--resume", "--seed", "1"])
    assert "lr 0.001 -> 0.002" in _error([*base, "--epochs", "3", "--resume", "--lr", "0.002"])
    assert _snapshot(run) == before
    # a config.json that agrees but a checkpoint from another seed (copied in by hand): the checkpoint is compared
    other = tmp_path / "other"
    assert runner.invoke(app, [*base[:3], str(other), "--k", "2", "--epochs", "2", "--seed", "5"]).exit_code == 0
    (run / "checkpoints" / "last.safetensors").write_bytes((other / "checkpoints" / "last.safetensors").read_bytes())
    before = _snapshot(run)
    assert "checkpoint's fit options" in _error([*base, "--epochs", "3", "--resume"])
    assert "seed 5 -> 0" in _error([*base, "--epochs", "3", "--resume"])
    assert _snapshot(run) == before
    # unknown keys in config.json
    config = json.loads((run / "config.json").read_text())
    config["config"]["fit"]["colour"] = "blue"
    (run / "config.json").write_text(json.dumps(config))
    assert "unknown fit option(s) colour" in _error([*base, "--epochs", "3", "--resume"])
