"""Ensembles: vmap vs loop, determinism, failed members, resume, degenerate ensembles (§5 items 14, 16)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from eb_ensembles.checks import InvalidInputError
from eb_ensembles.ensemble import DeepEnsemble
from eb_ensembles.metrics import classification_metrics, ensemble_nll
from eb_ensembles.models import mlp_factory
from eb_ensembles.training.config import TrainConfig
from eb_ensembles.training.members import MemberReport, init_member
from eb_ensembles.training.train import train_ensemble

# vmap vs loop tolerance: both paths use identical RNG streams and identical elementwise Adam updates; the only
# difference is that the vectorised path runs batched matmuls (bmm) where the loop runs one matmul per member,
# which may accumulate sums in another order. In float64 that round-off is ~1e-16 per operation and stays far below
# 1e-10 after a few hundred steps; in float32 it is ~1e-7 per operation, so 1e-4 is used there.
TOL64, TOL32 = 1e-10, 1e-4


def _max_state_diff(a: DeepEnsemble, b: DeepEnsemble) -> float:
    return max(float((sa[k] - sb[k]).abs().max()) for sa, sb in zip(a.states, b.states, strict=True) for k in sa)


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_vectorised_equals_loop_float64(task, toy_classification, toy_regression):
    x, y = toy_classification if task == "classification" else toy_regression
    out = 3 if task == "classification" else 2
    factory = mlp_factory(x.shape[1], out, (16,))
    config = TrainConfig(members=3, epochs=4, batch_size=32, lr=1e-2, dtype="float64", seed=3)
    vectorised = train_ensemble(factory, x, y, config)
    config.vectorise = False
    looped = train_ensemble(factory, x, y, config)
    assert _max_state_diff(vectorised, looped) < TOL64
    torch.testing.assert_close(vectorised.train_loglik(), looped.train_loglik(), atol=TOL64, rtol=0)
    if task == "classification":
        torch.testing.assert_close(vectorised.member_probs(x), looped.member_probs(x), atol=TOL64, rtol=0)
        # predictions vectorised over members equal each module's own forward pass
        by_module = torch.stack([torch.softmax(m(x), -1) for m in looped.modules()])
        torch.testing.assert_close(looped.member_probs(x), by_module.detach(), atol=1e-12, rtol=0)
    else:
        mv, vv = vectorised.member_gaussians(x)
        ml, vl = looped.member_gaussians(x)
        torch.testing.assert_close(mv, ml, atol=TOL64, rtol=0)
        torch.testing.assert_close(vv, vl, atol=TOL64, rtol=0)


class _Wrapped(nn.Module):
    """A module the hand-batched MLP path does not recognise, so training goes through generic torch.func.vmap."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(5, 12), nn.Tanh())
        self.head = nn.Linear(12, 3)

    def forward(self, x):
        return self.head(self.body(x))


def test_generic_vmap_path_equals_loop(toy_classification):
    """8 epochs of 7 full minibatches (56 >= MIN_REPLAYS: recorded and replayed) and one of 16 points (eager)."""
    x, y = toy_classification
    config = TrainConfig(members=3, epochs=8, batch_size=32, lr=1e-2, dtype="float64", seed=5)
    vectorised = train_ensemble(_Wrapped, x, y, config)
    config.vectorise = False
    looped = train_ensemble(_Wrapped, x, y, config)
    assert _max_state_diff(vectorised, looped) < TOL64


def test_vectorised_equals_loop_float32(toy_classification):
    x, y = toy_classification
    factory = mlp_factory(5, 3, (16,))
    config = TrainConfig(members=2, epochs=3, batch_size=32, lr=1e-2, seed=1)
    a = train_ensemble(factory, x.float(), y, config)
    config.vectorise = False
    b = train_ensemble(factory, x.float(), y, config)
    assert _max_state_diff(a, b) < TOL32


def test_same_seed_same_numbers_and_members_differ(toy_classification):
    x, y = toy_classification
    factory = mlp_factory(5, 3, (8,))
    config = TrainConfig(members=3, epochs=2, batch_size=64, dtype="float64", seed=11)
    a, b = train_ensemble(factory, x, y, config), train_ensemble(factory, x, y, config)
    assert _max_state_diff(a, b) == 0.0
    flat = a.flat_parameters()
    assert float((flat[0] - flat[1]).abs().max()) > 1e-3  # independent initialisations
    config.seed = 12
    c = train_ensemble(factory, x, y, config)
    assert _max_state_diff(a, c) > 1e-3


def test_init_member_leaves_global_rng_alone():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    init_member(mlp_factory(4, 2), seed=5, index=2)
    assert torch.equal(torch.rand(3), expected)


