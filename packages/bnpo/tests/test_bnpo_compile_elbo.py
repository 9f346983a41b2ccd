"""CompILE's ELBO pieces against formulas written here independently (scipy, closed forms, brute force)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import special, stats

from bnpo.compile import elbo
from bnpo.compile.hsmm import segment_log_likelihood
from bnpo.compile.masked_lstm import MaskedLSTM, input_gates, masked_lstm
from bnpo.prior import StickBreakingPrior


@pytest.mark.parametrize(("max_length", "rate"), [(6, 3.0), (30, 3.0), (4, 0.7)])
def test_poisson_length_prior_is_scipy_poisson_truncated_to_1_T(max_length, rate) -> None:
    lengths = np.arange(1, max_length + 1)
    logpmf = stats.poisson.logpmf(lengths, rate)
    expected = logpmf - special.logsumexp(logpmf)
    np.testing.assert_allclose(elbo.poisson_length_log_prior(max_length, rate).numpy(), expected, rtol=0, atol=1e-12)


def test_categorical_kls_match_scipy_entropy() -> None:
    rng = np.random.default_rng(0)
    q = rng.dirichlet(np.ones(5), size=7)
    p = rng.dirichlet(np.ones(5), size=7)
    kl_uniform = elbo.kl_categorical_uniform(torch.as_tensor(q)).numpy()
    np.testing.assert_allclose(kl_uniform, stats.entropy(q, np.full(5, 0.2), axis=1), atol=1e-10)
    kl = elbo.kl_categorical(torch.as_tensor(q), torch.as_tensor(np.log(p))).numpy()
    np.testing.assert_allclose(kl, stats.entropy(q, p, axis=1), atol=1e-10)
    # a sub-normalised prior (NP-CompILE's truncated sticks): the KL to the normalised prior minus log(sum p)
    sub = 0.8 * p
    kl_sub = elbo.kl_categorical(torch.as_tensor(q), torch.as_tensor(np.log(sub))).numpy()
    np.testing.assert_allclose(kl_sub, stats.entropy(q, p, axis=1) - np.log(0.8), atol=1e-10)


def test_gumbel_softmax_hard_samples_follow_the_softmax_and_relaxed_ones_share_their_argmax() -> None:
    logits = torch.tensor([1.0, -0.5, 0.3, 0.0], dtype=torch.float64)
    n = 40_000
    hard = elbo.gumbel_softmax_sample(logits.expand(n, 4), 1.0, generator=torch.Generator().manual_seed(0), hard=True)
    freq = hard.mean(0).numpy()
    probs = torch.softmax(logits, 0).numpy()
    assert np.all(np.abs(freq - probs) < 5 * np.sqrt(probs * (1 - probs) / n))
    soft = elbo.gumbel_softmax_sample(logits.expand(n, 4), 0.3, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(soft.sum(-1), torch.ones(n, dtype=torch.float64))
    assert torch.equal(soft.argmax(-1), hard.argmax(-1))  # same uniforms: the relaxation keeps the Gumbel-max argmax


def _hard_membership(ends: tuple[int, ...], steps: int) -> np.ndarray:
    """(N, T) 0/1: step t is in segment i when every earlier segment ended before t and segment i has not."""
    out = np.zeros((len(ends), steps))
    for i, end in enumerate(ends):
        for t in range(steps):
            out[i, t] = float(all(ends[j] < t for j in range(i)) and t <= end)
    return out


def test_soft_segment_masks_are_the_expectation_of_hard_masks_by_enumeration() -> None:
    rng = np.random.default_rng(1)
    n_seg, steps, batch = 3, 4, 2
    probs = rng.dirichlet(np.ones(steps), size=(n_seg, batch))  # N x B x T
    masks = elbo.segment_masks([torch.as_tensor(probs[i]) for i in range(n_seg)]).numpy()
    reset = elbo.encoder_masks([torch.as_tensor(probs[i]) for i in range(n_seg - 1)]).numpy()
    for b in range(batch):
        expected = np.zeros((n_seg, steps))
        started = np.zeros(steps)
        for ends in itertools.product(range(steps), repeat=n_seg):
            weight = np.prod([probs[i, b, e] for i, e in enumerate(ends)])
            expected += weight * _hard_membership(ends, steps)
            started += weight * np.array([float(all(e < t for e in ends[:-1])) for t in range(steps)])
        np.testing.assert_allclose(masks[:, b], expected, atol=1e-12)
        np.testing.assert_allclose(reset[b], started, atol=1e-12)


def test_hard_segment_masks_partition_the_steps() -> None:
    ends = [(1, 0, 4), (0, 2, 4), (4, 4, 4), (3, 1, 4)]
    steps = 5
    for row in ends:
        onehots = [torch.nn.functional.one_hot(torch.tensor([e]), steps).double() for e in row]
        masks = elbo.segment_masks(onehots)[:, 0].numpy()
        np.testing.assert_array_equal(masks, _hard_membership(row, steps))
        np.testing.assert_array_equal(masks.sum(0), np.ones(steps))


def _brute_force_loglik(log_pi: np.ndarray, w: np.ndarray, length: np.ndarray, max_segments: int) -> float:
    """Sum over every composition of T into at most N segment lengths and every latent per segment."""
    steps, k = log_pi.shape
    total = 0.0
    for m in range(1, min(max_segments, steps) + 1):
        for cut in itertools.combinations(range(1, steps), m - 1):
            bounds = (0, *cut, steps)
            parts = [bounds[i + 1] - bounds[i] for i in range(m)]
            p_len = 1.0
            for i, part in enumerate(parts):
                if i < m - 1:
                    p_len *= length[part - 1]  # a segment that ends before T has exactly this length
                elif m < max_segments:
                    p_len *= length[part - 1 :].sum()  # the one reaching T is cut there: P(L >= remaining)
                # the N-th segment covers the rest with probability 1
            for latents in itertools.product(range(k), repeat=m):
                p = p_len
                for i, z in enumerate(latents):
                    p *= w[z] * np.exp(log_pi[bounds[i] : bounds[i + 1], z].sum())
                total += p
    return math.log(total)


@pytest.mark.parametrize("max_segments", [1, 2, 3, 6])
def test_semi_markov_likelihood_equals_brute_force_enumeration(max_segments) -> None:
    rng = np.random.default_rng(2)
    batch, steps, k = 3, 5, 2
    log_pi = np.log(rng.uniform(0.05, 1.0, size=(batch, steps, k)))
    w = rng.dirichlet(np.ones(k))
    length = np.exp(elbo.poisson_length_log_prior(steps, 2.0).numpy())
    got = segment_log_likelihood(
        torch.as_tensor(log_pi), torch.as_tensor(np.log(w)), torch.as_tensor(np.log(length)), max_segments
    ).numpy()
    expected = [_brute_force_loglik(log_pi[b], w, length, max_segments) for b in range(batch)]
    np.testing.assert_allclose(got, expected, rtol=1e-10)


def _kl_kumaraswamy_beta_closed_form(a: float, b: float, alpha: float, terms: int = 200_000) -> float:
    """KL(Kuma(a, b) || Beta(1, alpha)) in closed form (Nalisnick & Smyth 2017, with log(ab), series truncated)."""
    m = np.arange(1, terms + 1)
    series = np.sum(special.beta(m / a, b) / (m + a * b))
    return (
        (a - 1.0) / a * (-np.euler_gamma - special.digamma(b) - 1.0 / b)
        + np.log(a * b)
        + special.betaln(1.0, alpha)
        - (b - 1.0) / b
        + (alpha - 1.0) * b * series
    )


def test_np_compile_stick_kl_matches_the_closed_form_kumaraswamy_beta_kl() -> None:
    """NP-CompILE's KL term comes from bnpo's StickBreakingPrior: its Monte Carlo estimate matches the closed form."""
    prior = StickBreakingPrior(3, estimator="mc", n_draws=200_000, generator=torch.Generator().manual_seed(0))
    params = [(1.5, 2.0), (0.8, 3.0), (2.5, 1.5)]
    alpha = 1.7
    with torch.no_grad():
        for stick, (a, b) in zip(prior.sticks, params, strict=True):
            stick.copy_(torch.log(torch.tensor([a, b])))
        prior.log_alpha.fill_(math.log(alpha))
        _, kl = prior.sample(1, generator=torch.Generator().manual_seed(1))
    expected = sum(_kl_kumaraswamy_beta_closed_form(a, b, alpha) for a, b in params)
    assert abs(float(kl) - expected) < 0.02 * max(1.0, abs(expected))
    # Kuma(1, alpha) is Beta(1, alpha): zero KL in closed form
    assert abs(_kl_kumaraswamy_beta_closed_form(1.0, alpha, alpha)) < 1e-4


def _cell_loop(inputs: torch.Tensor, mask: torch.Tensor, cell: torch.nn.LSTMCell) -> torch.Tensor:
    """The public code's masked_encode: one nn.LSTMCell step at a time, its state times the mask after each."""
    batch, steps, _ = inputs.shape
    hx = inputs.new_zeros(batch, cell.hidden_size)
    cx = inputs.new_zeros(batch, cell.hidden_size)
    outputs = []
    for t in range(steps):
        hx, cx = cell(inputs[:, t], (hx, cx))
        hx, cx = hx * mask[:, t, None], cx * mask[:, t, None]
        outputs.append(hx)
    return torch.stack(outputs, dim=1)


