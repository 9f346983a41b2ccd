"""TaxiHidden: gymnasium's Taxi dynamics, the destination hidden after the first step, the expert and its labels."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium.envs.toy_text.taxi import TaxiEnv
from gymnasium.utils.env_checker import check_env

import bnpo
from bnpo.envs.taxi import HIDDEN


def _distance(start, goal) -> int:
    """Moves between two cells of the Taxi map, walls ('|' between columns) read from gymnasium's MAP drawing."""
    from gymnasium.envs.toy_text.taxi import MAP

    def blocked(r, c, dc):  # wall between (r, c) and (r, c + dc)
        return MAP[r + 1][2 * c + (2 if dc > 0 else 0)] == "|"

    frontier, seen, steps = [tuple(start)], {tuple(start)}, 0
    while tuple(goal) not in seen:
        steps += 1
        nxt = []
        for r, c in frontier:
            for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                cell = (r + dr, c + dc)
                if 0 <= cell[0] < 5 and 0 <= cell[1] < 5 and cell not in seen and not (dc and blocked(r, c, dc)):
                    seen.add(cell)
                    nxt.append(cell)
        frontier = nxt
    return steps


def test_env_passes_gymnasium_checks() -> None:
    check_env(gym.make("bnpo/TaxiHidden-v0").unwrapped, skip_render_check=True)


def test_destination_shown_only_first_and_dynamics_are_gymnasiums() -> None:
    env = gym.make("bnpo/TaxiHidden-v0")
    obs, info = env.reset(seed=3)
    assert obs[3] == info["destination"] != HIDDEN
    reference = TaxiEnv()
    state = env.unwrapped.state_of(obs, info["destination"])
    reference.reset(seed=0)
    reference.s = state
    rng = np.random.default_rng(0)
    for _ in range(40):
        action = int(rng.integers(0, 6))
        obs, reward, terminated, _, info = env.step(action)
        expected, expected_reward, expected_done, _, _ = reference.step(action)
        assert obs[3] == HIDDEN
        assert env.unwrapped.state_of(obs, info["destination"]) == expected
        assert reward == expected_reward and terminated == expected_done
        assert info["is_success"] == terminated  # Taxi ends only on the delivery
        if terminated:
            break


def test_is_success_marks_the_delivery_only() -> None:
    """Downstream curves count deliveries (``info["is_success"]``), not ``return > 0`` (Taxi's return is mostly
    negative: -1 per step); a wrong drop-off at a stand leaves the passenger there and is no success."""
    env = gym.make("bnpo/TaxiHidden-v0")
    expert = bnpo.make_expert(env, seed=0)
    obs, info = env.reset(seed=5)
    flags = []
    while True:
        obs, reward, terminated, truncated, info = env.step(expert(obs, info))
        flags.append(info["is_success"])
        if terminated or truncated:
            break
    assert terminated and flags == [False] * (len(flags) - 1) + [True]
    obs, info = env.reset(seed=5)
    taxi = env.unwrapped.taxi
    wrong = next(k for k in range(4) if k != info["destination"])
    taxi.s = taxi.encode(*taxi.locs[wrong], 4, info["destination"])  # passenger in the taxi, at a wrong stand
    obs, reward, terminated, _, info = env.step(5)
    assert not terminated and not info["is_success"] and obs[2] == wrong  # dropped there


def test_expert_delivers_on_shortest_paths_with_two_segments() -> None:
    env = gym.make("bnpo/TaxiHidden-v0")
    data = bnpo.collect(env, bnpo.make_expert(env, seed=0), 200, seed=0, env_id="bnpo/TaxiHidden-v0")
    taxi = TaxiEnv()
    for begin, end in data.episode_bounds():
        obs = data.observations[begin:end]
        actions, options = data.actions[begin:end], data.options[begin:end]
        assert actions[-1] == 5  # the episode ends with the drop-off
        pickup = int(np.flatnonzero(actions == 4)[0])
        row, col, passenger, destination = (int(np.argmax(obs[0][i * 5 : (i + 1) * 5])) for i in range(4))
        assert (options[: pickup + 1] == passenger).all() and (options[pickup + 1 :] == destination).all()
        # shortest paths, by a BFS over the map's drawing (not over the env's transition table)
        drive = _distance((row, col), taxi.locs[passenger]) + _distance(taxi.locs[passenger], taxi.locs[destination])
        assert len(actions) - 2 == drive
        assert obs[1:, 15:].argmax(1).tolist() == [HIDDEN] * (len(obs) - 1)  # hidden after the first step
