"""The torch-uncertainty layout: a ModuleList named core_models accepts our export, and the metric conventions."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from eb_ensembles.ensemble import DeepEnsemble
from eb_ensembles.interop import (
    from_torch_uncertainty_state_dict,
    to_torch_uncertainty_probs,
    to_torch_uncertainty_state_dict,
)
from eb_ensembles.metrics import uncertainty_decomposition
from eb_ensembles.models import mlp_factory
from eb_ensembles.training.config import TrainConfig
from eb_ensembles.training.train import train_ensemble


class _TULayout(nn.Module):
    """torch-uncertainty's _DeepEnsembles keeps its members exactly like this (``self.core_models``)."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.core_models = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([m(x) for m in self.core_models], 0)  # its forward: logits concatenated on the batch


def test_state_dict_round_trip_through_the_torch_uncertainty_layout(toy_classification):
    x, y = toy_classification
    factory = mlp_factory(5, 3, (8,))
    ens = train_ensemble(factory, x, y, TrainConfig(members=3, epochs=1, dtype="float64"))
    target = _TULayout([factory().double() for _ in range(3)])
    target.load_state_dict(to_torch_uncertainty_state_dict(ens), strict=True)
    with torch.no_grad():
        logits = target(x).reshape(3, x.shape[0], 3)
    torch.testing.assert_close(torch.softmax(logits, -1), ens.member_probs(x), atol=1e-12, rtol=0)
    states = from_torch_uncertainty_state_dict(target.state_dict())
    back = DeepEnsemble(factory, states, ens.reports, "classification")
    torch.testing.assert_close(back.member_probs(x), ens.member_probs(x), atol=0, rtol=0)
    with pytest.raises(ValueError, match="core_models"):
        from_torch_uncertainty_state_dict({"members.0.weight": torch.zeros(1)})


def test_entropy_conventions_against_torch_uncertainty_docs():
    """torch-uncertainty's Entropy docstring example: (B=2, N=3, C=2) probabilities give 0.6269 (mean member H)."""
    tu_probs = torch.tensor([[[0.7, 0.3], [0.6, 0.4], [0.8, 0.2]], [[0.4, 0.6], [0.5, 0.5], [0.3, 0.7]]])
    ours = tu_probs.transpose(0, 1)  # (M, N, K)
    torch.testing.assert_close(to_torch_uncertainty_probs(ours), tu_probs)
    parts = uncertainty_decomposition(ours.double())
    assert float(parts["aleatoric"].mean()) == pytest.approx(0.6269, abs=5e-5)  # their "Entropy"
    assert float(parts["total"].mean()) > float(parts["aleatoric"].mean())  # ours: H[p̄], larger by the MI
