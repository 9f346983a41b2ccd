"""Laplace approximation around the MAP: ``q(θ) = N(θ_MAP, (GGN + α I)⁻¹)`` over all weights or the last layer.

The curvature is the generalised Gauss-Newton matrix ``Σ_i J_iᵀ H_i J_i`` (``J_i = ∂f(x_i)/∂θ``; ``H_i`` the
Hessian of ``-log p(y_i | f)`` in the outputs: ``1/σ²`` with fixed noise, ``diag(p) − ppᵀ`` for softmax, and
the Fisher ``diag(1/v, softplus'(r)²/(2v²))`` of a mean/variance head), built from per-example Jacobians with
``torch.func.jacrev``. For a linear-Gaussian model it is the exact posterior precision.

Prediction is the linearised (GLM) predictive: ``f(x; θ_MAP) + J(x)(θ_s − θ_MAP)`` for ``θ_s ~ q``, computed with
``torch.func.jvp`` (for the last layer this equals running the network at ``θ_s``).

Why not laplace-torch: the package's regression heads predict a variance (laplace-torch's regression likelihood
is homoscedastic with one output), and its dependencies (asdl, backpack, curvlinops) are not in the workspace;
the GGN here is ~40 lines and is tested against the exact linear-Gaussian posterior.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.func import functional_call, jacrev, jvp, vmap

from eb_ensembles.data import Dataset
from eb_ensembles.methods.base import MethodConfig, register_method, require_fitted
from eb_ensembles.methods.map import train_map_network
from eb_ensembles.methods.parameters import FlatParams, predictive_from_outputs
from eb_ensembles.models import MIN_VARIANCE
from sixlab_shared import derive_seed, make_generator

__all__ = ["LaplaceMethod", "output_hessians"]


def output_hessians(task: str, outputs: torch.Tensor, noise_std: float | None) -> torch.Tensor:
    """``(N, O, O)`` Hessians (GGN weights) of ``-log p(y | f)`` in the network outputs ``f (N, O)``."""
    n, width = outputs.shape
    if task == "classification":
        p = torch.softmax(outputs, -1)
        return torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
    if noise_std is not None:
        return torch.full((n, 1, 1), 1.0 / noise_std**2, dtype=outputs.dtype, device=outputs.device)
    raw = outputs[:, 1]
    var = nn.functional.softplus(raw) + MIN_VARIANCE
    h = torch.zeros(n, 2, 2, dtype=outputs.dtype, device=outputs.device)
    h[:, 0, 0] = 1.0 / var
    h[:, 1, 1] = torch.sigmoid(raw) ** 2 / (2 * var**2)
    return h


class LaplaceMethod:
    """Laplace approximation (GGN curvature, prior precision α, linearised predictive).

    Attributes (after ``fit``):
        mean: ``(P,)`` θ_MAP of the approximated parameters.
        precision: ``(P, P)`` posterior precision ``GGN + α I``.
        layout: which parameters θ covers (all, or the last ``nn.Linear``).
    """

    name = "laplace"

    def __init__(self, config: MethodConfig) -> None:
        self.config = config
        self.mean: torch.Tensor | None = None
        self.precision: torch.Tensor | None = None

    def fit(self, dataset: Dataset, *, checkpoint_dir: Path | None = None, resume: bool = False) -> LaplaceMethod:
        """Train the MAP (weight decay α/N), then build the GGN over the chosen parameters; return self."""
        c = self.config
        self.task = dataset.task
        module, _, self.noise_std = train_map_network(dataset, c, checkpoint_dir=checkpoint_dir, resume=resume)
        for p in module.parameters():
            p.requires_grad_(False)
        linears = [name for name, m in module.named_modules() if isinstance(m, nn.Linear)]
        names = None
        if c.laplace_subset == "last_layer":
            last = linears[-1]
            names = [f"{last}.weight", f"{last}.bias"]
        self.layout = FlatParams(module, names)
        state = dict(module.named_parameters())
        self.mean = self.layout.flatten(state).detach().clone()
        x = dataset.x_train.to(self.mean.dtype)
        ggn = torch.zeros(self.layout.size, self.layout.size, dtype=self.mean.dtype)

        def f(theta: torch.Tensor, xi: torch.Tensor) -> torch.Tensor:
            return functional_call(module, self.layout.unflatten(theta), (xi[None],))[0]

        jac = vmap(jacrev(f), in_dims=(None, 0))
        for xb in x.split(256):
            j = jac(self.mean, xb)  # B x O x P
            h = output_hessians(self.task, module(xb), self.noise_std)  # B x O x O
            ggn += torch.einsum("bop,boq,bqr->pr", j, h, j)
        self.precision = ggn + c.prior_precision * torch.eye(self.layout.size, dtype=ggn.dtype)
        self._chol = torch.linalg.cholesky(self.precision)
        self.module = module
        self.seed = c.train.seed
        return self

    @property
    def covariance(self) -> torch.Tensor:
        """``(P, P)`` posterior covariance ``precision⁻¹``."""
        require_fitted(self, "precision")
        return torch.cholesky_inverse(self._chol)

    def sample(self, count: int) -> torch.Tensor:
        """``(count, P)`` draws ``θ_MAP + L⁻ᵀ z`` (``precision = L Lᵀ``), from the run seed's stream."""
        mean = require_fitted(self, "mean")
        z = torch.randn(
            count, mean.shape[0], generator=make_generator(derive_seed(self.seed, "laplace")), dtype=mean.dtype
        )
        return mean + torch.linalg.solve_triangular(self._chol.T, z.T, upper=True).T

    def predict_samples(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Linearised predictive samples: ``(S, N, K)`` probabilities or ``(S, N)`` means and variances."""
        mean = require_fitted(self, "mean")
        deltas = self.sample(self.config.samples) - mean
        x = x.to(mean.dtype)

        def f(theta: torch.Tensor) -> torch.Tensor:
            return functional_call(self.module, self.layout.unflatten(theta), (x,))

        with torch.no_grad():
            at_map = f(mean)  # N x O
            tangents = vmap(lambda d: jvp(f, (mean,), (d,))[1])(deltas)  # S x N x O
        outputs = at_map + tangents
        return predictive_from_outputs(self.task, outputs, self.noise_std)


register_method("laplace", LaplaceMethod)
