"""Laplace approximation around the MAP: ``q(θ) = N(θ_MAP, (GGN + α I)⁻¹)`` over all weights or the last layer.

The curvature is the generalised Gauss-Newton matrix ``Σ_i J_iᵀ H_i J_i`` (``J_i = ∂f(x_i)/∂θ``; ``H_i`` the
Hessian of ``-log p(y_i | f)`` in the outputs). Two backends compute it, chosen by ``MethodConfig.laplace_backend``:

- ``"laplace-torch"`` (Immer, Daxberger et al.; the ``laplace`` extra): ``Laplace(model, likelihood,
  subset_of_weights="all" | "last_layer", hessian_structure="full", backend=BackPackGGN)`` fitted on the training
  set. It serves the likelihoods it knows (softmax classification; regression with a fixed noise σ and one
  output) and, over all weights, networks BackPACK can differentiate (Linear, ReLU, Tanh, Sigmoid; not GELU).
  We pass BackPACK's exact GGN instead of laplace-torch 0.3's default ``CurvlinopsGGN``, whose full matrix is
  ``linop @ torch.eye(P)`` with a float32 identity: in float64 that default is off by float32 round-off
  (6e-6 absolute, 4.5e-8 relative on the linear-Gaussian test), while BackPACK's matches the exact precision to
  2e-15.
- ``"ggn"`` (ours): the same matrix from per-example Jacobians (``torch.func.jacrev``) and the output Hessians of
  :func:`output_hessians`: ``1/σ²`` with fixed noise, ``diag(p) − ppᵀ`` for softmax, and the Fisher
  ``diag(1/v, softplus'(r)²/(2v²))`` of a mean/variance head. It exists because laplace-torch does not serve that
  heteroscedastic head (its regression likelihood is homoscedastic with one output, σ fixed for all inputs), which
  is the package's default regression network, nor GELU networks over all weights, and so that the method works
  without the optional extra.
- ``"auto"`` (default): laplace-torch where it serves and is installed, otherwise ours. The two agree to round-off
  (tested, float64), and both equal the exact posterior precision on a linear-Gaussian model.

Prediction is the linearised (GLM) predictive: ``f(x; θ_MAP) + J(x)(θ_s − θ_MAP)`` for ``θ_s ~ q``, computed with
``torch.func.jvp`` (for the last layer this equals running the network at ``θ_s``); the draws come from the run
seed's own stream, so predictions are reproducible whichever backend built the precision.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import torch
from torch import nn
from torch.func import functional_call, jacrev, jvp, vmap

from eb_ensembles.checks import InvalidInputError
from eb_ensembles.data import Dataset
from eb_ensembles.methods.base import MethodConfig, register_method, require_fitted
from eb_ensembles.methods.map import train_map_network
from eb_ensembles.methods.parameters import FlatParams, predictive_from_outputs
from eb_ensembles.models import MIN_VARIANCE
from sixlab_shared import derive_seed, make_generator

__all__ = [
    "LAPLACE_BACKENDS",
    "LaplaceMethod",
    "ggn_precision",
    "laplace_torch_available",
    "laplace_torch_posterior",
    "output_hessians",
    "resolve_backend",
]

LAPLACE_BACKENDS = ("auto", "laplace-torch", "ggn")


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


def laplace_torch_available() -> bool:
    """Whether laplace-torch (the ``laplace`` extra: ``pip install eb-ensembles[laplace]``) imports."""
    try:
        _import_laplace()
    except ImportError:
        return False
    return True


def _import_laplace():
    """``laplace.Laplace`` and ``BackPackGGN``; laplace-torch 0.3's import-time ``torch.jit.script`` deprecation
    warning (torch >= 2.10) is silenced here, not globally."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        from laplace import Laplace
        from laplace.curvature import BackPackGGN
    return Laplace, BackPackGGN


#: Leaf modules BackPACK (laplace-torch's GGN backend here) differentiates; a network over all weights with any
#: other module (e.g. GELU) goes to our GGN.
BACKPACK_MODULES = (nn.Linear, nn.ReLU, nn.Tanh, nn.Sigmoid, nn.Identity)


def laplace_torch_serves(task: str, noise_std: float | None, module: nn.Module, subset: str) -> bool:
    """Whether laplace-torch covers this likelihood (classification, fixed-noise regression) and network."""
    if task != "classification" and noise_std is None:
        return False
    if subset == "last_layer":
        return True
    leaves = [m for m in module.modules() if not list(m.children())]
    return all(isinstance(m, BACKPACK_MODULES) for m in leaves)


