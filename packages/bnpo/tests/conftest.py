"""Shared fixtures of the bnpo tests (importlib mode: test modules cannot import each other)."""

from __future__ import annotations

import os

import gymnasium as gym
import pytest
import torch

import bnpo


@pytest.fixture(autouse=True, scope="session")
def _offline() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def line_data() -> bnpo.Dataset:
    """120 expert episodes of Line (20 steps each)."""
    env = gym.make("bnpo/Line-v0")
    return bnpo.collect(env, bnpo.make_expert(env, seed=0), 120, seed=0, env_id="bnpo/Line-v0")


@pytest.fixture(scope="session")
def room_data() -> bnpo.Dataset:
    """200 expert episodes of Room(3)."""
    env = gym.make("bnpo/Room-v0", n_rooms=3)
    return bnpo.collect(env, bnpo.make_expert(env, seed=0), 200, seed=0, env_id="bnpo/Room-v0")


@pytest.fixture
def tiny_model() -> bnpo.OptionModel:
    """An untrained two-option model on 3-dimensional states with 2 actions."""
    return bnpo.OptionModel(bnpo.OptionModelConfig(obs_dim=3, n_actions=2, n_options=2, seed=1))


@pytest.fixture
def cli_error():
    """``cli_error(*args)``: run the bnpo CLI, require exit status 2 and a single ``error:`` line on stderr, and
    return that line (the package's user-error contract)."""
    from typer.testing import CliRunner

    from bnpo.cli import app

    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(app, [str(a) for a in args])
        assert result.exit_code == 2, result.output
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
        return lines[0]

    return run
