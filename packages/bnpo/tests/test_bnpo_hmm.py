"""Forward algorithm and Viterbi against brute-force enumeration; the relaxed log-joint and the ELBO bound (§6.4-5)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from bnpo.hmm import brute_force_log_likelihood, forward_log_likelihood, viterbi
from bnpo.model import OptionModel, OptionModelConfig, relaxed_log_joint
from sixlab_shared import make_generator


def _random_hmm(batch: int, steps: int, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = make_generator(seed)
    log_pi = torch.log_softmax(torch.randn(batch, steps, k, 3, generator=gen, dtype=torch.float64), -1)[..., 0]
    beta = torch.rand(batch, steps, k, generator=gen, dtype=torch.float64) * 0.9 + 0.05
    eta = torch.softmax(torch.randn(k, generator=gen, dtype=torch.float64), -1)
    return log_pi, beta, eta


def _numpy_matrix_forward(log_pi: np.ndarray, beta: np.ndarray, eta: np.ndarray) -> float:
    """Plain probability-space forward pass with the full K x K transition matrix (independent formulation)."""
    steps, k = log_pi.shape
    alpha = eta * np.exp(log_pi[0])
    for t in range(1, steps):
        transition = beta[t][:, None] * eta[None, :] + (1 - beta[t])[:, None] * np.eye(k)
        alpha = (alpha @ transition) * np.exp(log_pi[t])
    return math.log(alpha.sum())


def test_forward_matches_brute_force_and_matrix_form() -> None:
    log_pi, beta, eta = _random_hmm(3, 4, 2, seed=0)
    ours = forward_log_likelihood(log_pi, beta.log(), eta.log())
    brute = brute_force_log_likelihood(log_pi, beta.log(), eta.log())
    torch.testing.assert_close(ours, brute, rtol=1e-12, atol=1e-12)
    for i in range(3):
        assert float(ours[i]) == pytest.approx(_numpy_matrix_forward(log_pi[i].numpy(), beta[i].numpy(), eta.numpy()))


def test_forward_handles_three_options_and_batch_eta() -> None:
    log_pi, beta, eta = _random_hmm(2, 5, 3, seed=1)
    ours = forward_log_likelihood(log_pi, beta.log(), eta.log().expand(2, -1))
    for i in range(2):
        assert float(ours[i]) == pytest.approx(_numpy_matrix_forward(log_pi[i].numpy(), beta[i].numpy(), eta.numpy()))
    with pytest.raises(ValueError, match="log_pi and log_beta"):
        forward_log_likelihood(log_pi, beta.log()[:, :2], eta.log())


def _exact_log_joint(log_pi, beta, eta, flags, options) -> float:
    """log p(a, b, h | s) of the generative story, -inf for impossible paths (hand-written from §1.1)."""
    if flags[0] != 1:
        return -math.inf
    total = math.log(eta[options[0]]) + log_pi[0, options[0]]
    for t in range(1, len(options)):
        prev, cur = options[t - 1], options[t]
        if flags[t]:
            total += math.log(beta[t, prev]) + math.log(eta[cur])
        elif cur == prev:
            total += math.log(1 - beta[t, prev])
        else:
            return -math.inf
        total += log_pi[t, cur]
    return total


def test_viterbi_matches_brute_force_argmax() -> None:
    log_pi, beta, eta = _random_hmm(4, 4, 2, seed=2)
    options, boundaries = viterbi(log_pi, beta.log(), eta.log())
    for i in range(4):
        best, best_path = -math.inf, None
        for path in itertools.product(range(2), repeat=4):
            for flags in itertools.product((0, 1), repeat=3):
                value = _exact_log_joint(log_pi[i].numpy(), beta[i].numpy(), eta.numpy(), (1, *flags), path)
                if value > best:
                    best, best_path = value, (path, (1, *flags))
        assert tuple(options[i].tolist()) == best_path[0]
        assert tuple(int(x) for x in boundaries[i].tolist()) == best_path[1]


def test_relaxed_log_joint_equals_exact_for_hard_latents() -> None:
    log_pi, beta, eta = _random_hmm(1, 4, 2, seed=3)
    for path in itertools.product(range(2), repeat=4):
        for flags in itertools.product((0, 1), repeat=3):
            b = torch.tensor([[1, *flags]], dtype=torch.float64)
            h = torch.nn.functional.one_hot(torch.tensor([path]), 2).double()
            relaxed = float(relaxed_log_joint(log_pi, beta, eta[None], b, h, eps=0.0)[0])
            exact = _exact_log_joint(log_pi[0].numpy(), beta[0].numpy(), eta.numpy(), (1, *flags), path)
            if math.isinf(exact):
                assert relaxed == -math.inf
            else:
                assert relaxed == pytest.approx(exact, rel=1e-12)


def test_hard_sample_elbo_is_below_exact_log_likelihood(line_data) -> None:
    windows = line_data.windows(8)
    model = OptionModel(OptionModelConfig(obs_dim=line_data.obs_dim, n_actions=2, n_options=2, seed=0))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = make_generator(0)
    for _ in range(30):  # a little training, so q is not arbitrary
        out = model.loss(windows["states"], windows["actions"], tau=0.5, entropy_weight=0.0, n_train=100, generator=gen)
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
    states, actions = windows["states"][:40], windows["actions"][:40]
    loglik = model.log_likelihood(states, actions)
    for eps in (0.0, 1e-4):
        elbo = model.hard_elbo(states, actions, n_samples=100, eps=eps, generator=make_generator(1)).double()
        assert float(elbo.mean()) <= float(loglik.mean())
    # with eps the ELBO is finite and informative: within a few nats of the log-likelihood after training
    elbo = model.hard_elbo(states, actions, n_samples=50, eps=1e-4, generator=make_generator(2)).double()
    assert math.isfinite(float(elbo.mean()))


def test_exact_objective_is_brute_force_likelihood_minus_kl() -> None:
    model = OptionModel(OptionModelConfig(obs_dim=3, n_actions=2, n_options=2, objective="exact", seed=0))
    states = torch.randn(3, 4, 3, generator=make_generator(0))
    actions = torch.randint(0, 2, (3, 4), generator=make_generator(1))
    out = model.loss(states, actions, tau=1.0, entropy_weight=0.0, n_train=50, generator=make_generator(7))
    eta, kl = model.prior.sample(3, generator=make_generator(7))  # same draws as inside the loss
    with torch.no_grad():
        log_pi = model.log_pi(states, actions).double()
        beta = model.beta(states).double()
        brute = brute_force_log_likelihood(log_pi, beta.log(), eta[0].double().log())
    expected = -(brute.mean() - kl.detach().double() / 50)
    assert float(out["loss"].detach()) == pytest.approx(float(expected), rel=1e-5)
    assert float(out["usage"].sum()) == pytest.approx(1.0, abs=1e-5)
