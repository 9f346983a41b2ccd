"""Our Laplace wrapper against laplace-torch called directly, and the backend choice.

The wrapper must hand laplace-torch the trained MAP network and read back the same posterior that a user calling
``laplace.Laplace`` by hand gets; its linearised predictive must match laplace-torch's closed-form GLM predictive;
and laplace-torch's GGN must equal ours (``torch.func`` Jacobians) on a nonlinear network, in float64.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from eb_ensembles.checks import InvalidInputError
from eb_ensembles.data import Dataset
from eb_ensembles.methods import MethodConfig, build_method
from eb_ensembles.methods.laplace import FlatParams, ggn_precision, resolve_backend
from eb_ensembles.models import MLP
from eb_ensembles.training.config import TrainConfig

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", category=DeprecationWarning)  # laplace-torch 0.3: torch.jit.script at import
    from laplace import Laplace
    from laplace.curvature import BackPackGGN

NOISE, ALPHA, SAMPLES = 0.3, 1.5, 4000


def _config(subset: str, **kwargs) -> MethodConfig:
    train = TrainConfig(members=1, epochs=60, batch_size=40, lr=0.02, dtype="float64", seed=3)
    options = {"hidden": (8,), "activation": "tanh", "prior_precision": ALPHA, "samples": SAMPLES, **kwargs}
    return MethodConfig(laplace_subset=subset, train=train, **options)


def _direct(method, dataset: Dataset, subset: str, likelihood: str, **kwargs):
    """laplace-torch by hand on (a copy of) the wrapper's MAP network, full GGN from BackPACK."""
    module = MLP(dataset.in_features, method.module.net[-1].out_features, (8,), "tanh").double()
    module.load_state_dict(method.module.state_dict())
    extra = {"last_layer_name": "net.2"} if subset == "last_layer" else {}
    la = Laplace(
        module,
        likelihood,
        subset_of_weights=subset,
        hessian_structure="full",
        prior_precision=ALPHA,
        backend=BackPackGGN,
        **extra,
        **kwargs,
    )
    y = dataset.y_train[:, None] if likelihood == "regression" else dataset.y_train
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(dataset.x_train, y), batch_size=32)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning)
        la.fit(loader, progress_bar=False)
    return la


@pytest.mark.parametrize("subset", ["all", "last_layer"])
def test_wrapper_equals_laplace_torch_regression(subset, toy_regression):
    x, y = toy_regression
    dataset = Dataset("toy", "regression", x, y, x[:25], y[:25])
    method = build_method("laplace", _config(subset, noise_std=NOISE)).fit(dataset)
    assert method.backend == "laplace-torch"
    la = _direct(method, dataset, subset, "regression", sigma_noise=NOISE)
    torch.testing.assert_close(method.mean, la.mean, rtol=0, atol=0)
    torch.testing.assert_close(method.precision, la.posterior_precision, rtol=1e-10, atol=1e-8)
    # our Monte Carlo linearised predictive against laplace-torch's closed-form GLM predictive N(f_mu, f_var)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning)  # BackPACK's hook notes
        f_mu, f_var = la(dataset.x_test, pred_type="glm")
    f_mu, f_var = f_mu.detach(), f_var.detach()
    f_mu, f_sd = f_mu[:, 0], f_var[:, 0, 0].sqrt()
    means, variances = method.predict_samples(dataset.x_test)
    assert torch.all(variances == NOISE**2)
    z = (means.mean(0) - f_mu) / (f_sd / math.sqrt(SAMPLES))
    assert float(z.abs().max()) < 4.5
    assert float((means.std(0) / f_sd - 1).abs().max()) < 0.06  # sd of an sd estimate from 4000 draws: ~1.1 %


@pytest.mark.parametrize("subset", ["all", "last_layer"])
def test_laplace_torch_ggn_equals_ours_classification(subset, toy_classification):
    x, y = toy_classification
    dataset = Dataset("toy", "classification", x, y, x[:30], y[:30], num_classes=3)
    method = build_method("laplace", _config(subset)).fit(dataset)
    assert method.backend == "laplace-torch"
    la = _direct(method, dataset, subset, "classification")
    torch.testing.assert_close(method.precision, la.posterior_precision, rtol=1e-10, atol=1e-8)
    ours = ggn_precision(method.module, method.layout, x, "classification", None, ALPHA)
    scale = float(ours.abs().max())
    assert float((method.precision - ours).abs().max()) < 1e-10 * scale


def test_backend_choice():
    mlp = MLP(2, 2, (4,), "relu")
    gelu = MLP(2, 2, (4,), "gelu")
    assert resolve_backend("auto", "classification", None, mlp, "all") == "laplace-torch"
    assert resolve_backend("auto", "regression", 0.5, gelu, "last_layer") == "laplace-torch"
    assert resolve_backend("auto", "regression", None, mlp, "all") == "ggn"  # mean/variance head
    assert resolve_backend("auto", "classification", None, gelu, "all") == "ggn"  # BackPACK has no GELU
    assert resolve_backend("ggn", "classification", None, mlp, "all") == "ggn"
    with pytest.raises(InvalidInputError, match="laplace-torch serves"):
        resolve_backend("laplace-torch", "regression", None, mlp, "all")
    with pytest.raises(InvalidInputError, match="laplace_backend must be"):
        MethodConfig(laplace_backend="kfac")


def test_heteroscedastic_head_uses_our_ggn(toy_regression):
    x, y = toy_regression
    dataset = Dataset("toy", "regression", x, y, x[:10], y[:10])
    method = build_method("laplace", _config("all", samples=50)).fit(dataset)
    assert method.backend == "ggn"
    assert FlatParams(method.module).size == method.precision.shape[0]
    means, variances = method.predict_samples(dataset.x_test)
    assert means.shape == (50, 10) and bool(torch.all(variances > 0))
