"""Growth rule and growth mechanics (reference §6 item 6), schedules, and the optimiser's param groups."""

from __future__ import annotations

import math

import pytest
import torch

from bnpo import schedules
from bnpo.fit import FitConfig, make_optimizer
from bnpo.model import OptionModel, OptionModelConfig


def test_growth_rule_examples() -> None:
    assert schedules.should_grow([1.0])
    assert not schedules.should_grow([0.6, 0.35, 0.05])
    assert schedules.should_grow([0.5, 0.25, 0.25])  # every usage >= 0.5 / 3
    assert not schedules.should_grow([0.9, 0.1], tol=0.5)  # 0.1 < 0.25
    assert [e for e in range(35) if schedules.is_growth_check_epoch(e)] == [0, 10, 20, 30]


def test_schedules_closed_form() -> None:
    assert schedules.temperature(0) == 1.0
    assert schedules.temperature(100) == pytest.approx(0.999**100)
    assert schedules.entropy_weight(200, initial=5.0, decay=0.995) == pytest.approx(
        5.0 * math.exp(200 * math.log(0.995))
    )


def test_add_option_appends_one_piece_everywhere_and_keeps_the_old_ones() -> None:
    model = OptionModel(OptionModelConfig(obs_dim=4, n_actions=3, n_options=2, seed=0))
    optimizer = make_optimizer(model, 1, FitConfig())
    states = torch.randn(5, 6, 4, generator=torch.Generator().manual_seed(0))
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    pi_before = model.log_pi_all(states).detach()
    beta_before = model.beta(states).detach()
    groups = len(optimizer.param_groups)

    new = model.add_option()
    optimizer.add_param_group({"params": new})

    assert model.n_options == 3
    assert len(model.policy.weights) == len(model.termination.weights) == 3
    assert len(model.encoder.in_columns) == len(model.encoder.out_rows) == len(model.prior.sticks) == 3
    assert len(optimizer.param_groups) == groups + 1
    for name, param in model.named_parameters():
        if name in before:
            assert torch.equal(param.detach(), before[name]), name
    torch.testing.assert_close(model.log_pi_all(states)[..., :2, :].detach(), pi_before, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model.beta(states)[..., :2].detach(), beta_before, rtol=0, atol=0)
    assert all(torch.isfinite(p).all() for p in new)
    assert float(model.encoder.out_biases[2].detach()) == 0.0
    assert {id(p) for p in model.option_parameters(2)} == {id(p) for p in new}


def test_optimizer_groups_rebuild_for_a_grown_model() -> None:
    model = OptionModel(OptionModelConfig(obs_dim=2, n_actions=2, n_options=1, seed=0))
    model.add_option()
    model.add_option()
    optimizer = make_optimizer(model, 1, FitConfig())
    assert len(optimizer.param_groups) == 3
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(model.parameters()))


def test_added_options_are_seeded_by_index() -> None:
    first = OptionModel(OptionModelConfig(obs_dim=2, n_actions=2, seed=3))
    second = OptionModel(OptionModelConfig(obs_dim=2, n_actions=2, seed=3))
    for model in (first, second):
        model.add_option()
    for (name, p), (_, q) in zip(first.named_parameters(), second.named_parameters(), strict=True):
        assert torch.equal(p, q), name
