"""Threshold studies over seeds (reference §6 items 7-11). Slow: run with `pytest -m slow -s` (figures printed)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import bnpo
from bnpo import metrics
from bnpo.fit import ROOM_PRESET, FitConfig, evaluate, fit

pytestmark = pytest.mark.slow

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _data(env_id: str, episodes: int, seed: int, **kwargs) -> bnpo.Dataset:
    env = gym.make(env_id, **kwargs)
    return bnpo.collect(env, bnpo.make_expert(env, seed=seed), episodes, seed=seed, env_id=env_id)


def _print_restarts(result, windows, n_rooms: int | None = None) -> None:
    """Diagnostics only: every restart's selection score next to its ground-truth figures (never used to select)."""
    for entry, model in zip(result.selection, result.candidates, strict=True):
        scores = evaluate(model, windows, n_rooms=n_rooms)
        truth = {k: round(scores[k], 4) for k in ("accuracy", "boundary_f1", "room_score") if k in scores}
        print(
            f"  restart {entry['restart']}: loglik/step {entry['loglik_per_step']:.5f}, K {entry['K']}, {truth}"
            + (" <- kept" if entry["selected"] else "")
        )


def _room(n_rooms: int, seed: int, **config) -> tuple[float, int, list[int]]:
    data = _data("bnpo/Room-v0", 1000, seed, n_rooms=n_rooms)
    result = fit(data, FitConfig(seed=seed, **config))
    model = result.model
    if result.selection:
        _print_restarts(result, data.windows(), n_rooms)
    score = metrics.room_score(model, n_rooms)
    covered = metrics.room_coverage(model, n_rooms)
    print(f"Room({n_rooms}) seed {seed} {config}: score {score:.4f}, K {model.n_options}, rooms covered {covered}")
    return score, model.n_options, covered


@pytest.mark.xfail(reason="measured without restarts: 0.372 (K 6, rooms 1, 3) / 0.9993 / 0.9993 on seeds 0-2")
def test_room3_200_epochs_all_seeds() -> None:
    runs = [_room(3, seed, epochs=200, entropy_decay=0.995) for seed in range(3)]  # the paper default, §2.4
    assert all(score >= 0.99 and covered == [1, 2, 3] for score, _, covered in runs), runs


ROOM3_RESTARTS = 4


def test_room3_200_epochs_all_seeds_with_restarts() -> None:
    """Unsupervised selection over restarts by the exact held-out log-likelihood (``FitConfig.restarts``)."""
    runs = [_room(3, seed, epochs=200, entropy_decay=0.995, restarts=ROOM3_RESTARTS) for seed in range(3)]
    assert all(score >= 0.99 and covered == [1, 2, 3] for score, _, covered in runs), runs


def test_room3_200_epochs_all_seeds_room_preset() -> None:
    """The Room recipe (``ROOM_PRESET``) instead of restarts: measured 0.9997 / 0.9998 / 0.9992 (K 5 / 4 / 5), every
    room covered, on seeds 0-2 (and >= 0.9987 on seeds 3-5), 2-4 CPU s per fit."""
    runs = [_room(3, seed, epochs=200, entropy_decay=0.995, **ROOM_PRESET) for seed in range(3)]
    assert all(score >= 0.99 and covered == [1, 2, 3] for score, _, covered in runs), runs


def test_room6_nonparametric_recovers_k() -> None:
    runs = [_room(6, seed, epochs=500, entropy_decay=0.999) for seed in range(3)]
    good = [score >= 0.99 and 6 <= k <= 8 for score, k, _ in runs]
    assert sum(good) >= 2, runs


def test_room6_room_preset_ten_seeds() -> None:
    """Issue 16: the documented Room recipe (``ROOM_PRESET``: exact objective + split trials) reaches score >= 0.99
    with 6 <= K <= 8 on at least 8 of 10 seeds (measured: 10 of 10, and 20 of 20 on seeds 0-19)."""
    runs = [_room(6, seed, epochs=500, entropy_decay=0.999, **ROOM_PRESET) for seed in range(10)]
    good = [score >= 0.99 and 6 <= k <= 8 for score, k, _ in runs]
    assert sum(good) >= 8, runs


def test_room6_fixed_k3_scores_half() -> None:
    score, k, _ = _room(6, 0, epochs=500, nonparametric=False, k=3)
    assert k == 3 and abs(score - 0.5) <= 0.05


@pytest.mark.parametrize(
    "objective",
    [
        pytest.param(
            "relaxed", marks=pytest.mark.xfail(reason="measured: accuracy 0.968, F1 0.89 but K = 4 (duplicate options)")
        ),
        "exact",
    ],
)
def test_line_two_directions(objective: str) -> None:
    data = _data("bnpo/Line-v0", 300, 0)
    model = fit(data, FitConfig(epochs=80, batch_size=32, objective=objective, seed=0)).model
    windows = data.windows()
    scores = evaluate(model, windows)
    print(f"Line ({objective}): {scores}")
    assert model.n_options <= 3 and scores["accuracy"] >= 0.95
    options, _ = model.segment(windows["states"], windows["actions"])
    switches = metrics.boundaries_from_options(options)
    pos = windows["states"].argmax(-1).numpy()
    at = pos[switches]
    assert np.isin(at, [0, 1, 8, 9]).mean() >= 0.95  # switches at the ends, +-1 step


