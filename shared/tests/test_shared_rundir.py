"""Atomic writes, checkpoints, RunDir files, metrics surviving a killed process, config files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

import sixlab_shared.atomic as atomic_mod
from sixlab_shared import (
    RunDir,
    UserError,
    atomic_write_json,
    exit_on_user_error,
    load_checkpoint,
    read_toml_config,
    save_checkpoint,
)


def test_interrupted_json_write_leaves_previous_file_intact(tmp_path, monkeypatch):
    target = tmp_path / "summary.json"
    atomic_write_json(target, {"version": 1})

    def crash(src, dst):  # the process dies between write+fsync and rename
        raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(atomic_mod.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_json(target, {"version": 2})
    assert json.loads(target.read_text()) == {"version": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]  # no temporary file left behind


def test_interrupted_checkpoint_write_leaves_previous_checkpoint_loadable(tmp_path, monkeypatch):
    target = tmp_path / "last.safetensors"
    save_checkpoint(target, {"w": torch.ones(3), "step": 1})

    def crash(src, dst):
        raise OSError("disk vanished")

    monkeypatch.setattr(atomic_mod.os, "replace", crash)
    with pytest.raises(OSError):
        save_checkpoint(target, {"w": torch.zeros(3), "step": 2})
    state = load_checkpoint(target)
    assert state["step"] == 1 and torch.equal(state["w"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.safetensors"]


def test_checkpoint_round_trips_model_and_optimizer_state(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(5, 3)).sum().backward()
    opt.step()
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": 7, "config": {"k": [1, 2]}}
    save_checkpoint(tmp_path / "ck.safetensors", state)
    loaded = load_checkpoint(tmp_path / "ck.safetensors")

    model2 = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    model2.load_state_dict(loaded["model"], strict=True)
    opt2 = torch.optim.AdamW(model2.parameters(), lr=1e-3)
    opt2.load_state_dict(loaded["optimizer"])
    assert loaded["step"] == 7 and loaded["config"] == {"k": [1, 2]}
    for a, b in zip(model.parameters(), model2.parameters(), strict=True):
        assert torch.equal(a, b)
    # Optimizer state is keyed by integer parameter index and keeps that type.
    assert set(loaded["optimizer"]["state"]) == set(opt.state_dict()["state"])
    for idx, s in opt.state_dict()["state"].items():
        assert torch.equal(loaded["optimizer"]["state"][idx]["exp_avg"], s["exp_avg"])
    # One more step from both gives the same parameters (resume continues exactly).
    for m, o in ((model, opt), (model2, opt2)):
        o.zero_grad()
        m(torch.ones(2, 3)).sum().backward()
        o.step()
    for a, b in zip(model.parameters(), model2.parameters(), strict=True):
        assert torch.equal(a, b)


def test_checkpoint_is_plain_safetensors_readable_by_the_library(tmp_path):
    from safetensors.torch import load_file

    save_checkpoint(tmp_path / "m.safetensors", {"model": {"layer.weight": torch.eye(2)}})
    assert torch.equal(load_file(tmp_path / "m.safetensors")["model.layer.weight"], torch.eye(2))


def test_load_checkpoint_errors_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="could not be read"):
        load_checkpoint(tmp_path / "junk.safetensors")


def test_rundir_writes_config_metrics_summary(tmp_path):
    run = RunDir(tmp_path / "run")
    run.write_config({"lr": 0.1}, seed=3, device="cpu")
    run.log_metrics(step=1, **{"loss/total": 0.5})
    run.log_metrics(step=2, **{"loss/total": 0.25})
    run.write_summary({"final": 0.25})
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    assert record["config"] == {"lr": 0.1} and record["seed"] == 3 and record["device"] == "cpu"
    assert record["environment"]["versions"]["torch"] is not None
    assert [m["loss/total"] for m in run.read_metrics()] == [0.5, 0.25]
    assert json.loads((tmp_path / "run" / "summary.json").read_text()) == {"final": 0.25}


def test_rundir_refuses_to_clobber_a_finished_run_and_resume_needs_a_run(tmp_path):
    RunDir(tmp_path / "run").write_config({})
    with pytest.raises(UserError, match="already holds a run"):
        RunDir(tmp_path / "run")
    assert RunDir(tmp_path / "run", resume=True).resume
    with pytest.raises(UserError, match="holds no run"):
        RunDir(tmp_path / "other", resume=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="not a folder"):
        RunDir(tmp_path / "file")


def test_metrics_lines_survive_a_killed_process(tmp_path):
    script = textwrap.dedent(
        f"""
        import time
        from sixlab_shared import RunDir
        run = RunDir({str(tmp_path / "run")!r})
        run.write_config({{}})
        for step in range(5):
            run.log_metrics(step=step, value=step * 1.5)
        print("ready", flush=True)
        time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        os.kill(proc.pid, signal.SIGKILL)  # no atexit, no buffer flush at exit
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["value"] for line in lines] == [0.0, 1.5, 3.0, 4.5, 6.0]


