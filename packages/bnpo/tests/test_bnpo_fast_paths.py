"""The hand-written backward passes of the CPU fast paths (networks.py) against plain autograd on the textbook
formulas, in float64: values and gradients of every parameter, plus torch.autograd.gradcheck."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.nn import functional as F

from bnpo.encoder import PosteriorEncoder
from bnpo.networks import GrowableHeads, softmax


def _grads(output: dict[str, torch.Tensor], weights: dict[str, torch.Tensor], params: list[torch.Tensor]):
    return torch.autograd.grad(sum((output[k] * weights[k]).sum() for k in weights), params)


def test_softmax_matches_torch_values_and_gradients():
    logits = (torch.randn(9, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 5)[:, 1:]
    logits.requires_grad_()
    weights = torch.randn(9, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ours, ref = softmax(logits), torch.softmax(logits, dim=-1)
    assert torch.allclose(ours, ref, atol=1e-14)
    (g_ours,) = torch.autograd.grad((ours * weights).sum(), logits)
    (g_ref,) = torch.autograd.grad((ref * weights).sum(), logits)
    assert torch.allclose(g_ours, g_ref, atol=1e-13)
    assert torch.autograd.gradcheck(softmax, (logits[:3].detach().requires_grad_(),))


def test_head_log_prob_matches_log_softmax_gather():
    heads = GrowableHeads(3, 7, [16], 4, torch.Generator().manual_seed(0)).double()
    gen = torch.Generator().manual_seed(2)
    states = (torch.randn(5, 6, 3, dtype=torch.float64, generator=gen) * 3).requires_grad_()
    actions = torch.randint(0, 7, (5, 6), generator=gen)
    ours = heads.log_prob_at(states, actions)
    ref = F.log_softmax(heads(states), dim=-1).gather(-1, actions[..., None, None].expand(5, 6, 4, 1))[..., 0]
    assert ours.shape == (5, 6, 4)
    assert torch.allclose(ours, ref, atol=1e-12)
    weights = torch.randn(5, 6, 4, dtype=torch.float64, generator=gen)
    params = [states, *heads.parameters()]
    ours_grads = _grads({"x": ours}, {"x": weights}, params)
    for a, b in zip(ours_grads, _grads({"x": ref}, {"x": weights}, params), strict=True):
        assert torch.allclose(a, b, atol=1e-11)
    small = states[:2, :3].detach().requires_grad_()
    assert torch.autograd.gradcheck(lambda s: heads.log_prob_at(s, actions[:2, :3]), (small,))


def _plain_context(enc: PosteriorEncoder, inputs: torch.Tensor) -> torch.Tensor:
    """The encoder's backward summaries e_t by the plain definition: ``nn.LSTM`` over ``embed`` of the reversed
    sequence, flipped back (the reference of ``context_reversed``)."""
    reversed_out, _ = enc.lstm(enc.embed(torch.flip(inputs, dims=[1])))
    return torch.flip(reversed_out, dims=[1])


def _reference_sample(enc: PosteriorEncoder, inputs, eta, tau, generator):
    """The posterior's relaxed sampling written with plain autograd ops, following the model's definition."""
    batch, steps, _ = inputs.shape
    k = enc.n_options
    e = _plain_context(enc, inputs)
    u_b = torch.rand((batch, steps), generator=generator).clamp(1e-6, 1 - 1e-6)
    u_h = torch.rand((batch, steps, k), generator=generator).clamp(1e-6, 1 - 1e-6)
    logistic = (torch.log(u_b) - torch.log1p(-u_b)).to(inputs.dtype)
    gumbel = (-torch.log(-torch.log(u_h))).to(inputs.dtype)
    weight = torch.cat([enc.head_in.weight, torch.stack(list(enc.in_columns), dim=1)], dim=1)
    b, h = torch.ones(batch, 1, dtype=inputs.dtype), eta
    logits, flags, options = [], [], []
    for t in range(steps):
        z = torch.relu(F.linear(torch.cat([e[:, t], b, h], dim=-1), weight, enc.head_in.bias))
        z = torch.relu(enc.head_mid(z))
        rows = torch.stack([z @ row + bias for row, bias in zip(enc.out_rows, enc.out_biases, strict=True)], dim=-1)
        out = torch.cat([enc.out_termination(z), rows], dim=-1)
        b = torch.sigmoid((out[:, :1] + logistic[:, t : t + 1]) / tau)
        h = torch.softmax((out[:, 1:] + gumbel[:, t]) / tau, dim=-1)
        logits.append(out)
        flags.append(b[:, 0])
        options.append(h)
    stacked = torch.stack(logits, dim=1)
    return {
        "logit_b": stacked[..., 0],
        "logit_h": stacked[..., 1:],
        "b": torch.stack(flags, 1),
        "h": torch.stack(options, 1),
    }


def _plain_head_input(enc: PosteriorEncoder, inputs: torch.Tensor) -> torch.Tensor:
    """The head's first layer on e_t alone, (T, B, H') in reversed time (row T-1-t: step t), from the plain
    nn.LSTM definition."""
    plain = F.linear(_plain_context(enc, inputs), enc.head_in.weight[:, :-1], enc.head_in.bias)
    return plain.transpose(0, 1).flip(0)


@pytest.mark.parametrize("path", ["onednn", "onednn_distinct", "hand_distinct"])
def test_encoder_lstm_head_input_matches_plain_lstm(path: str, monkeypatch):
    """Both LSTM paths of the encoder against nn.Sequential then nn.LSTM then the head's first layer (float64):
    values, and the gradients of the inputs and of every embedding, LSTM and head parameter. oneDNN's LSTM with the
    embedding's second layer folded into its input weights, on (B, T) inputs or on distinct rows gathered by
    ``index``; the hand-written node (time-major recurrence, tanh via sigmoid) on gathered input gates, whose rows'
    gradients are summed over the steps that share them."""
    import bnpo.encoder

    monkeypatch.setattr(bnpo.encoder, "HAND_LSTM_MIN_BATCH", 1 if path == "hand_distinct" else 10**9)
    enc = PosteriorEncoder(10, 3, 8, 6, 5, torch.Generator().manual_seed(4)).double()
    gen = torch.Generator().manual_seed(6)
    if path == "onednn":
        leaf = (torch.randn(7, 4, 10, dtype=torch.float64, generator=gen) * 2).requires_grad_()
        index = None
        ours, ref = enc.head_input(leaf), _plain_head_input(enc, leaf)
    else:
        leaf = (torch.randn(4, 10, dtype=torch.float64, generator=gen) * 2).requires_grad_()
        index = torch.randint(0, 4, (7, 4), generator=gen)
        ours, ref = enc.head_input(leaf, index), _plain_head_input(enc, leaf[index])
    assert ours.shape == (4, 7, 5)
    assert torch.allclose(ours, ref, atol=1e-13)
    weights = torch.randn(ref.shape, dtype=torch.float64, generator=gen)
    params = [leaf, *enc.embed.parameters(), *enc.lstm.parameters(), enc.head_in.weight, enc.head_in.bias]
    ours_grads = _grads({"x": ours}, {"x": weights}, params)
    for a, b in zip(ours_grads, _grads({"x": ref}, {"x": weights}, params), strict=True):
        assert torch.allclose(a, b, atol=1e-12)
    small = leaf.detach()[:2, :3] if index is None else leaf.detach()
    sub = None if index is None else index[:3]
    assert torch.autograd.gradcheck(lambda x: enc.head_input(x, sub), (small.requires_grad_(),))


def test_hand_lstm_node_in_time_major_order_matches_nn_lstm():
    """lstm_head_input on (T B, 4H) input gates read in time-major order against nn.LSTM run forward over the same
    steps, float64, with gradcheck."""
    from bnpo.lstm import lstm_head_input

    gen = torch.Generator().manual_seed(8)
    lstm = torch.nn.LSTM(3, 4).double()
    head = torch.nn.Linear(4, 2).double()
    x = torch.randn(5, 6, 3, dtype=torch.float64, generator=gen).requires_grad_()  # (T, B, input)

    def ours(x):
        steps, batch, _ = x.shape
        gates = F.linear(x, lstm.weight_ih_l0, lstm.bias_ih_l0 + lstm.bias_hh_l0).reshape(steps * batch, 16)
        order = torch.arange(steps * batch)  # the rows are already time-major
        return lstm_head_input(gates, order, steps, batch, lstm.weight_hh_l0, head.weight, head.bias)

    ref = head(lstm(x)[0])
    assert torch.allclose(ours(x), ref, atol=1e-13)
    weights = torch.randn(ref.shape, dtype=torch.float64, generator=gen)
    params = [x, *lstm.parameters(), *head.parameters()]
    ours_grads, ref_grads = _grads({"x": ours(x)}, {"x": weights}, params), _grads({"x": ref}, {"x": weights}, params)
    for a, b in zip(ours_grads, ref_grads, strict=True):
        assert torch.allclose(a, b, atol=1e-12)
    assert torch.autograd.gradcheck(ours, (x.detach()[:, :2].contiguous().requires_grad_(),), atol=1e-8)


def test_relaxed_posterior_sample_matches_autograd_reference():
    enc = PosteriorEncoder(10, 4, 8, 8, 8, torch.Generator().manual_seed(0)).double()
    gen = torch.Generator().manual_seed(5)
    inputs = torch.randn(6, 5, 10, dtype=torch.float64, generator=gen)
    eta = torch.rand(6, 4, dtype=torch.float64, generator=gen).requires_grad_()
    ours = enc.sample(inputs, eta, 0.7, generator=torch.Generator().manual_seed(3))
    ref = _reference_sample(enc, inputs, eta, 0.7, torch.Generator().manual_seed(3))
    weights = {k: torch.randn(v.shape, dtype=torch.float64, generator=gen) for k, v in ours.items()}
    for key in weights:
        assert torch.allclose(ours[key], ref[key], atol=1e-10), key
    params = [eta, *enc.parameters()]
    for a, b in zip(_grads(ours, weights, params), _grads(ref, weights, params), strict=True):
        assert torch.allclose(a, b, atol=1e-9)


def test_relaxed_posterior_sample_gradcheck():
    enc = PosteriorEncoder(5, 3, 4, 4, 4, torch.Generator().manual_seed(1)).double()
    inputs = torch.randn(3, 4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))

    def run(eta):
        out = enc.sample(inputs, eta, 0.5, generator=torch.Generator().manual_seed(7))
        return out["logit_h"], out["h"], out["b"]

    eta = torch.rand(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).requires_grad_()
    assert torch.autograd.gradcheck(run, (eta,))


def _assert_same_adam_state(a: torch.optim.Optimizer, b: torch.optim.Optimizer) -> None:
    """Both optimisers' states hold bit-identical tensors (moments and step counts) and the same groups."""
    sa, sb = a.state_dict(), b.state_dict()
    assert sa["param_groups"] == sb["param_groups"]
    assert sa["state"].keys() == sb["state"].keys()
    for key, entry in sa["state"].items():
        assert entry.keys() == sb["state"][key].keys()
        for name, value in entry.items():
            assert torch.equal(value, sb["state"][key][name]), (key, name)