def resolve_backend(backend: str, task: str, noise_std: float | None, module: nn.Module, subset: str) -> str:
    """The backend that builds the curvature: ``"laplace-torch"`` or ``"ggn"``.

    ``"auto"`` picks laplace-torch where :func:`laplace_torch_serves` and it is installed, and ours otherwise (the
    mean/variance regression head, GELU networks over all weights, no ``laplace`` extra).

    Raises:
        InvalidInputError: ``"laplace-torch"`` asked for a case it does not serve, or while it is not installed.
    """
    served = laplace_torch_serves(task, noise_std, module, subset)
    if backend == "ggn":
        return "ggn"
    if backend == "laplace-torch":
        if not served:
            raise InvalidInputError(
                "laplace-torch serves classification and fixed-noise regression, over all weights only for "
                "Linear/ReLU/Tanh/Sigmoid networks; use laplace_backend='ggn' or 'auto'"
            )
        if not laplace_torch_available():
            raise InvalidInputError(
                "laplace_backend='laplace-torch' needs the laplace extra (pip install 'eb-ensembles[laplace]')"
            )
        return "laplace-torch"
    return "laplace-torch" if served and laplace_torch_available() else "ggn"


def ggn_precision(
    module: nn.Module, layout: FlatParams, x: torch.Tensor, task: str, noise_std: float | None, alpha: float
) -> torch.Tensor:
    """Our GGN ``Σ_i J_iᵀ H_i J_i + α I`` over the parameters of ``layout``: ``(P, P)`` in ``x``'s dtype."""
    theta = layout.flatten(dict(module.named_parameters())).detach()
    ggn = torch.zeros(layout.size, layout.size, dtype=theta.dtype)

    def f(flat: torch.Tensor, xi: torch.Tensor) -> torch.Tensor:
        return functional_call(module, layout.unflatten(flat), (xi[None],))[0]

    jac = vmap(jacrev(f), in_dims=(None, 0))
    with torch.no_grad():
        for xb in x.split(256):
            j = jac(theta, xb)  # B x O x P
            h = output_hessians(task, module(xb), noise_std)  # B x O x O
            ggn += torch.einsum("bop,boq,bqr->pr", j, h, j)
    return ggn + alpha * torch.eye(layout.size, dtype=ggn.dtype)


def laplace_torch_posterior(
    module: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    task: str,
    noise_std: float | None,
    alpha: float,
    subset: str,
    last_layer_name: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean (P,), precision (P, P))`` from laplace-torch's full-Hessian ``Laplace`` fitted on ``(x, y)``.

    ``subset`` is ``"all"`` or ``"last_layer"`` (the ``nn.Linear`` named ``last_layer_name``); the parameter order is
    ``named_parameters``' (the last layer: weight, then bias), the same as :class:`FlatParams`. laplace-torch gets a
    copy of ``module`` (BackPACK adds hooks to the network it is given).
    """
    laplace_cls, backpack_ggn = _import_laplace()
    module = copy.deepcopy(module)
    for p in module.parameters():
        p.requires_grad_(True)
    likelihood = "classification" if task == "classification" else "regression"
    kwargs = {"last_layer_name": last_layer_name} if subset == "last_layer" else {}
    if likelihood == "regression":
        kwargs["sigma_noise"] = noise_std
        y = y.to(x.dtype).reshape(-1, 1)
    la = laplace_cls(
        module,
        likelihood,
        subset_of_weights=subset,
        hessian_structure="full",
        prior_precision=alpha,
        backend=backpack_ggn,
        **kwargs,
    )
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=256)
    with warnings.catch_warnings():  # BackPACK's notes on hooks and on containers it does not extend
        warnings.filterwarnings("ignore", message=".*backward hook", category=UserWarning)
        warnings.filterwarnings("ignore", message="Extension saving to", category=UserWarning)
        la.fit(loader, progress_bar=False)
    return la.mean.detach().clone(), la.posterior_precision.detach().clone()


class LaplaceMethod:
    """Laplace approximation (GGN curvature, prior precision α, linearised predictive).

    Attributes (after ``fit``):
        mean: ``(P,)`` θ_MAP of the approximated parameters.
        precision: ``(P, P)`` posterior precision ``GGN + α I``.
        layout: which parameters θ covers (all, or the last ``nn.Linear``).
        backend: ``"laplace-torch"`` or ``"ggn"``, whichever built ``precision`` (see :func:`resolve_backend`).
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
        self.mean = self.layout.flatten(dict(module.named_parameters())).detach().clone()
        x = dataset.x_train.to(self.mean.dtype)
        self.backend = resolve_backend(c.laplace_backend, self.task, self.noise_std, module, c.laplace_subset)
        if self.backend == "laplace-torch":
            mean, self.precision = laplace_torch_posterior(
                module, x, dataset.y_train, self.task, self.noise_std, c.prior_precision, c.laplace_subset, linears[-1]
            )
            if not torch.equal(mean, self.mean):  # same parameters in the same order, or the layouts disagree
                raise RuntimeError("laplace-torch's parameter vector differs from the package's layout")
        else:
            self.precision = ggn_precision(module, self.layout, x, self.task, self.noise_std, c.prior_precision)
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
