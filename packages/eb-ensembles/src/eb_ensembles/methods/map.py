"""MAP: one network trained with the Gaussian prior's weight decay (S = 1)."""

from __future__ import annotations

from dataclasses import replace

from eb_ensembles.data import Dataset
from eb_ensembles.methods.base import register_method
from eb_ensembles.methods.ensemble import EnsembleMethod
from eb_ensembles.training.config import TrainConfig

__all__ = ["MAPMethod", "map_train_config"]


def map_train_config(train: TrainConfig, prior_precision: float, n: int, *, members: int = 1) -> TrainConfig:
    """``train`` with Adam's L2 weight decay ``α / N``: the mean loss ``ℓ/N + α|θ|²/(2N)`` is the log joint / N."""
    return replace(train, members=members, weight_decay=prior_precision / n)


class MAPMethod(EnsembleMethod):
    """A single network maximising ``log p(D | θ) + log N(θ; 0, α⁻¹ I)``."""

    name = "map"

    def train_config(self, dataset: Dataset) -> TrainConfig:
        """One member, vectorised off, weight decay ``α / N``."""
        config = map_train_config(self.config.train, self.config.prior_precision, int(dataset.x_train.shape[0]))
        return replace(config, vectorise=False)


register_method("map", MAPMethod)
