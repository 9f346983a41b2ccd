"""Metrics against brute force and hand-built cases."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from bnpo import metrics
from bnpo.model import OptionModel, OptionModelConfig


def test_hungarian_accuracy_matches_brute_force_over_permutations() -> None:
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, size=200)
    pred = np.where(rng.random(200) < 0.8, (truth + 1) % 3, rng.integers(0, 4, size=200))
    best = max(np.mean(np.array(perm)[pred] == truth) for perm in itertools.permutations(range(4), 4) if True)
    accuracy, mapping = metrics.hungarian_accuracy(pred, truth)
    assert accuracy == pytest.approx(best)
    assert mapping[1] == 0 and mapping[2] == 1


def test_boundary_f1_hand_built() -> None:
    truth = np.array([[0, 0, 1, 0, 0, 0, 1, 0]], bool)
    pred = np.array([[0, 0, 0, 1, 0, 0, 0, 0]], bool)  # one hit within +-1, one miss
    assert metrics.boundary_f1(pred, truth) == pytest.approx(2 * 1 / (2 * 1 + 0 + 1))
    assert metrics.boundary_f1(pred, truth, tolerance=0) == 0.0
    assert metrics.boundary_f1(np.zeros((2, 5), bool), np.zeros((2, 5), bool)) == 1.0
    opts = np.array([[1, 1, 0, 0, 2]])
    assert metrics.boundaries_from_options(opts).tolist() == [[False, False, True, False, True]]


def test_room_score_of_a_hand_set_policy() -> None:
    model = OptionModel(OptionModelConfig(obs_dim=3, n_actions=4, n_options=2, seed=0))
    with torch.no_grad():  # option 0 always picks room 1, option 1 always room 2 (huge head biases, zero weights)
        for k, room in ((0, 1), (1, 2)):
            model.policy.weights[k].zero_()
            model.policy.biases[k].copy_(torch.full((4,), -50.0))
            model.policy.biases[k][room] = 50.0
    assert metrics.room_score(model, 3) == pytest.approx(2 / 3, abs=1e-6)
    assert metrics.room_coverage(model, 3) == [1, 2]
    assert metrics.option_usage(np.array([0, 0, 1, 2]), 4).tolist() == [0.5, 0.25, 0.25, 0.0]


class _LandmarkOracle:
    """A stand-in model whose segmentation is the expert's labels and whose beta_k(s) is ``at`` on landmark k's cell
    and ``off`` elsewhere (so the check's figures are known in closed form)."""

    def __init__(self, labels, at: float, off: float) -> None:
        self.labels, self.at, self.off = labels, at, off
        self.n_options, self.device = 4, torch.device("cpu")

    def segment(self, states, actions):
        return self.labels, None

    def beta(self, states):
        from bnpo.envs.landmarks import LANDMARKS, SIZE

        xy = torch.stack([states[..., :SIZE].argmax(-1), states[..., SIZE:].argmax(-1)], -1)
        on = torch.stack([(xy == torch.tensor(cell)).all(-1) for cell in LANDMARKS], -1)
        return torch.where(on, torch.tensor(self.at), torch.tensor(self.off))


def test_landmark_terminations_in_closed_form():
    import gymnasium as gym

    import bnpo

    env = gym.make("bnpo/Landmarks-v0")
    windows = bnpo.collect(env, bnpo.make_expert(env, seed=0), 40, seed=0).windows()
    good = metrics.landmark_terminations(_LandmarkOracle(windows["options"], 0.9, 0.1), windows)
    assert [(r["option"], r["landmark"]) for r in good] == [(k, k) for k in range(4)]
    for row in good:
        assert row["beta_min_at_landmark"] == pytest.approx(0.9) and row["beta_mean_at_landmark"] == pytest.approx(0.9)
        assert row["low_elsewhere"] == 1.0 and row["low_all_cells"] == 1.0
    flat = metrics.landmark_terminations(_LandmarkOracle(windows["options"], 0.9, 0.3), windows)
    assert all(r["low_elsewhere"] == 0.0 and r["low_all_cells"] == 0.0 for r in flat)
