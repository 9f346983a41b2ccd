"""Distinct (state, action) pairs (bnpo.distinct): the table against brute force, and OptionModel.loss computed on
the table against the same loss computed at every step."""

from __future__ import annotations

import pytest
import torch

from bnpo.distinct import distinct_steps
from bnpo.model import OptionModel, OptionModelConfig


def _discrete_data(n: int = 40, t: int = 6, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    cells = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [2.5, -1.0, 0.5]])
    states = cells[torch.randint(0, 4, (n, t), generator=gen)]
    actions = torch.randint(0, 3, (n, t), generator=gen)
    return states, actions


def test_distinct_steps_against_brute_force():
    states, actions = _discrete_data()
    table = distinct_steps(states, actions)
    assert table is not None
    expected = {(*s.tolist(), int(a)) for s, a in zip(states.reshape(-1, 3), actions.reshape(-1), strict=True)}
    found = {(*s.tolist(), int(a)) for s, a in zip(table.states, table.actions, strict=True)}
    assert found == expected and len(table.states) == len(expected)
    assert table.actions.dtype == torch.int64 and table.states.dtype == torch.float32
    assert torch.equal(table.states[table.index], states) and torch.equal(table.actions[table.index], actions)
    rows = torch.tensor([5, 0, 7])
    assert torch.equal(table.take(rows).index, table.index[rows])
    values = torch.arange(len(table.states) * 2.0).view(-1, 2)
    assert torch.equal(table.take(rows).gather(values), values[table.index[rows]])


def test_distinct_steps_continuous_actions_and_fallback():
    states, actions = _discrete_data()
    continuous = torch.stack([actions.float(), -actions.float()], dim=-1)  # (N, T, 2)
    table = distinct_steps(states, continuous)
    assert table is not None and table.actions.shape[1:] == (2,)
    assert torch.equal(table.actions[table.index], continuous)
    noise = torch.randn(40, 6, 3, generator=torch.Generator().manual_seed(1))  # every step distinct
    assert distinct_steps(noise, actions) is None
    assert distinct_steps(states[:0], actions[:0]) is None


@pytest.mark.parametrize(
    ("objective", "relaxation", "continuous", "hand_lstm"),
    [
        ("relaxed", "concrete", False, False),
        ("relaxed", "concrete", False, True),
        ("relaxed", "straight_through", False, True),
        ("exact", "concrete", False, False),
        ("relaxed", "concrete", True, False),
    ],
)
def test_loss_on_distinct_pairs_equals_loss_at_every_step(
    objective: str, relaxation: str, continuous: bool, hand_lstm: bool, monkeypatch
):
    """Same randomness, float64: the loss terms and every parameter's gradient agree to rounding (the encoder's
    LSTM as oneDNN's on gathered embeddings, or as the hand-written node on gathered input gates)."""
    import bnpo.encoder

    monkeypatch.setattr(bnpo.encoder, "HAND_LSTM_MIN_BATCH", 1 if hand_lstm else 10**9)
    states, actions = _discrete_data(n=12, t=5, seed=3)
    states = states.double()
    if continuous:
        actions = torch.stack([actions.double(), actions.double() ** 2], dim=-1)
    config = OptionModelConfig(
        obs_dim=3,
        n_actions=2 if continuous else 3,
        n_options=3,
        seed=4,
        objective=objective,
        relaxation=relaxation,
        continuous=continuous,
    )
    model = OptionModel(config).double()
    table = distinct_steps(states, actions)
    assert table is not None

    def run(distinct):
        out = model.loss(
            states,
            actions,
            tau=0.6,
            entropy_weight=1.5,
            n_train=50,
            generator=torch.Generator().manual_seed(9),
            distinct=distinct,
        )
        grads = torch.autograd.grad(out["loss"], params, allow_unused=True)
        return out, grads

    # straight-through: h = one_hot + soft - soft.detach() equals one_hot only to rounding, and the log-joint's
    # |h_t - h_{t-1}| takes its gradient's sign from that rounding noise, so the encoder's gradients depend on the
    # last bit of the soft samples (which both LSTM paths compute in different orders); the rest is compared, more
    # loosely (the same noise reaches the sticks through <eta, h_t>).
    rtol = 1e-6 if relaxation == "straight_through" else 1e-10
    params = [
        p for name, p in model.named_parameters() if relaxation != "straight_through" or not name.startswith("encoder.")
    ]
    every, every_grads = run(None)
    pairs, pair_grads = run(table)
    for key in ("loss", "elbo", "kl", "neg_entropy", "usage"):
        assert torch.allclose(pairs[key], every[key], rtol=1e-12, atol=1e-12), key
    for a, b in zip(pair_grads, every_grads, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            assert torch.allclose(a, b, rtol=rtol, atol=1e-12)


def test_fit_on_distinct_pairs_follows_the_per_step_fit(monkeypatch):
    """fit() uses the table on repeated discrete data; the per-step fit (table disabled) follows the same loss curve
    to float rounding over a few epochs."""
    import importlib

    import gymnasium as gym

    import bnpo
    from bnpo.fit import FitConfig, fit

    fit_module = importlib.import_module("bnpo.fit")  # the module (the package attribute is the function)

    env = gym.make("bnpo/Room-v0", n_rooms=3)
    data = bnpo.collect(env, bnpo.make_expert(env, seed=0), 60, seed=0)
    config = FitConfig(epochs=4, batch_size=16, seed=0)
    used = []
    real = fit_module.distinct_steps

    def spy(*args, **kwargs):
        table = real(*args, **kwargs)
        used.append(table is not None)
        return table

    monkeypatch.setattr(fit_module, "distinct_steps", spy)
    with_table = fit(data, config).history
    monkeypatch.setattr(fit_module, "distinct_steps", lambda *args, **kwargs: None)
    per_step = fit(data, config).history
    assert used == [True]
    for a, b in zip(with_table, per_step, strict=True):
        assert a["options/K"] == b["options/K"]
        assert abs(a["loss/total"] - b["loss/total"]) <= 1e-4 * max(1.0, abs(b["loss/total"]))
