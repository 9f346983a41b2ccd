"""BabyAI levels from the minigrid package with the BabyAI bot as the expert: observations, success, option labels."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("minigrid")

from minigrid.core.actions import Actions  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

import bnpo  # noqa: E402
from bnpo.cli import app  # noqa: E402
from bnpo.envs.babyai import SUBGOALS  # noqa: E402


def _episodes(level: str, n: int, seed: int = 0):
    env = gym.make(f"bnpo/BabyAI-{level}-v0")
    expert = bnpo.make_expert(env, seed=seed)
    out = []
    for episode in range(n):
        obs, info = env.reset(seed=seed + episode)
        raw = env.unwrapped.gen_obs()  # minigrid's own observation of the same state
        assert np.array_equal(obs[:147], raw["image"].reshape(-1)) and obs[147:].argmax() == raw["direction"]
        steps, total, done = [], 0.0, False
        while not done:
            action = expert(obs, info)
            steps.append((action, SUBGOALS[info["option"]]))
            obs, reward, terminated, truncated, info = env.step(action)
            total += reward
            done = terminated or truncated
        out.append((steps, total, terminated))
    return out


@pytest.mark.parametrize(("level", "n"), [("UnlockLocal", 15), ("UnlockLocalDist", 5)])
def test_the_bot_solves_unlock_local_and_its_labels_follow_the_plan(level: str, n: int) -> None:
    """UnlockLocal, and UnlockLocalDist (the same room with distractor objects, the downstream transfer level)."""
    for steps, total, terminated in _episodes(level, n):
        assert terminated and total > 0  # the bot opens the door
        labels = [label for _, label in steps]
        # pick up the key, then open the door, as the level demands; those steps use minigrid's actions
        assert labels[-1] == "Open" and steps[-1][0] == Actions.toggle
        pickups = [action for action, label in steps if label == "Pickup"]
        assert pickups and all(action == Actions.pickup for action in pickups)
        assert labels.index("Pickup") < labels.index("Open")
        assert "GoNextTo:key" in labels[: labels.index("Pickup")]


def test_go_to_obj_hides_the_mission_and_labels_the_target_kind() -> None:
    env = gym.make("bnpo/BabyAI-GoToObj-v0")
    assert env.observation_space.shape == (151,)
    for steps, total, terminated in _episodes("GoToObj", 15):
        assert terminated and total > 0
        labels = [label for _, label in steps]
        targets = {label for label in labels if label != "Explore"}  # the bot explores while the object is unseen
        assert len(targets) == 1 and targets <= {"GoNextTo:key", "GoNextTo:ball", "GoNextTo:box"}
        assert labels[-1] in targets


def test_collect_babyai_through_the_cli(tmp_path) -> None:
    out = tmp_path / "unlock.npz"
    result = CliRunner().invoke(app, ["collect", "bnpo/BabyAI-UnlockLocal-v0", "--out", str(out), "--episodes", "5"])
    assert result.exit_code == 0, result.output
    data = bnpo.load_dataset(out)
    assert data.obs_dim == 151 and data.n_actions == 7 and data.options is not None
    assert data.padded()["states"].shape[0] == 5


def test_expert_false_skips_the_bot_and_keeps_the_dynamics() -> None:
    """``expert=False`` (downstream RL): the same observations, successes and ends for the same actions, no bot info
    (the reward's size differs: BabyAI pays 1 - 0.9 steps / max_steps)."""
    with_bot = gym.make("bnpo/BabyAI-GoToObj-v0")
    without = gym.make("bnpo/BabyAI-GoToObj-v0", expert=False, max_steps=20)
    assert without.unwrapped.max_steps == 20
    expert = bnpo.make_expert(with_bot, seed=0)
    obs_a, info_a = with_bot.reset(seed=3)
    obs_b, info_b = without.reset(seed=3)
    assert "expert_action" not in info_b and "option" not in info_b
    done = False
    while not done:
        assert np.array_equal(obs_a, obs_b)
        action = expert(obs_a, info_a)
        obs_a, reward_a, term_a, trunc_a, info_a = with_bot.step(action)
        obs_b, reward_b, term_b, trunc_b, info_b = without.step(action)
        assert "expert_action" not in info_b
        assert (reward_a > 0) == (reward_b > 0) and term_a == term_b
        done = term_a or trunc_a or trunc_b
    assert term_b and reward_b > 0  # the bot's actions solve the level within 20 steps
