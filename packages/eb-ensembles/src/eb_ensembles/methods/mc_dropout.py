"""MC dropout (Gal and Ghahramani, 2016): one network trained with dropout, kept on at prediction.

Training: the loop trainer (dropout is random, so members are not vectorised) with Adam weight decay α/N. The
predictive samples S dropout masks, drawn from the run seed's stream.

Known approximation: the spread comes from the fixed dropout rate p, not from the data; it does not shrink as N
grows the way a posterior does. The tests check the predictive mean against the exact posterior's on a
linear-Gaussian problem and that the spread is nonzero, not that the spread matches.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from eb_ensembles.data import Dataset
from eb_ensembles.methods.base import MethodConfig, register_method, require_fitted
from eb_ensembles.methods.map import train_map_network
from eb_ensembles.methods.parameters import predictive_from_outputs
from sixlab_shared import derive_seed, seeded

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
        self.task = dataset.task
        with seeded(derive_seed(c.train.seed, "mc_dropout", "train"), devices=[]):  # dropout masks: global RNG
            self.module, _, self.noise_std = train_map_network(
                dataset, c, dropout=c.dropout, checkpoint_dir=checkpoint_dir, resume=resume
            )
        self.seed = c.train.seed
        return self

    def predict_samples(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """``(S, N, K)`` probabilities or ``(S, N)`` means and variances from S dropout masks."""
        module: nn.Module = require_fitted(self, "module")
        dtype = next(module.parameters()).dtype
        module.train()  # dropout on; the MLP has no other train-mode behaviour
        try:
            with seeded(derive_seed(self.seed, "mc_dropout"), devices=[]), torch.no_grad():
                outputs = torch.stack([module(x.to(dtype)) for _ in range(self.config.samples)])
        finally:
            module.eval()
        return predictive_from_outputs(self.task, outputs, self.noise_std)


register_method("mc_dropout", MCDropoutMethod)
