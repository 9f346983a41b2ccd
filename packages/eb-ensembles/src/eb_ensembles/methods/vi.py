"""Mean-field variational inference (Bayes by backprop) with the local reparameterisation trick.

Every weight and bias has ``q(w) = N(μ, σ²)``, ``σ = softplus(ρ)``, under the prior ``N(0, α⁻¹)``. Training
maximises the ELBO ``E_q[log p(D | w)] − KL(q ‖ p)`` by Adam on minibatches: the loss is the batch's mean negative
log-likelihood plus ``KL / N``. With local reparameterisation (Kingma et al., 2015) a layer samples its
pre-activations ``b ~ N(x μᵀ + μ_b, x² σ²ᵀ + σ_b²)`` instead of the weights, which lowers the gradient variance.
Prediction samples whole weight sets (coherent functions across inputs).

Known approximation (the tests check it): for a linear-Gaussian model the optimal mean-field q has the exact
posterior mean and variances ``1 / Λ_jj`` (the diagonal of the posterior precision), which understate the
marginal variances when the inputs are correlated.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from eb_ensembles.data import Dataset
from eb_ensembles.methods.base import MethodConfig, output_width, register_method, require_fitted
from eb_ensembles.methods.parameters import predictive_from_outputs
from eb_ensembles.models import _ACTIVATIONS
from eb_ensembles.training.likelihood import member_loss
from eb_ensembles.training.members import epoch_order
from sixlab_shared import derive_seed, progress

__all__ = ["MeanFieldLinear", "MeanFieldMLP", "VIMethod"]

_INIT_STD = 1e-3


class MeanFieldLinear(nn.Module):
    """A linear layer with a factorised Gaussian posterior over its weights and biases.

    Args:
        in_features, out_features: as ``nn.Linear`` (means initialised like it; standard deviations 1e-3).
        prior_precision: α of the prior ``N(0, α⁻¹)``.
    """

    def __init__(self, in_features: int, out_features: int, prior_precision: float) -> None:
        super().__init__()
        ref = nn.Linear(in_features, out_features)
        self.weight_mu = nn.Parameter(ref.weight.detach().clone())
        self.bias_mu = nn.Parameter(ref.bias.detach().clone())
        rho = math.log(math.expm1(_INIT_STD))
        self.weight_rho = nn.Parameter(torch.full_like(self.weight_mu, rho))
        self.bias_rho = nn.Parameter(torch.full_like(self.bias_mu, rho))
        self.prior_precision = prior_precision

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Local reparameterisation: one pre-activation sample per input row, ``(N, in) → (N, out)``."""
        mean = nn.functional.linear(x, self.weight_mu, self.bias_mu)
        var = nn.functional.linear(x**2, nn.functional.softplus(self.weight_rho) ** 2)
        var = var + nn.functional.softplus(self.bias_rho) ** 2
        return mean + var.sqrt() * torch.randn_like(mean)

    def sample_forward(self, x: torch.Tensor, generator: torch.Generator, count: int) -> torch.Tensor:
        """``count`` whole weight draws: ``x (S, N, in)`` or ``(N, in)`` → ``(S, N, out)``."""
        shape_w = (count, *self.weight_mu.shape)
        w = self.weight_mu + nn.functional.softplus(self.weight_rho) * torch.randn(
            shape_w, generator=generator, dtype=x.dtype, device=x.device
        )
        b = self.bias_mu + nn.functional.softplus(self.bias_rho) * torch.randn(
            (count, *self.bias_mu.shape), generator=generator, dtype=x.dtype, device=x.device
        )
        if x.ndim == 2:
            x = x.expand(count, *x.shape)
        return torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))

    def kl(self) -> torch.Tensor:
        """``KL(q ‖ N(0, α⁻¹))`` summed over the layer's weights and biases (nats)."""
        total = 0.0
        for mu, rho in ((self.weight_mu, self.weight_rho), (self.bias_mu, self.bias_rho)):
            var = nn.functional.softplus(rho) ** 2
            a = self.prior_precision
            total = total + 0.5 * (a * (var + mu**2) - 1 - torch.log(a * var)).sum()
        return total


