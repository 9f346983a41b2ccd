"""The interface every uncertainty method fulfils, its one config, and the registry of methods.

A method is configured by a :class:`MethodConfig`, trained by ``fit(dataset)``, and predicts *samples* of the
predictive: ``(S, N, K)`` probabilities for classification, or ``(S, N)`` means and variances for regression,
where S counts ensemble members or posterior samples. The predictive is always the average over S.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch

from eb_ensembles.checks import InvalidInputError
from eb_ensembles.data import Dataset
from eb_ensembles.models import mlp_factory
from eb_ensembles.training.config import TrainConfig

__all__ = [
    "METHODS",
    "MethodConfig",
    "UncertaintyMethod",
    "build_method",
    "method_config_dict",
    "network_factory",
    "register_method",
]


@dataclass
class MethodConfig:
    """One config for every method: the network, the likelihood and prior, method options, and the training.

    Attributes:
        hidden: hidden-layer widths of the MLP.
        activation: ``"relu"``, ``"tanh"`` or ``"gelu"``.
        noise_std: regression with a fixed Gaussian noise standard deviation (the network outputs the mean only);
            None: the network outputs a mean and a variance.
        prior_precision: α of the Gaussian prior ``N(0, α⁻¹ I)`` on the weights (MAP, Laplace, VI, SWAG, HMC;
            MAP's and SWAG's Adam weight decay is ``α / N``). Ensembles ignore it (their ``train.weight_decay``).
        samples: predictive samples S of the sampling methods (MC dropout, VI, Laplace, SWAG, HMC draws kept).
        dropout: MC dropout probability after each hidden layer.
        laplace_subset: ``"all"`` (full Hessian; small nets) or ``"last_layer"``.
        laplace_backend: ``"auto"`` (laplace-torch where it serves and is installed, else ours), ``"laplace-torch"``
            or ``"ggn"`` (ours; the only one for a mean/variance regression head).
        swag_rank: SWAG low-rank K (0: diagonal only).
        swag_epochs: SGD epochs at constant learning rate collecting SWAG moments (one snapshot per epoch).
        swag_lr: the constant SGD learning rate of the SWAG phase.
        hmc_chains: HMC chains run in parallel.
        hmc_warmup: warm-up iterations (step-size adaptation by dual averaging); discarded.
        hmc_draws: iterations kept per chain (thinned to ``samples`` in total for prediction).
        hmc_leapfrog: leapfrog steps per iteration.
        hmc_target_accept: the acceptance rate step-size adaptation aims at.
        hmc_adapt_mass: adapt a diagonal mass matrix per chain in warm-up (Stan's windows); False keeps M = I.
        hmc_init: where chains start: ``"prior"`` (independent network initialisations) or ``"map"`` (one MAP fit
            per chain, trained with ``train`` and weight decay α/N; shortens warm-up on larger networks).
        device: training device (None: CPU tensors stay on CPU); predictions run where their inputs are.
        train: the :class:`~eb_ensembles.training.config.TrainConfig` (members, epochs, optimiser, seed).
    """

    hidden: tuple[int, ...] = (100,)
    activation: str = "relu"
    noise_std: float | None = None
    prior_precision: float = 1.0
    samples: int = 20
    dropout: float = 0.1
    laplace_subset: str = "last_layer"
    laplace_backend: str = "auto"
    swag_rank: int = 10
    swag_epochs: int = 20
    swag_lr: float = 1e-2
    hmc_chains: int = 4
    hmc_warmup: int = 300
    hmc_draws: int = 300
    hmc_leapfrog: int = 20
    hmc_target_accept: float = 0.8
    hmc_adapt_mass: bool = True
    hmc_init: str = "prior"
    device: str | None = None
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        self.hidden = tuple(int(h) for h in self.hidden)
        if isinstance(self.train, dict):
            self.train = TrainConfig(**self.train)
        self.validate()

    def validate(self) -> None:
        """Raise :class:`InvalidInputError` on any out-of-range field."""
        if any(h < 1 for h in self.hidden):
            raise InvalidInputError(f"hidden widths must be >= 1, got {list(self.hidden)}")
        if self.noise_std is not None and not self.noise_std > 0:
            raise InvalidInputError(f"noise_std must be > 0, got {self.noise_std}")
        if not self.prior_precision > 0:
            raise InvalidInputError(f"prior_precision must be > 0, got {self.prior_precision}")
        if self.samples < 1:
            raise InvalidInputError(f"samples must be >= 1, got {self.samples}")
        if not 0.0 < self.dropout < 1.0:
            raise InvalidInputError(f"dropout must be in (0, 1), got {self.dropout}")
        if self.laplace_subset not in ("all", "last_layer"):
            raise InvalidInputError(f"laplace_subset must be 'all' or 'last_layer', got {self.laplace_subset!r}")
        if self.laplace_backend not in ("auto", "laplace-torch", "ggn"):
            raise InvalidInputError(
                f"laplace_backend must be 'auto', 'laplace-torch' or 'ggn', got {self.laplace_backend!r}"
            )
        if self.swag_rank < 0 or self.swag_epochs < 2 or not self.swag_lr > 0:
            raise InvalidInputError(
                f"SWAG needs swag_rank >= 0, swag_epochs >= 2 and swag_lr > 0, got {self.swag_rank}, "
                f"{self.swag_epochs}, {self.swag_lr}"
            )
        if self.hmc_chains < 1 or self.hmc_warmup < 1 or self.hmc_draws < 2 or self.hmc_leapfrog < 1:
            raise InvalidInputError("HMC needs hmc_chains >= 1, hmc_warmup >= 1, hmc_draws >= 2, hmc_leapfrog >= 1")
        if self.hmc_init not in ("prior", "map"):
            raise InvalidInputError(f"hmc_init must be 'prior' or 'map', got {self.hmc_init!r}")
        if not 0.0 < self.hmc_target_accept < 1.0:
            raise InvalidInputError(f"hmc_target_accept must be in (0, 1), got {self.hmc_target_accept}")
        self.train.validate()


@runtime_checkable
class UncertaintyMethod(Protocol):
    """The contract every method fulfils."""

    name: str
    config: MethodConfig

    def fit(self, dataset: Dataset, *, checkpoint_dir: Path | None = None, resume: bool = False) -> UncertaintyMethod:
        """Train on ``dataset.x_train, dataset.y_train``; return self."""
        ...

    def predict_samples(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """``(S, N, K)`` probabilities, or ``(S, N)`` means and variances for regression."""
        ...


def output_width(dataset: Dataset, config: MethodConfig) -> int:
    """K for classification; 1 (fixed noise) or 2 (mean, variance) for regression."""
    if dataset.task == "classification":
        return dataset.num_classes
    return 1 if config.noise_std is not None else 2


def network_factory(dataset: Dataset, config: MethodConfig, *, dropout: float = 0.0) -> Callable[[], torch.nn.Module]:
    """The MLP factory of ``config`` for ``dataset`` (input width D, output width from the task)."""
    return mlp_factory(dataset.in_features, output_width(dataset, config), config.hidden, config.activation, dropout)


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


def build_method(name: str, config: MethodConfig) -> UncertaintyMethod:
    """Instantiate a registered method.

    Raises:
        InvalidInputError: unknown name.
    """
    if name not in METHODS:
        raise InvalidInputError(f"unknown method {name!r}; registered: {', '.join(METHODS)}")
    return METHODS[name](config)


def method_config_dict(config: MethodConfig) -> dict[str, Any]:
    """The config as a JSON-ready dict (round-trips through ``MethodConfig(**d)``)."""
    return {**asdict(config), "hidden": list(config.hidden)}


def require_fitted(method: Any, attribute: str) -> Any:
    """``getattr(method, attribute)``, or a one-line error when the method has not been fitted."""
    value = getattr(method, attribute, None)
    if value is None:
        raise InvalidInputError(f"method {method.name!r} must be fitted before predicting; call fit() first")
    return value