class _Poisoned(nn.Module):
    """A linear classifier whose loss is NaN when its random `trigger` (drawn at init) exceeds 0.5."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(5, 3)
        self.register_buffer("trigger", torch.rand(()))

    def forward(self, x):
        poison = torch.where(
            self.trigger > 0.5, torch.tensor(math.nan, dtype=x.dtype), torch.tensor(0.0, dtype=x.dtype)
        )
        return self.linear(x) + poison


@pytest.mark.parametrize("vectorise", [True, False])
def test_nan_member_is_reported_and_others_survive(vectorise, toy_classification, tmp_path):
    x, y = toy_classification
    config = TrainConfig(members=6, epochs=2, batch_size=64, dtype="float64", seed=0, vectorise=vectorise)
    triggers = [float(init_member(_Poisoned, 0, m).trigger) for m in range(6)]
    bad = {m for m, t in enumerate(triggers) if t > 0.5}
    assert 0 < len(bad) < 6, "the seed must give a mix of failing and healthy members"
    ens = train_ensemble(_Poisoned, x, y, config, checkpoint_dir=tmp_path)
    assert {r.index for r in ens.failed} == bad
    assert all("loss became nan at epoch 0, step 0" in r.message for r in ens.failed)
    assert ens.num_members == 6 - len(bad)
    assert bool(torch.isfinite(ens.member_probs(x)).all())
    assert len(list((tmp_path / "members").glob("*.safetensors"))) == 6
    # healthy members are unaffected by the failures: same numbers as healthy members trained alone
    healthy = next(m for m in range(6) if m not in bad)
    alone = train_ensemble(_Poisoned, x, y, TrainConfig(**{**config.__dict__, "vectorise": False}))
    assert (
        torch.equal(alone.states[healthy]["linear.weight"], ens.states[healthy]["linear.weight"])
        or float((alone.states[healthy]["linear.weight"] - ens.states[healthy]["linear.weight"]).abs().max()) < TOL64
    )


@pytest.mark.parametrize("vectorise", [True, False])
def test_killed_run_resumes_to_the_same_numbers(vectorise, toy_classification, tmp_path):
    x, y = toy_classification
    factory = mlp_factory(5, 3, (8,))
    config = TrainConfig(
        members=3, epochs=4, batch_size=64, dtype="float64", seed=2, vectorise=vectorise, checkpoint_every=1
    )
    reference = train_ensemble(factory, x, y, config)

    class Killed(Exception):
        pass

    def kill(members, epoch):
        if (vectorise and epoch == 1) or (not vectorise and members == [1] and epoch == 2):
            raise Killed

    with pytest.raises(Killed):
        train_ensemble(factory, x, y, config, checkpoint_dir=tmp_path, on_epoch_end=kill)
    partial = tmp_path / ("partial_vmap.safetensors" if vectorise else "partial_loop.safetensors")
    assert partial.is_file()
    if not vectorise:
        assert (tmp_path / "members" / "member_000.safetensors").is_file()
    resumed = train_ensemble(factory, x, y, config, checkpoint_dir=tmp_path, resume=True)
    assert _max_state_diff(reference, resumed) == 0.0
    assert not partial.exists()


def test_degenerate_ensembles(toy_classification):
    x, y = toy_classification
    factory = mlp_factory(5, 3, (8,))
    ens = train_ensemble(factory, x, y, TrainConfig(members=2, epochs=2, dtype="float64"))
    single = ens.subset(1)
    module = single.modules()[0]
    with torch.no_grad():
        p = torch.softmax(module(x), -1)
    by_hand = -torch.log(p[torch.arange(len(y)), y]).mean()
    m1 = classification_metrics(single.member_probs(x), y)
    assert m1["nll"] == pytest.approx(float(by_hand), abs=1e-12)
    assert m1["mutual_information"] == pytest.approx(0.0, abs=1e-12)
    copies = DeepEnsemble(factory, [ens.states[0]] * 4, [MemberReport(i, train_loglik=0.0) for i in range(4)], ens.task)
    assert ensemble_nll(copies.member_log_probs(x), y) == pytest.approx(float(by_hand), abs=1e-12)


def test_bad_configs_and_models(toy_classification):
    x, y = toy_classification
    with pytest.raises(InvalidInputError, match="M >= 1"):
        train_ensemble(mlp_factory(5, 3), x, y, TrainConfig(members=0))
    with pytest.raises(InvalidInputError, match="without random layers"):
        train_ensemble(mlp_factory(5, 3, dropout=0.5), x, y, TrainConfig(members=2, epochs=1))
    with pytest.raises(InvalidInputError, match="regression network must output 2 values"):
        train_ensemble(mlp_factory(5, 3), x, y.double(), TrainConfig(members=1, epochs=1))
    states = [mlp_factory(5, 3, (4,))().state_dict(), mlp_factory(5, 3, (6,))().state_dict()]
    with pytest.raises(InvalidInputError, match="member 1 does not match member 0"):
        DeepEnsemble(mlp_factory(5, 3, (4,)), states, [MemberReport(0), MemberReport(1)], "classification")
