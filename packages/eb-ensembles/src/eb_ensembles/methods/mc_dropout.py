"""MC dropout (Gal and Ghahramani, 2016): one network trained with dropout, kept on at prediction.

Training: the loop trainer (dropout is random, so members are not vectorised) with Adam weight decay α/N. The
predictive samples S dropout masks, drawn from the run seed's stream.

Known approximation: the spread comes from the fixed dropout rate p, not from the data; it does not shrink as N
grows the way a posterior does. The tests check the predictive mean against the exact posterior's on a
linear-Gaussian problem and that the spread is nonzero, not that the spread matches.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from eb_ensembles.data import Dataset
from eb_ensembles.methods.base import MethodConfig, network_factory, register_method, require_fitted
from eb_ensembles.methods.map import map_train_config
from eb_ensembles.methods.parameters import predictive_from_outputs
from eb_ensembles.training.train import train_ensemble
from sixlab_shared import derive_seed

__all__ = ["MCDropoutMethod"]


class MCDropoutMethod:
    """An MLP with dropout ``config.dropout`` after each hidden layer, sampled S times at prediction."""

    name = "mc_dropout"

    def __init__(self, config: MethodConfig) -> None:
        self.config = config
        self.module: nn.Module | None = None

    def fit(self, dataset: Dataset, *, checkpoint_dir: Path | None = None, resume: bool = False) -> MCDropoutMethod:
        """Train one dropout network (loop path, weight decay α/N); return self."""
        c = self.config
        if not c.hidden:
            from eb_ensembles.checks import InvalidInputError

            raise InvalidInputError("MC dropout needs at least one hidden layer (dropout acts after hidden layers)")
        n = int(dataset.x_train.shape[0])
        self.task = dataset.task
        self.noise_std = c.noise_std if dataset.task == "regression" else None
        train = replace(map_train_config(c.train, c.prior_precision, n), vectorise=False)
        with torch.random.fork_rng(devices=[]):  # dropout masks come from torch's global RNG: fork and seed it
            torch.manual_seed(derive_seed(c.train.seed, "mc_dropout", "train"))
            ensemble = train_ensemble(
                network_factory(dataset, c, dropout=c.dropout),
                dataset.x_train,
                dataset.y_train,
                train,
                noise_std=self.noise_std,
                checkpoint_dir=checkpoint_dir,
                resume=resume,
            )
        self.module = ensemble.modules()[0]
        self.seed = c.train.seed
        return self

    def predict_samples(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """``(S, N, K)`` probabilities or ``(S, N)`` means and variances from S dropout masks."""
        module: nn.Module = require_fitted(self, "module")
        dtype = next(module.parameters()).dtype
        module.train()  # dropout on; the MLP has no other train-mode behaviour
        try:
            with torch.random.fork_rng(devices=[]), torch.no_grad():
                torch.manual_seed(derive_seed(self.seed, "mc_dropout"))
                outputs = torch.stack([module(x.to(dtype)) for _ in range(self.config.samples)])
        finally:
            module.eval()
        return predictive_from_outputs(self.task, outputs, self.noise_std)


register_method("mc_dropout", MCDropoutMethod)
