"""One interface for every uncertainty method, and a validated registry of them.

A method is configured by a :class:`MethodConfig`, trained by ``fit(dataset)``, and predicts *samples* of the
predictive: ``(S, N, K)`` probabilities for classification, or ``(S, N)`` means and variances for regression,
where S counts ensemble members or posterior samples. The predictive is always the average over S.
Each method lives in one module (``ensemble.py`` holds the ensemble and MAP training); the BNN baselines
(MC dropout, mean-field VI, Laplace, SWAG) and the HMC reference plug in with :func:`register_method`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch

from eb_ensembles.checks import InvalidInputError
from eb_ensembles.data import Dataset
from eb_ensembles.ensemble import DeepEnsemble, EnsembleConfig, train_ensemble
from eb_ensembles.models import mlp_factory

__all__ = [
    "METHODS",
    "EnsembleMethod",
    "MAPMethod",
    "MethodConfig",
    "UncertaintyMethod",
    "build_method",
    "register_method",
]


@dataclass
class MethodConfig:
    """Hyperparameters shared by the methods (each uses the fields that apply to it).

    Attributes:
        hidden: hidden-layer widths of the MLP.
        members: ensemble size M (ensembles) or number of samples S (sampling methods).
        epochs: training epochs.
        batch_size: minibatch size.
        lr: Adam learning rate.
        weight_decay: L2 coefficient (0 = maximum likelihood, the paper's faithful mode for ensembles).
        vectorise: train ensemble members all at once on stacked parameters.
        dtype: ``"float32"`` or ``"float64"``.
        device: training device (``None``: CPU tensors stay on CPU); predictions run where their inputs are.
        extra: method-specific options (kept for later baselines).
    """

    hidden: tuple[int, ...] = (100,)
    members: int = 5
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    vectorise: bool = True
    dtype: str = "float32"
    device: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class UncertaintyMethod(Protocol):
    """The contract every method fulfils."""

    name: str
    config: MethodConfig

    def fit(
        self, dataset: Dataset, *, seed: int, checkpoint_dir: Path | None = None, resume: bool = False
    ) -> UncertaintyMethod:
        """Train on ``dataset.x_train, dataset.y_train``; return self."""
        ...

    def predict_samples(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """``(S, N, K)`` probabilities, or ``(S, N)`` means and variances for regression."""
        ...


def _factory(dataset: Dataset, config: MethodConfig) -> Callable[[], torch.nn.Module]:
    out = dataset.num_classes if dataset.task == "classification" else 2
    return mlp_factory(dataset.in_features, out, tuple(config.hidden))


class EnsembleMethod:
    """A deep ensemble of M MLPs (probability averaging / Gaussian mixture): the empirical-Bayes BMA."""

    name = "ensemble"

    def __init__(self, config: MethodConfig) -> None:
        self.config = config
        self.ensemble: DeepEnsemble | None = None

    def _ensemble_config(self, dataset: Dataset, seed: int) -> EnsembleConfig:
        c = self.config
        return EnsembleConfig(
            members=c.members,
            epochs=c.epochs,
            batch_size=c.batch_size,
            lr=c.lr,
            weight_decay=c.weight_decay,
            vectorise=c.vectorise,
            seed=seed,
            task=dataset.task,
            dtype=c.dtype,
        )

    def fit(
        self, dataset: Dataset, *, seed: int, checkpoint_dir: Path | None = None, resume: bool = False
    ) -> EnsembleMethod:
        self.ensemble = train_ensemble(
            _factory(dataset, self.config),
            dataset.x_train,
            dataset.y_train,
            self._ensemble_config(dataset, seed),
            checkpoint_dir=checkpoint_dir,
            resume=resume,
            device=self.config.device,
        )
        return self

    def predict_samples(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if self.ensemble is None:
            raise InvalidInputError(f"method {self.name!r} must be fitted before predicting; call fit() first")
        if self.ensemble.task == "classification":
            return self.ensemble.member_probs(x)
        return self.ensemble.member_gaussians(x)


class MAPMethod(EnsembleMethod):
    """A single network trained with weight decay: the MAP estimate under a Gaussian prior (S = 1)."""

    name = "map"

    def _ensemble_config(self, dataset: Dataset, seed: int) -> EnsembleConfig:
        config = super()._ensemble_config(dataset, seed)
        config.members, config.vectorise = 1, False
        return config


METHODS: dict[str, type] = {}


def register_method(name: str, cls: type) -> None:
    """Add a method class to :data:`METHODS`.

    Raises:
        InvalidInputError: the name is taken, has whitespace, or the class lacks ``fit``/``predict_samples``.
    """
    if name != name.strip() or not name or " " in name:
        raise InvalidInputError(f"method name {name!r} must be a non-empty word without whitespace")
    if name in METHODS:
        raise InvalidInputError(f"method {name!r} is already registered")
    if not all(callable(getattr(cls, attr, None)) for attr in ("fit", "predict_samples")):
        raise InvalidInputError(f"method class {cls.__name__} must define fit() and predict_samples()")
    METHODS[name] = cls


register_method("map", MAPMethod)
register_method("ensemble", EnsembleMethod)


def build_method(name: str, config: MethodConfig) -> UncertaintyMethod:
    """Instantiate a registered method.

    Raises:
        InvalidInputError: unknown name.
    """
    if name not in METHODS:
        raise InvalidInputError(f"unknown method {name!r}; registered: {', '.join(METHODS)}")
    return METHODS[name](config)


def method_config_dict(config: MethodConfig) -> dict[str, Any]:
    """The config as a JSON-ready dict."""
    return {**asdict(config), "hidden": list(config.hidden)}
