"""The option model's pieces against hand-computed values: mixtures, continuous heads, act/terminates, log q."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from bnpo.model import OptionModel, OptionModelConfig, posterior_log_prob


def test_log_pi_gathers_the_softmax_of_each_head(tiny_model) -> None:
    states = torch.randn(2, 3, 3, generator=torch.Generator().manual_seed(0))
    actions = torch.tensor([[0, 1, 1], [1, 0, 0]])
    log_pi = tiny_model.log_pi(states, actions)
    features = tiny_model.policy.trunk(states)
    for k in range(2):
        logits = features @ tiny_model.policy.weights[k].T + tiny_model.policy.biases[k]
        expected = torch.log_softmax(logits, -1).gather(-1, actions[..., None])[..., 0]
        torch.testing.assert_close(log_pi[..., k], expected, rtol=1e-5, atol=1e-6)


def test_continuous_heads_match_scipy_normal() -> None:
    model = OptionModel(OptionModelConfig(obs_dim=3, n_actions=2, n_options=2, continuous=True, seed=0))
    states = torch.randn(1, 4, 3, generator=torch.Generator().manual_seed(1))
    actions = torch.randn(1, 4, 2, generator=torch.Generator().manual_seed(2)) * 0.5
    log_pi = model.log_pi(states, actions).detach().numpy()
    means = model.log_pi_all(states).detach().numpy()
    std = math.exp(1.0)  # global log-std initialised to 1
    expected = stats.norm.logpdf(actions.numpy()[..., None, :], means, std).sum(-1)
    np.testing.assert_allclose(log_pi, expected, rtol=1e-5)
    usage = model.greedy_usage(states, actions)
    assert float(usage.sum()) == pytest.approx(1.0)
    assert model.act(states[0, 0], 1).shape == (2,)


def test_act_and_terminates_are_the_heads_argmax_and_sigmoid(tiny_model) -> None:
    states = torch.randn(6, 3, generator=torch.Generator().manual_seed(4))
    probs = tiny_model.log_pi_all(states).exp()
    for option in (0, 1):
        assert torch.equal(tiny_model.act(states, option), probs[:, option].argmax(-1))
        beta = torch.sigmoid(
            tiny_model.termination.trunk(states) @ tiny_model.termination.weights[option].T
            + tiny_model.termination.biases[option]
        )[:, 0]
        torch.testing.assert_close(tiny_model.terminates(states, option), beta)
    assert tiny_model.act(states[0], 1).ndim == 0
    sampled = tiny_model.act(states, 0, greedy=False, generator=torch.Generator().manual_seed(0))
    assert sampled.shape == (6,)


def test_posterior_log_prob_is_the_discrete_pmf_at_hard_samples() -> None:
    logit_b = torch.tensor([[0.3, -1.2]])
    logit_h = torch.tensor([[[0.1, 0.5, -0.2], [1.0, 0.0, 0.0]]])
    b = torch.tensor([[1.0, 0.0]])
    h = torch.nn.functional.one_hot(torch.tensor([[2, 0]]), 3).float()
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    soft = [np.exp(r) / np.exp(r).sum() for r in logit_h[0].numpy()]
    expected = math.log(sig(0.3)) + math.log(1 - sig(-1.2)) + math.log(soft[0][2]) + math.log(soft[1][0])
    assert float(posterior_log_prob(logit_b, logit_h, b, h)[0]) == pytest.approx(expected, rel=1e-6)


def test_encoder_bias_initialised_to_zero_and_loss_finite(tiny_model) -> None:
    assert all(float(b.detach()) == 0.0 for b in tiny_model.encoder.out_biases)
    states = torch.randn(4, 5, 3, generator=torch.Generator().manual_seed(0))
    actions = torch.randint(0, 2, (4, 5), generator=torch.Generator().manual_seed(1))
    out = tiny_model.loss(states, actions, tau=1.0, entropy_weight=5.0, n_train=10, generator=torch.Generator())
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in tiny_model.parameters())
    assert float(out["usage"].sum()) == pytest.approx(1.0, abs=1e-5)
