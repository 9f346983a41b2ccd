"""Deep ensemble: M independently initialised networks trained by maximum likelihood (the empirical-Bayes BMA)."""

from __future__ import annotations

from pathlib import Path

import torch

from eb_ensembles.data import Dataset
from eb_ensembles.ensemble import DeepEnsemble
from eb_ensembles.methods.base import MethodConfig, network_factory, register_method, require_fitted
from eb_ensembles.training.config import TrainConfig
from eb_ensembles.training.train import train_ensemble

__all__ = ["EnsembleMethod"]


class EnsembleMethod:
    """A deep ensemble of ``config.train.members`` MLPs (probability averaging / Gaussian mixture)."""

    name = "ensemble"

    def __init__(self, config: MethodConfig) -> None:
        self.config = config
        self.ensemble: DeepEnsemble | None = None

    def train_config(self, dataset: Dataset) -> TrainConfig:
        """The training config of the members (the ensemble's own: ``config.train`` as given)."""
        return self.config.train

    def fit(self, dataset: Dataset, *, checkpoint_dir: Path | None = None, resume: bool = False) -> EnsembleMethod:
        """Train the members on ``dataset``'s training split; return self."""
        self.ensemble = train_ensemble(
            network_factory(dataset, self.config),
            dataset.x_train,
            dataset.y_train,
            self.train_config(dataset),
            noise_std=self.config.noise_std if dataset.task == "regression" else None,
            checkpoint_dir=checkpoint_dir,
            resume=resume,
            device=self.config.device,
        )
        return self

    def predict_samples(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """``(M, N, K)`` member probabilities, or ``(M, N)`` member means and variances."""
        ensemble: DeepEnsemble = require_fitted(self, "ensemble")
        if ensemble.task == "classification":
            return ensemble.member_probs(x)
        return ensemble.member_gaussians(x)


register_method("ensemble", EnsembleMethod)
