"""SWAG (Maddox et al., 2019): a Gaussian fitted to the SGD iterates, diagonal plus low rank.

After the MAP pre-training (Adam, weight decay α/N, ``config.train.epochs``), SGD runs at the constant learning
rate ``swag_lr`` (same weight decay) for ``swag_epochs`` epochs; at the end of each epoch the iterate θ_t updates
the running moments ``θ̄``, ``θ̄²`` and the last K deviations ``θ_t − θ̄_t`` (the columns of D). Samples are

    θ = θ̄ + (1/√2) diag(θ̄² − θ̄²)^{½} z₁ + (1/√(2(K−1))) D z₂,   z₁ ~ N(0, I_P), z₂ ~ N(0, I_K).

Known approximation: the iterates' spread is set by the learning rate and batch size, not by the posterior; for
a quadratic loss with Hessian A (of the mean loss) and gradient-noise covariance C, SGD's stationary covariance
solves ``AΣ + ΣA = (lr/B) C`` (Mandt et al., 2017), so it matches the posterior ``(N A)⁻¹`` only for a
matched learning rate, and then only in scale. The tests check the mean and the variance within a factor.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from eb_ensembles.checks import InvalidInputError
from eb_ensembles.data import Dataset
from eb_ensembles.methods.base import MethodConfig, register_method, require_fitted
from eb_ensembles.methods.map import train_map_network
from eb_ensembles.methods.parameters import FlatParams, predictive_from_outputs
from eb_ensembles.training.likelihood import member_loss
from eb_ensembles.training.members import epoch_order
from sixlab_shared import derive_seed, make_generator, progress

__all__ = ["SWAGMethod"]


class SWAGMethod:
    """SWAG with a diagonal and a rank-K part (``swag_rank``; 0 gives SWAG-diagonal).

    Attributes (after ``fit``):
        mean: ``(P,)`` the SWA mean θ̄.
        diag_var: ``(P,)`` the diagonal variance ``θ̄² − θ̄²`` (clamped at 0).
        deviations: ``(K, P)`` the last K deviations.
    """

    name = "swag"

    def __init__(self, config: MethodConfig) -> None:
        self.config = config
        self.mean: torch.Tensor | None = None

    def fit(self, dataset: Dataset, *, checkpoint_dir: Path | None = None, resume: bool = False) -> SWAGMethod:
        """Pre-train the MAP, run constant-rate SGD collecting the moments; return self."""
        c = self.config
        n = int(dataset.x_train.shape[0])
        self.task = dataset.task
        module, train, self.noise_std = train_map_network(dataset, c, checkpoint_dir=checkpoint_dir, resume=resume)
        module.train()
        dtype = train.torch_dtype
        x = dataset.x_train.to(dtype)
        y = dataset.y_train.to(dtype) if dataset.task == "regression" else dataset.y_train
        optimiser = torch.optim.SGD(module.parameters(), lr=c.swag_lr, weight_decay=train.weight_decay)
        self.layout = FlatParams(module)
        first = torch.zeros(self.layout.size, dtype=dtype)
        second = torch.zeros_like(first)
        deviations: list[torch.Tensor] = []
        steps = -(-n // train.batch_size)
        for epoch in progress(range(c.swag_epochs), desc="swag", leave=False):
            order = epoch_order(train.seed, 1, train.epochs + epoch, n, x.device)  # a stream apart from pre-training
            for step in range(steps):
                idx = order[step * train.batch_size : (step + 1) * train.batch_size]
                loss = member_loss(self.task, module(x[idx]), y[idx], self.noise_std)
                if not bool(torch.isfinite(loss)):
                    raise InvalidInputError(
                        f"SWAG's constant-rate SGD diverged (loss {float(loss.detach())} at epoch {epoch}) with "
                        f"swag_lr={c.swag_lr}; lower swag_lr"
                    )
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
            theta = self.layout.flatten(dict(module.named_parameters())).detach()
            first = first + (theta - first) / (epoch + 1)
            second = second + (theta**2 - second) / (epoch + 1)
            if c.swag_rank:
                deviations = [*deviations, theta - first][-c.swag_rank :]
        self.mean = first
        self.diag_var = (second - first**2).clamp_min(0)
        self.deviations = torch.stack(deviations) if deviations else torch.zeros(0, self.layout.size, dtype=dtype)
        self.module = module.eval()
        for p in module.parameters():
            p.requires_grad_(False)
        self.seed = c.train.seed
        return self

    def sample(self, count: int) -> torch.Tensor:
        """``(count, P)`` SWAG draws from the run seed's stream."""
        mean = require_fitted(self, "mean")
        g = make_generator(derive_seed(self.seed, "swag"))
        z1 = torch.randn(count, mean.shape[0], generator=g, dtype=mean.dtype)
        out = mean + z1 * (self.diag_var / 2).sqrt()
        k = self.deviations.shape[0]
        if k > 1:
            z2 = torch.randn(count, k, generator=g, dtype=mean.dtype)
            out = out + z2 @ self.deviations / math.sqrt(2 * (k - 1))
        return out

    @property
    def covariance(self) -> torch.Tensor:
        """``(P, P)`` the SWAG covariance ``½ diag + DᵀD / (2(K−1))``."""
        require_fitted(self, "mean")
        cov = torch.diag(self.diag_var / 2)
        k = self.deviations.shape[0]
        if k > 1:
            cov = cov + self.deviations.T @ self.deviations / (2 * (k - 1))
        return cov

    def predict_samples(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """``(S, N, K)`` probabilities or ``(S, N)`` means and variances from S SWAG draws."""
        require_fitted(self, "mean")
        outputs = self.layout.outputs(self.sample(self.config.samples), x)
        return predictive_from_outputs(self.task, outputs, self.noise_std)


register_method("swag", SWAGMethod)