class MeanFieldMLP(nn.Module):
    """An MLP of :class:`MeanFieldLinear` layers: ``(N, D) → (N, O)`` (one local-reparameterised sample)."""

    def __init__(self, in_features: int, out_features: int, hidden: tuple[int, ...], activation: str, alpha: float):
        super().__init__()
        widths = [in_features, *hidden, out_features]
        self.layers = nn.ModuleList(MeanFieldLinear(a, b, alpha) for a, b in zip(widths[:-1], widths[1:], strict=True))
        self.act = _ACTIVATIONS[activation]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = self.act(x)
        return x

    def sample_outputs(self, x: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
        """``(S, N, O)`` outputs of ``count`` weight draws."""
        h = x
        for i, layer in enumerate(self.layers):
            h = layer.sample_forward(h, generator, count)
            if i < len(self.layers) - 1:
                h = self.act(h)
        return h

    def kl(self) -> torch.Tensor:
        """Total KL of all layers."""
        return sum(layer.kl() for layer in self.layers)


class VIMethod:
    """Mean-field VI (Bayes by backprop, local reparameterisation), trained by Adam on the minibatch ELBO."""

    name = "vi"

    def __init__(self, config: MethodConfig) -> None:
        self.config = config
        self.model: MeanFieldMLP | None = None

    def fit(self, dataset: Dataset, *, checkpoint_dir: Path | None = None, resume: bool = False) -> VIMethod:
        """Maximise the ELBO for ``config.train.epochs`` epochs; return self (no checkpoints: runs are short)."""
        c, t = self.config, self.config.train
        self.task = dataset.task
        self.noise_std = c.noise_std if dataset.task == "regression" else None
        dtype = t.torch_dtype
        x = dataset.x_train.to(dtype)
        y = dataset.y_train.to(dtype) if dataset.task == "regression" else dataset.y_train
        n = int(x.shape[0])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(t.seed, "vi", "init"))
            model = MeanFieldMLP(x.shape[1], output_width(dataset, c), c.hidden, c.activation, c.prior_precision)
            model = model.to(dtype)
            optimiser = torch.optim.Adam(model.parameters(), lr=t.lr)
            steps = -(-n // t.batch_size)
            for epoch in progress(range(t.epochs), desc="vi", leave=False):
                order = epoch_order(t.seed, 0, epoch, n, x.device)
                for step in range(steps):
                    idx = order[step * t.batch_size : (step + 1) * t.batch_size]
                    loss = member_loss(self.task, model(x[idx]), y[idx], self.noise_std) + model.kl() / n
                    optimiser.zero_grad()
                    loss.backward()
                    optimiser.step()
        self.model = model.eval()
        self.seed = t.seed
        return self

    def predict_samples(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """``(S, N, K)`` probabilities or ``(S, N)`` means and variances from S whole weight draws."""
        model: MeanFieldMLP = require_fitted(self, "model")
        dtype = model.layers[0].weight_mu.dtype
        generator = torch.Generator(device=x.device).manual_seed(derive_seed(self.seed, "vi", "predict"))
        with torch.no_grad():
            outputs = model.sample_outputs(x.to(dtype), self.config.samples, generator)
        return predictive_from_outputs(self.task, outputs, self.noise_std)

    def posterior(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(P,)`` means and variances of q, flattened layer by layer as ``[weight, bias]`` (``nn.Linear``'s order)."""
        model: MeanFieldMLP = require_fitted(self, "model")
        means, variances = [], []
        for layer in model.layers:
            for mu, rho in ((layer.weight_mu, layer.weight_rho), (layer.bias_mu, layer.bias_rho)):
                means.append(mu.detach().reshape(-1))
                variances.append(nn.functional.softplus(rho.detach()).reshape(-1) ** 2)
        return torch.cat(means), torch.cat(variances)


register_method("vi", VIMethod)
