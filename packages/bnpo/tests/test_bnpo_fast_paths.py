"""The hand-written backward passes of the CPU fast paths (networks.py) against plain autograd on the textbook
formulas, in float64: values and gradients of every parameter, plus torch.autograd.gradcheck."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from bnpo.networks import GrowableHeads, PosteriorEncoder, softmax


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


def _reference_sample(enc: PosteriorEncoder, inputs, eta, tau, generator):
    """The posterior's relaxed sampling written with plain autograd ops, following the model's definition."""
    batch, steps, _ = inputs.shape
    k = enc.n_options
    e = enc.context(inputs)
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
        assert str(a.state_dict()) == str(b.state_dict())