def test_read_metrics_ignores_a_torn_last_line(tmp_path):
    run = RunDir(tmp_path / "run")
    run.log_metrics(step=0, a=1)
    with open(tmp_path / "run" / "metrics.jsonl", "a") as f:
        f.write('{"step": 1, "a"')
    assert run.read_metrics() == [{"step": 0, "a": 1}]


def test_exit_on_user_error_prints_one_line_and_exits_2(capsys):
    @exit_on_user_error
    def command(x: int) -> int:
        if x < 0:
            raise UserError("x must be >= 0,\n got -1")
        return x

    assert command(3) == 3
    with pytest.raises(SystemExit) as info:
        command(-1)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err == "error: x must be >= 0, got -1\n"


def test_exit_on_user_error_keeps_real_bugs_as_tracebacks():
    @exit_on_user_error
    def command():
        raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        command()


def test_toml_config_reads_and_rejects_unknown_keys(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("batch-size = 8\nlr = 0.5\n[other]\nx = 1\n")
    assert read_toml_config(path, allowed={"batch_size", "lr"}) == {"batch_size": 8, "lr": 0.5}
    with pytest.raises(UserError, match="unknown option.*lr"):
        read_toml_config(path, allowed={"batch_size"})
    path.write_text("= broken")
    with pytest.raises(UserError, match="not valid TOML"):
        read_toml_config(path)
    with pytest.raises(UserError, match="does not exist"):
        read_toml_config(tmp_path / "nope.toml")


def test_config_option_callback_sets_defaults_and_cli_wins(tmp_path):
    typer = pytest.importorskip("typer")
    from typer.testing import CliRunner

    from sixlab_shared import config_option_callback

    app = typer.Typer()

    @app.command()
    def run(
        config: str = typer.Option(None, "--config", is_eager=True, callback=config_option_callback),
        steps: int = typer.Option(1, "--steps"),
        name: str = typer.Option("a", "--name"),
    ) -> None:
        print(f"{steps} {name}")

    cfg = tmp_path / "c.toml"
    cfg.write_text('steps = 5\nname = "file"\n')
    runner = CliRunner()
    assert runner.invoke(app, ["--config", str(cfg)]).stdout.strip() == "5 file"
    assert runner.invoke(app, ["--config", str(cfg), "--steps", "9"]).stdout.strip() == "9 file"
    cfg.write_text("stepz = 5\n")
    result = runner.invoke(app, ["--config", str(cfg)])
    assert result.exit_code == 2, result.output
    assert "unknown option(s) stepz" in result.output


def test_a_second_process_cannot_write_a_run_folder_in_use(tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import sys, time
            from sixlab_shared import RunDir
            run = RunDir({str(out)!r})
            run.write_config({{"lr": 0.1}}, seed=0)
            print("holding", flush=True)
            sys.stdin.readline()
        """),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        before = {p.name: p.read_bytes() for p in out.iterdir()}
        for kwargs in ({"resume": True}, {"overwrite": True}):
            with pytest.raises(UserError, match="is being written by another process"):
                RunDir(out, **kwargs)
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing of the run was touched
        # the same process may open its own run folder again (reading a config, writing a summary)
        own = tmp_path / "own"
        first = RunDir(own)
        first.write_config({"lr": 0.1}, seed=0)
        RunDir(own, resume=True).write_summary({"ok": True})
    finally:
        holder.communicate("\n", timeout=60)
    # once the writer has exited, the folder is free again
    RunDir(out, resume=True).log_metrics(step=1, loss=0.5)
    assert holder.returncode == 0


def test_the_folder_lock_goes_with_the_last_run_object(tmp_path):
    import gc

    import sixlab_shared.rundir as rundir_mod

    run = RunDir(tmp_path / "run")
    key = str((tmp_path / "run").resolve())
    again = RunDir(tmp_path / "run", overwrite=True)
    assert rundir_mod._FOLDER_LOCKS[key][1] == 2
    del run
    gc.collect()
    assert rundir_mod._FOLDER_LOCKS[key][1] == 1
    del again
    gc.collect()
    assert key not in rundir_mod._FOLDER_LOCKS