# Landmarks (default env: memoryless targets, no two landmarks on a row or column; see bnpo.envs.landmarks).
# The paper's relaxed objective (epochs 150, batch 64) measured accuracy 0.476 / 0.430 and boundary F1 0.571 / 0.424
# on the earlier corner layout (README); the exact objective (options marginalised by the forward algorithm) is
# tested here, with the entropy bonus decaying by 0.99 per epoch (0.999 keeps it above 3 for 500 epochs, which
# favours splitting skills across extra options).
LANDMARKS_CONFIG = {"epochs": 500, "batch_size": 64, "objective": "exact", "entropy_decay": 0.99}


def _seeds_0_1(xfail_seed: int, reason: str) -> list:
    """Seeds 0 and 1, the one that misses a figure marked xfail with what it measured."""
    return [pytest.param(s, marks=pytest.mark.xfail(reason=reason)) if s == xfail_seed else s for s in (0, 1)]


@pytest.mark.parametrize(
    "seed",
    _seeds_0_1(
        1, "measured: accuracy 0.820, F1 0.886, K 4 (one option idles at 0.12 while another serves two landmarks)"
    ),
)
def test_landmarks_nonparametric_grown_from_one(seed: int) -> None:
    """The paper's growth from K = 1: reaches the figures on some seeds only (README)."""
    _landmarks(seed, restarts=1, nonparametric=True)


@pytest.mark.parametrize(
    "seed",
    _seeds_0_1(
        1,
        "measured: accuracy 0.899 (0.820 without the trial), F1 0.945, 4 used + 1 idle; "
        "one option still serves a landmark and a third of another",
    ),
)
def test_landmarks_grown_from_one_with_a_split_trial(seed: int) -> None:
    """Growth from K = 1 plus one split trial at epoch 250 (FitConfig.split_epochs, README)."""
    _landmarks(seed, restarts=1, nonparametric=True, split_epochs=[250])


LANDMARKS_RESTARTS = 4


@pytest.mark.parametrize(
    "seed",
    _seeds_0_1(
        0,
        "measured with the distinct-pair fit: accuracy 0.915, F1 0.934, but the fifth option serves 3.9% of the "
        "steps (5 used); 6 of 10 seeds meet every figure (README)",
    ),
)
def test_landmarks_truncated_at_five_with_restarts(seed: int) -> None:
    """Five options trained together from the start (truncation K_true + 1, no growth), best of 4 restarts by the
    training log-likelihood; ground truth is never used for selection."""
    _landmarks(seed, restarts=LANDMARKS_RESTARTS, nonparametric=False, k=5, restart_select="train")


def test_landmarks_fixed_k4_with_restarts_ten_seeds() -> None:
    """K = K_true = 4 options, best of 4 restarts by the training log-likelihood (``benchmarks/landmarks_rate.py
    --recipe fixed4``): every Landmarks figure (accuracy, F1, 4 used, the termination check) on at least 8 of 10 seeds
    (measured: 9 of 10, seed 7 missed with accuracy 0.597). About 30 CPU minutes."""
    spec = importlib.util.spec_from_file_location("landmarks_rate", BENCHMARKS / "landmarks_rate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = [module.landmarks_run(seed, "fixed4") for seed in range(10)]
    for row in rows:
        print({k: row[k] for k in ("seed", "accuracy", "boundary_f1", "used_options", "terminations_met", "met")})
    assert sum(row["met"] for row in rows) >= 8, rows


def _landmarks(seed: int, restarts: int, **config) -> None:
    data = _data("bnpo/Landmarks-v0", 1000, seed)
    windows = data.windows()
    result = fit(data, FitConfig(seed=seed, restarts=restarts, **LANDMARKS_CONFIG, **config))
    model = result.model
    if result.selection:
        _print_restarts(result, windows)
    scores = evaluate(model, windows)
    print(f"Landmarks seed {seed}, restarts {restarts}, {config}: {scores}")
    assert scores["accuracy"] >= 0.9 and scores["boundary_f1"] >= 0.8
    assert scores["used_options"] == 4 and model.n_options <= 5
    # beta_k > 0.5 at its landmark, and < 0.2 on at least 90% of the other cells: checked on the cells the option
    # actually visits, weighted by visits (metrics.landmark_terminations); the fraction over all 49 cells is printed.
    checks = metrics.landmark_terminations(model, windows)
    assert len(checks) == 4
    for row in checks:
        print(
            f"  option {row['option']} -> landmark {row['landmark']}: beta there {row['beta_mean_at_landmark']:.3f}, "
            f"< 0.2 on {row['low_elsewhere']:.3f} of other visits, on {row['low_all_cells']:.3f} of all other cells"
        )
        assert row["beta_min_at_landmark"] > 0.5 and row["low_elsewhere"] >= 0.9, row
