"""Small networks for the experiments: MLP classifiers and MLP regressors with mean + variance heads.

Any ``nn.Module`` factory works with :mod:`eb_ensembles.ensemble`; these are the ones the CLI builds.
A regression network outputs ``(N, 2)``: the mean and an unconstrained value mapped to a variance by
:func:`gaussian_head` (``softplus + 1e-6``), as in Lakshminarayanan et al. (2017).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import nn

from eb_ensembles.checks import InvalidInputError

__all__ = ["MIN_VARIANCE", "MLP", "gaussian_head", "mlp_factory"]

MIN_VARIANCE = 1e-6
_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


class MLP(nn.Module):
    """A multilayer perceptron ``in → hidden... → out`` with an optional dropout after each hidden layer.

    Args:
        in_features: input dimension D.
        out_features: K classes, or 2 for a regression network (mean, raw variance).
        hidden: widths of the hidden layers.
        activation: ``"relu"``, ``"tanh"`` or ``"gelu"``.
        dropout: dropout probability after each hidden activation (0 disables it).

    Shapes:
        ``(N, D)`` float → ``(N, out_features)``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden: tuple[int, ...] = (100,),
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise InvalidInputError(f"unknown activation {activation!r}; choose one of {', '.join(_ACTIVATIONS)}")
        if not 0.0 <= dropout < 1.0:
            raise InvalidInputError(f"`dropout` must be in [0, 1), got {dropout}")
        layers: list[nn.Module] = []
        width = in_features
        for size in hidden:
            layers += [nn.Linear(width, size), _ACTIVATIONS[activation]()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = size
        layers.append(nn.Linear(width, out_features))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def mlp_factory(
    in_features: int,
    out_features: int,
    hidden: tuple[int, ...] = (100,),
    activation: str = "relu",
    dropout: float = 0.0,
) -> Callable[[], MLP]:
    """A zero-argument factory building a fresh :class:`MLP` (initialised from torch's current RNG)."""
    return partial(MLP, in_features, out_features, tuple(hidden), activation, dropout)


def gaussian_head(output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a regression output ``(..., 2)`` into mean and variance ``softplus(raw) + MIN_VARIANCE``."""
    if output.shape[-1] != 2:
        raise InvalidInputError(f"a regression network must output 2 values (mean, variance), got {output.shape[-1]}")
    return output[..., 0], nn.functional.softplus(output[..., 1]) + MIN_VARIANCE
