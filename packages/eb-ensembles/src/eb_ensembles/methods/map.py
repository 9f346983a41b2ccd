"""MAP: one network trained with the Gaussian prior's weight decay (S = 1)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from torch import nn

from eb_ensembles.data import Dataset
from eb_ensembles.methods.base import MethodConfig, network_factory, register_method
from eb_ensembles.methods.ensemble import EnsembleMethod
from eb_ensembles.training.config import TrainConfig
from eb_ensembles.training.train import train_ensemble

__all__ = ["MAPMethod", "map_train_config", "train_map_network"]


def map_train_config(train: TrainConfig, prior_precision: float, n: int, *, members: int = 1) -> TrainConfig:
    """``train`` with Adam's L2 weight decay ``α / N``: the mean loss ``ℓ/N + α|θ|²/(2N)`` is the log joint / N."""
    return replace(train, members=members, weight_decay=prior_precision / n)


def train_map_network(
    dataset: Dataset,
    config: MethodConfig,
    *,
    dropout: float = 0.0,
    checkpoint_dir: Path | None = None,
    resume: bool = False,
) -> tuple[nn.Module, TrainConfig, float | None]:
    """Train the one MAP network the single-network BNN baselines start from (Laplace, SWAG, MC dropout).

    Loop path (not vectorised), weight decay ``α / N`` (see :func:`map_train_config`).

    Returns:
        ``(module, train_config, noise_std)``: the trained network, the training config it used (its ``weight_decay``
        and ``torch_dtype`` are reused after training), and the regression noise std (``None`` for classification).
    """
    n = int(dataset.x_train.shape[0])
    noise_std = config.noise_std if dataset.task == "regression" else None
    train = replace(map_train_config(config.train, config.prior_precision, n), vectorise=False)
    ensemble = train_ensemble(
        network_factory(dataset, config, dropout=dropout),
        dataset.x_train,
        dataset.y_train,
        train,
        noise_std=noise_std,
        checkpoint_dir=checkpoint_dir,
        resume=resume,
    )
    return ensemble.modules()[0], train, noise_std


class MAPMethod(EnsembleMethod):
    """A single network maximising ``log p(D | θ) + log N(θ; 0, α⁻¹ I)``."""

    name = "map"

    def train_config(self, dataset: Dataset) -> TrainConfig:
        """One member, vectorised off, weight decay ``α / N``."""
        config = map_train_config(self.config.train, self.config.prior_precision, int(dataset.x_train.shape[0]))
        return replace(config, vectorise=False)


register_method("map", MAPMethod)