def test_grouped_adam_equals_torch_adam_per_group():
    """One kernel call over all param groups (groups added mid-run, as growth does) gives torch's Adam bit for bit."""
    from bnpo.fit import GroupedAdam

    gen = torch.Generator().manual_seed(0)
    ours = [torch.nn.Parameter(torch.randn(3, 4, generator=gen)) for _ in range(5)]
    theirs = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    for fused in (True, False):
        a = torch.optim.Adam(theirs[:2], lr=1e-2, weight_decay=1e-4, fused=fused)
        b = GroupedAdam(ours[:2], lr=1e-2, weight_decay=1e-4, fused=fused)
        for step in range(6):
            if step in (2, 4):
                new = slice(2, 4) if step == 2 else slice(4, 5)
                a.add_param_group({"params": theirs[new]})
                b.add_param_group({"params": ours[new]})
            for opt in (a, b):
                live = [p for g in opt.param_groups for p in g["params"]]
                opt.zero_grad(set_to_none=True)
                sum((p**3).sum() * (i + 1) for i, p in enumerate(live)).backward()
                opt.step()
        assert all(torch.equal(p, q) for p, q in zip(ours, theirs, strict=True))
        _assert_same_adam_state(a, b)


def test_grouped_adam_cache_follows_state_changes_like_torch_adam():
    """The reused kernel lists give torch's Adam bit for bit through everything that changes them: a parameter
    without a gradient for some steps, a popped state (the split trial resets an option's moments), a state loaded
    from a copy, and new groups; over 12 steps, fused and foreach."""
    from bnpo.optim import GroupedAdam

    gen = torch.Generator().manual_seed(1)
    ours = [torch.nn.Parameter(torch.randn(4, 3, generator=gen)) for _ in range(4)]
    theirs = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    for fused in (True, False):
        a = torch.optim.Adam(theirs[:3], lr=1e-2, weight_decay=1e-4, fused=fused)
        b = GroupedAdam(ours[:3], lr=1e-2, weight_decay=1e-4, fused=fused)
        for step in range(12):
            if step == 3:
                a.add_param_group({"params": theirs[3:]})
                b.add_param_group({"params": ours[3:]})
            if step == 6:
                a.state.pop(theirs[1])
                b.state.pop(ours[1])
            if step == 8:
                a.load_state_dict(copy.deepcopy(a.state_dict()))
                b.load_state_dict(copy.deepcopy(b.state_dict()))
            for opt in (a, b):
                live = [p for g in opt.param_groups for p in g["params"]]
                opt.zero_grad(set_to_none=True)
                used = [p for i, p in enumerate(live) if not (i == 2 and step in (4, 5, 9))]  # no gradient then
                sum((p**3).sum() * (i + 1) for i, p in enumerate(used)).backward()
                opt.step()
            assert all(torch.equal(p, q) for p, q in zip(ours, theirs, strict=True)), step
        _assert_same_adam_state(a, b)
        assert all(p.grad is not None for p in ours)
        b.zero_grad()
        assert all(p.grad is None for p in ours)


