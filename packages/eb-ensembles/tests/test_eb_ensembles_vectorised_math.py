"""The vectorised path's hand-written pieces against PyTorch: closed-form MLP gradients vs autograd, flat Adam vs
torch.optim.Adam, and the whole vectorised training vs the loop on deeper, weight-decayed, non-ReLU MLPs."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.func import stack_module_state

from eb_ensembles.models import MLP, mlp_factory
from eb_ensembles.training.config import TrainConfig
from eb_ensembles.training.generic_grads import eager_value_and_grad, generic_value_and_grad
from eb_ensembles.training.likelihood import member_loss
from eb_ensembles.training.members import init_member
from eb_ensembles.training.mlp_grads import stacked_mlp_value_and_grad
from eb_ensembles.training.stacked_adam import StackedAdam
from eb_ensembles.training.train import train_ensemble

TOL64 = 1e-10  # as in test_eb_ensembles_ensemble.py: bmm vs mm round-off only


@pytest.mark.parametrize(
    ("task", "activation", "hidden"),
    [
        ("classification", "relu", (16,)),
        ("classification", "tanh", (12, 7)),
        ("classification", "gelu", (9,)),
        ("regression", "relu", (10, 6)),
        ("regression", "tanh", (8,)),
    ],
)
def test_closed_form_mlp_gradients_equal_autograd(task, activation, hidden):
    gen = torch.Generator().manual_seed(0)
    t, b, d = 3, 11, 5
    out = 4 if task == "classification" else 2
    factory = mlp_factory(d, out, hidden, activation)
    models = [init_member(factory, 7, m).double() for m in range(t)]
    x = torch.randn(t, b, d, generator=gen, dtype=torch.float64)
    if task == "classification":
        y = torch.randint(0, out, (t, b), generator=gen)
    else:
        y = torch.randn(t, b, generator=gen, dtype=torch.float64) * 3  # large residuals: both variance terms matter
    # reference: each member's own module, autograd on its mean loss
    ref_losses, ref_grads = [], []
    for m, model in enumerate(models):
        loss = member_loss(task, model(x[m]), y[m])
        ref_grads.append(
            dict(
                zip(
                    [n for n, _ in model.named_parameters()],
                    torch.autograd.grad(loss, list(model.parameters())),
                    strict=True,
                )
            )
        )
        ref_losses.append(loss.detach())
    params, buffers = stack_module_state(models)
    params = {k: v.detach() for k, v in params.items()}
    grads = {k: torch.full_like(v, float("nan")) for k, v in params.items()}  # every entry must be overwritten
    fn = stacked_mlp_value_and_grad(models[0], task)
    assert fn is not None
    losses = fn(params, buffers, x, y, grads)
    torch.testing.assert_close(losses, torch.stack(ref_losses), atol=1e-12, rtol=0)
    for name in params:
        expected = torch.stack([g[name] for g in ref_grads])
        torch.testing.assert_close(grads[name], expected, atol=1e-12, rtol=0)


def test_closed_form_path_declines_other_modules():
    assert stacked_mlp_value_and_grad(MLP(4, 2, (8,), dropout=0.1), "classification") is None
    assert stacked_mlp_value_and_grad(nn.Sequential(nn.Linear(3, 2), nn.ReLU()), "classification") is None
    assert stacked_mlp_value_and_grad(nn.Sequential(nn.Linear(3, 2, bias=False)), "classification") is None
    assert stacked_mlp_value_and_grad(nn.Linear(3, 2), "classification") is None


@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_stacked_adam_matches_torch_adam_exactly(weight_decay):
    gen = torch.Generator().manual_seed(3)
    shapes = {"w": (3, 4, 5), "b": (3, 4), "s": (3,)}
    start = {k: torch.randn(s, generator=gen) for k, s in shapes.items()}
    grads_seq = [{k: torch.randn(s, generator=gen) * 10 ** (i % 3 - 1) for k, s in shapes.items()} for i in range(7)]
    reference = {k: v.clone().requires_grad_(True) for k, v in start.items()}
    torch_adam = torch.optim.Adam(list(reference.values()), lr=3e-2, weight_decay=weight_decay)
    ours = StackedAdam(start, lr=3e-2, weight_decay=weight_decay)
    for grads in grads_seq:
        for k, tensor in reference.items():
            tensor.grad = grads[k].clone()
        torch_adam.step()
        for k, g in grads.items():
            ours.grads[k].copy_(g)
        ours.step()
    for k, tensor in reference.items():
        # the same elementwise operations in the same order: bitwise equal, not merely close
        assert torch.equal(ours.params[k], tensor.detach()), k
        assert torch.equal(ours.exp_avg_sq[_offset(ours, k)], torch_adam.state[tensor]["exp_avg_sq"].flatten())
    # state round trip
    clone = StackedAdam(start, lr=3e-2, weight_decay=weight_decay)
    clone.load_state_dict(ours.state_dict())
    assert clone.step_count == 7 and torch.equal(clone.exp_avg, ours.exp_avg)


def _offset(adam: StackedAdam, name: str) -> slice:
    start = 0
    for k, v in adam.params.items():
        if k == name:
            return slice(start, start + v.numel())
        start += v.numel()
    raise KeyError(name)


@pytest.mark.parametrize(
    ("task", "activation", "hidden", "weight_decay"),
    [
        ("classification", "tanh", (12, 6), 1e-2),
        ("regression", "gelu", (10,), 0.0),
        ("classification", "relu", (8, 8), 0.0),
    ],
)
def test_vectorised_equals_loop_deeper_mlps(task, activation, hidden, weight_decay, toy_classification, toy_regression):
    x, y = toy_classification if task == "classification" else toy_regression
    out = 3 if task == "classification" else 2
    factory = mlp_factory(x.shape[1], out, hidden, activation)
    config = TrainConfig(
        members=3, epochs=3, batch_size=24, lr=1e-2, weight_decay=weight_decay, dtype="float64", seed=4
    )
    vectorised = train_ensemble(factory, x, y, config)
    config.vectorise = False
    looped = train_ensemble(factory, x, y, config)
    diff = max(
        float((sa[k] - sb[k]).abs().max()) for sa, sb in zip(vectorised.states, looped.states, strict=True) for k in sa
    )
    assert diff < TOL64
    torch.testing.assert_close(vectorised.train_loglik(), looped.train_loglik(), atol=TOL64, rtol=0)


class _Custom(nn.Module):
    """Outside the MLP fast path: Linear → Tanh → Linear in its own class, plus a skip connection."""

    def __init__(self, d: int, out: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(d, 9), nn.Tanh())
        self.head = nn.Linear(9, out)
        self.skip = nn.Linear(d, out, bias=False)

    def forward(self, x):
        return self.head(self.body(x)) + self.skip(x)


def _refuse_recording(*args, **kwargs):
    raise RuntimeError("recording refused by the test")


@pytest.mark.parametrize("path", ["recorded", "eager", "recording fails"])
@pytest.mark.parametrize(("task", "noise_std"), [("classification", None), ("regression", None), ("regression", 0.7)])
def test_generic_gradients_equal_autograd(task, noise_std, path, monkeypatch):
    """The generic path (recorded with make_fx, eager, and eager after a failed recording) against autograd."""
    if path == "recording fails":
        monkeypatch.setattr("torch.fx.experimental.proxy_tensor.make_fx", _refuse_recording)
    gen = torch.Generator().manual_seed(1)
    t, b, d = 3, 10, 4
    out = 3 if task == "classification" else (1 if noise_std else 2)
    models = [init_member(lambda: _Custom(d, out), 2, m).double() for m in range(t)]
    x = torch.randn(t, b, d, generator=gen, dtype=torch.float64)
    y = torch.randint(0, out, (t, b), generator=gen) if task == "classification" else 3 * x[..., 0]
    params, buffers = stack_module_state(models)
    params = {k: v.detach() for k, v in params.items()}
    make = eager_value_and_grad if path == "eager" else generic_value_and_grad
    fn = make(copy.deepcopy(models[0]).to("meta"), task, noise_std)
    for _ in range(2):  # the second call replays the recorded graph
        grads = {k: torch.full_like(v, float("nan")) for k, v in params.items()}
        losses = fn(params, buffers, x, y, grads)
        for m, model in enumerate(models):
            loss = member_loss(task, model(x[m]), y[m], noise_std)
            torch.testing.assert_close(losses[m], loss.detach(), atol=1e-12, rtol=0)
            for name, g in zip(
                dict(model.named_parameters()), torch.autograd.grad(loss, list(model.parameters())), strict=True
            ):
                torch.testing.assert_close(grads[name][m], g, atol=1e-12, rtol=0)
