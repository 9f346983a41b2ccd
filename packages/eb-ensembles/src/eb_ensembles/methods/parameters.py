"""Flat parameter vectors of one network, and predictions from a batch of parameter samples ``(S, P)``.

The sampling methods (Laplace, SWAG, HMC) keep samples of the flattened parameters θ (the ``state_dict``'s float
tensors in order) and predict by running the network once per sample, vectorised over samples with
``torch.func.vmap(functional_call)``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call, vmap

from eb_ensembles.training.likelihood import regression_gaussian

__all__ = ["FlatParams", "predictive_from_outputs"]


class FlatParams:
    """The layout of a module's parameters as one flat vector (names, shapes, offsets).

    Args:
        module: the network (its parameters, in ``named_parameters`` order, make up θ).
        names: the parameters to include (default all).

    Example:
        >>> layout = FlatParams(nn.Linear(3, 2))
        >>> layout.size, layout.names
        (8, ['weight', 'bias'])
    """

    def __init__(self, module: nn.Module, names: list[str] | None = None) -> None:
        params = dict(module.named_parameters())
        self.names = list(params) if names is None else list(names)
        self.shapes = [tuple(params[n].shape) for n in self.names]
        self.numels = [params[n].numel() for n in self.names]
        self.size = sum(self.numels)
        self.base = module

    def flatten(self, state: dict[str, torch.Tensor]) -> torch.Tensor:
        """``(P,)`` vector of the named tensors of ``state``."""
        return torch.cat([state[n].reshape(-1) for n in self.names])

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Inverse of :meth:`flatten` for ``(..., P)``: name → ``(..., *shape)`` views."""
        out, offset = {}, 0
        lead = flat.shape[:-1]
        for name, shape, numel in zip(self.names, self.shapes, self.numels, strict=True):
            out[name] = flat[..., offset : offset + numel].reshape(*lead, *shape)
            offset += numel
        return out

    def outputs(
        self, samples: torch.Tensor, x: torch.Tensor, fixed: dict[str, torch.Tensor] | None = None, chunk: int = 4096
    ) -> torch.Tensor:
        """Network outputs for every sample: ``samples (S, P)``, ``x (N, D)`` → ``(S, N, O)``.

        ``fixed`` holds the parameters and buffers not in θ (e.g. the body of a last-layer model).
        """
        fixed = fixed or {}

        def one(theta: torch.Tensor, xb: torch.Tensor) -> torch.Tensor:
            return functional_call(self.base, {**fixed, **self.unflatten(theta)}, (xb,))

        with torch.no_grad():
            parts = [vmap(one, in_dims=(0, None))(samples, xb.to(samples.dtype)) for xb in x.split(chunk)]
        return torch.cat(parts, 1)


def predictive_from_outputs(
    task: str, outputs: torch.Tensor, noise_std: float | None
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """``(S, N, K)`` probabilities from logits, or ``(S, N)`` means and variances from regression outputs."""
    if task == "classification":
        return torch.softmax(outputs, -1)
    return regression_gaussian(outputs, noise_std)