def _plugin_reference(prior, n_draws, generator):
    """The plug-in estimator written with the module's torch functions (autograd), as the code computed it before."""
    from bnpo.prior import beta_one_log_prob, kumaraswamy_log_prob, kumaraswamy_sample, stick_breaking

    logs = torch.stack(list(prior.sticks))
    a, b = logs[:, 0].exp(), logs[:, 1].exp()
    v = kumaraswamy_sample(a, b, n_draws, generator=generator)
    eta = stick_breaking(v).mean(dim=0)
    v_bar = v.mean(dim=0).clamp(1e-4, 1 - 1e-4)
    kl = (kumaraswamy_log_prob(v_bar, a, b) - beta_one_log_prob(v_bar, prior.alpha)).sum()
    return eta, kl


def test_plugin_prior_terms_match_autograd_reference():
    """eta and the one-point KL of the plug-in estimator (NumPy forward and hand-written backward) against the torch
    formulas with autograd, float64, for several stick settings (including a stick whose draws hit the clamps)."""
    from bnpo.prior import StickBreakingPrior

    for seed in range(4):
        prior = StickBreakingPrior(6, n_draws=30, generator=torch.Generator().manual_seed(seed)).double()
        if seed == 3:
            with torch.no_grad():
                prior.sticks[2].copy_(torch.tensor([4.0, -3.0], dtype=torch.float64))  # v near 1: clamped draws
        eta, kl = prior.sample(5, generator=torch.Generator().manual_seed(10 + seed))
        ref_eta, ref_kl = _plugin_reference(prior, 30, torch.Generator().manual_seed(10 + seed))
        assert eta.shape == (5, 6)
        assert torch.allclose(eta[0], ref_eta, rtol=1e-12, atol=1e-14)
        assert torch.allclose(kl, ref_kl, rtol=1e-12, atol=1e-12)
        weights = torch.randn(6, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
        params = [prior.log_alpha, *prior.sticks]
        ours = torch.autograd.grad((eta[0] * weights).sum() + 0.3 * kl, params)
        ref = torch.autograd.grad((ref_eta * weights).sum() + 0.3 * ref_kl, params)
        for x, y in zip(ours, ref, strict=True):
            assert torch.allclose(x, y, rtol=1e-9, atol=1e-11), (seed, x, y)


def test_plugin_prior_terms_gradcheck():
    from bnpo.prior import _PluginTerms

    gen = torch.Generator().manual_seed(0)
    sticks = [torch.randn(2, dtype=torch.float64, generator=gen).requires_grad_() for _ in range(3)]
    log_alpha = torch.randn((), dtype=torch.float64, generator=gen).requires_grad_()
    u = torch.rand(4, 3, dtype=torch.float64, generator=gen).clamp(1e-6, 1 - 1e-6)
    assert torch.autograd.gradcheck(lambda la, *s: _PluginTerms.apply(la, u, *s), (log_alpha, *sticks))


def _relaxed_inputs(seed: int, batch: int = 6, steps: int = 5, k: int = 4):
    gen = torch.Generator().manual_seed(seed)
    log_pi = torch.log_softmax(torch.randn(batch, steps, k, 3, dtype=torch.float64, generator=gen), -1)[..., 0]
    beta = torch.rand(batch, steps, k, dtype=torch.float64, generator=gen)
    eta = torch.rand(batch, k, dtype=torch.float64, generator=gen) / k
    outs = torch.randn(steps, batch, 1 + k, dtype=torch.float64, generator=gen) * 2
    latents = torch.cat(
        [torch.rand(steps, batch, 1, dtype=torch.float64, generator=gen), torch.softmax(outs[..., 1:] * 1.5, -1)], -1
    )
    if seed % 2:  # two equal consecutive options: |h_t - h_{t-1}| at its kink
        latents[2, :, 1:] = latents[1, :, 1:]
    return [x.requires_grad_() for x in (log_pi, beta, eta, outs, latents)]


def test_relaxed_nll_matches_log_joint_and_log_q():
    """The one-node relaxed objective against relaxed_log_joint, posterior_log_prob and h.mean with autograd,
    float64: the value, the usage and the gradients of all five inputs (including at |h_t - h_{t-1}| = 0)."""
    from bnpo.objective import posterior_log_prob, relaxed_log_joint, relaxed_nll

    for seed in range(4):
        log_pi, beta, eta, outs, latents = _relaxed_inputs(seed)
        nll, usage = relaxed_nll(log_pi, beta, eta, outs, latents)
        o, lat = outs.transpose(0, 1), latents.transpose(0, 1)
        log_p = relaxed_log_joint(log_pi, beta, eta, lat[..., 0], lat[..., 1:])
        log_q = posterior_log_prob(o[..., 0], o[..., 1:], lat[..., 0], lat[..., 1:])
        ref_nll, ref_usage = (log_q - log_p).mean(), lat[..., 1:].mean(dim=(0, 1))
        assert torch.allclose(nll, ref_nll, rtol=1e-12, atol=1e-12)
        assert torch.allclose(usage, ref_usage, rtol=1e-12, atol=1e-14)
        weights = torch.randn(usage.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
        inputs = [log_pi, beta, eta, outs, latents]
        ours = torch.autograd.grad(0.7 * nll + (usage * weights).sum(), inputs)
        ref = torch.autograd.grad(0.7 * ref_nll + (ref_usage * weights).sum(), inputs)
        for name, x, y in zip(("log_pi", "beta", "eta", "outs", "latents"), ours, ref, strict=True):
            assert torch.allclose(x, y, rtol=1e-10, atol=1e-12), (seed, name)


def test_relaxed_nll_gradcheck():
    from bnpo.objective import relaxed_nll

    inputs = _relaxed_inputs(0, batch=3, steps=4, k=3)
    assert torch.autograd.gradcheck(lambda *x: relaxed_nll(*x), inputs)


def test_model_loss_uses_the_same_objective_as_the_per_term_functions():
    """OptionModel.loss (one-node relaxed objective) equals the per-term computation on the same samples."""
    from bnpo.model import OptionModel, OptionModelConfig
    from bnpo.objective import posterior_log_prob, relaxed_log_joint

    model = OptionModel(OptionModelConfig(obs_dim=3, n_actions=4, n_options=3, seed=2)).double()
    gen = torch.Generator().manual_seed(0)
    states = torch.randn(8, 5, 3, dtype=torch.float64, generator=gen)
    actions = torch.randint(0, 4, (8, 5), generator=gen)
    out = model.loss(
        states, actions, tau=0.7, entropy_weight=2.0, n_train=100, generator=torch.Generator().manual_seed(1)
    )
    g = torch.Generator().manual_seed(1)
    eta, kl = model.prior.sample(8, generator=g)
    sample = model.posterior_sample(states, actions, eta, 0.7, generator=g)
    log_p = relaxed_log_joint(model.log_pi(states, actions), model.beta(states), eta, sample["b"], sample["h"])
    log_q = posterior_log_prob(sample["logit_b"], sample["logit_h"], sample["b"], sample["h"])
    usage = sample["h"].mean(dim=(0, 1))
    neg_entropy = (usage * torch.log(usage + 1e-5)).sum()
    expected = (log_q - log_p).mean() + 2.0 * neg_entropy + kl / 100
    assert torch.allclose(out["loss"], expected, rtol=1e-12, atol=1e-12)
    assert torch.allclose(out["usage"], usage, rtol=1e-12)