def test_masked_lstm_matches_the_lstm_cell_loop_values_and_gradients_in_float64() -> None:
    torch.manual_seed(0)
    cell = torch.nn.LSTMCell(5, 6).double()
    inputs = torch.randn(4, 7, 5, dtype=torch.float64, requires_grad=True)
    mask = torch.rand(4, 7, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(4, 7, 6, dtype=torch.float64)  # a generic downstream loss
    expected = _cell_loop(inputs, mask, cell)
    got = masked_lstm(input_gates(inputs, cell), mask, cell.weight_hh)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
    wrt = [inputs, mask, *cell.parameters()]
    grads_expected = torch.autograd.grad((expected * weights).sum(), wrt)
    grads = torch.autograd.grad((got * weights).sum(), wrt)
    for a, b in zip(grads, grads_expected, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    # the hand-written backward against finite differences, a hard mask (0/1, the segment reset) included
    x_gates = torch.randn(3, 5, 24, dtype=torch.float64, requires_grad=True)
    weight = (0.5 * torch.randn(24, 6, dtype=torch.float64)).requires_grad_()
    for m in (torch.rand(3, 5, dtype=torch.float64), (torch.arange(5) >= 2).double().expand(3, 5)):
        assert torch.autograd.gradcheck(MaskedLSTM.apply, (x_gates, m.clone().requires_grad_(), weight))


def test_masked_lstm_float32_is_the_float64_result_within_float32_rounding() -> None:
    """The float32 path (tanh through sigmoid, the fit's dtype) against the float64 cell loop."""
    torch.manual_seed(1)
    cell = torch.nn.LSTMCell(8, 16).double()
    inputs = torch.randn(32, 30, 8, dtype=torch.float64)
    mask = torch.rand(32, 30, dtype=torch.float64).sort(dim=1).values  # monotone, as segment resets are
    expected = _cell_loop(inputs, mask, cell)
    cell32 = cell.float()
    got = masked_lstm(input_gates(inputs.float(), cell32), mask.float(), cell32.weight_hh).double()
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_row_wise_truncated_length_prior_is_scipy_poisson_truncated_to_each_length() -> None:
    lengths = torch.tensor([1, 4, 9, 9, 2])
    got = elbo.truncated_length_log_prior(lengths, 9, 3.0).numpy()
    for row, length in enumerate(lengths.tolist()):
        logpmf = stats.poisson.logpmf(np.arange(1, length + 1), 3.0)
        np.testing.assert_allclose(got[row, :length], logpmf - special.logsumexp(logpmf), rtol=0, atol=1e-12)
        assert np.all(got[row, length:] == 0.0)
