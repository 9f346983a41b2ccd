"""Teacher ε-models and classifier-free guidance in the Imagen form: ε̂ = ε_u + w·(ε_c − ε_u).

w = 1 is the plain conditional model, w = 0 the unconditional one; the paper fixes w = 9 (8 in the LCM form
``ε_c + w'·(ε_c − ε_u)``, w' = w − 1) and never samples it. The student has no w-embedding.

An *ε-model* here is any callable ``eps_model(x, t, cond) -> ε̂`` with ``x`` of shape ``(B, ...)``, ``t`` int64 of
shape ``(B,)`` (raw grid times, see :mod:`direct_cms.grid`) and ``cond`` a per-sample tensor or ``None``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import nn

from direct_cms.conditioning import TextCond, cat_cond, null_like
from sixlab_shared import UserError

logger = logging.getLogger(__name__)

__all__ = ["EpsModel", "GuidedTeacher", "UNetEps", "cfg_combine"]

EpsModel = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


def cfg_combine(eps_cond: torch.Tensor, eps_uncond: torch.Tensor, guidance: float) -> torch.Tensor:
    """Imagen-form guidance ``ε_u + w·(ε_c − ε_u)``.

    Example:
        >>> c, u = torch.tensor([1.0]), torch.tensor([0.0])
        >>> cfg_combine(c, u, 3.0).item()
        3.0
    """
    return eps_uncond + guidance * (eps_cond - eps_uncond)


class UNetEps(nn.Module):
    """ε-model face of a diffusers ``UNet2DModel`` (class labels as ``cond``) or any module with that signature.

    A :class:`~direct_cms.conditioning.TextCond` ``cond`` (text-to-image teachers, ``UNet2DConditionModel``) is
    passed as ``encoder_hidden_states`` plus, for SDXL, ``added_cond_kwargs`` (pooled embedding and time ids),
    cast to the network's dtype.

    Args:
        unet: the network; called as ``unet(x, t, **{cond_kwarg: cond}).sample`` (or returning a tensor).
        cond_kwarg: keyword under which ``cond`` is passed.
    """

    def __init__(self, unet: nn.Module, cond_kwarg: str = "class_labels") -> None:
        super().__init__()
        self.unet = unet
        self.cond_kwarg = cond_kwarg

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if isinstance(cond, TextCond):
            dtype = getattr(self.unet, "dtype", None)
            if dtype is not None and torch.is_autocast_enabled(x.device.type):
                dtype = None  # autocast picks the compute dtype
            kwargs = cond.unet_kwargs(dtype)
            if dtype is not None:
                x = x.to(dtype)
        else:
            kwargs = {} if cond is None else {self.cond_kwarg: cond}
        out = self.unet(x, t, **kwargs)
        return out.sample if hasattr(out, "sample") else out


class GuidedTeacher:
    """A teacher ε-model with fixed Imagen-form CFG; counts network calls (a CFG step counts 2: cond, uncond).

    Args:
        eps_model: the teacher ε-model ``(x, t, cond) -> ε̂``.
        guidance: w ≥ 0; w = 1 skips the unconditional pass, w = 0 skips the conditional one.
        null_cond: the unconditional ``cond`` for one sample (e.g. ``tensor(10)``, the null class, or a
            :class:`~direct_cms.conditioning.TextCond` of batch 1: the empty-prompt embedding for SD 1.5, zeros for
            SDXL), broadcast over the batch; required when ``guidance != 1``.

    Raises:
        UserError: ``guidance < 0``, or guidance is used without a ``null_cond``.
    """

    def __init__(self, eps_model: EpsModel, guidance: float = 1.0, null_cond: torch.Tensor | None = None) -> None:
        if guidance < 0:
            raise UserError(f"guidance scale w must be >= 0 (Imagen form; w=1 is no guidance), got {guidance}")
        if guidance != 1.0 and null_cond is None:
            raise UserError("classifier-free guidance needs an unconditional input (null class); use guidance 1")
        self.eps_model = eps_model
        self.guidance = float(guidance)
        self.null_cond = null_cond
        self.network_calls = 0

    def _uncond(self, cond, batch: int, device: torch.device):
        assert self.null_cond is not None
        return null_like(self.null_cond, cond, batch, device)

    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Guided ε̂ at ``(x, t)``; cond and uncond run as one batched call when both are needed."""
        batch = x.shape[0]
        if self.guidance == 1.0:
            self.network_calls += 1
            return self.eps_model(x, t, cond)
        uncond = self._uncond(cond, batch, x.device)
        if self.guidance == 0.0 or cond is None:
            self.network_calls += 1
            return self.eps_model(x, t, uncond)
        self.network_calls += 2
        eps = self.eps_model(torch.cat([x, x]), torch.cat([t, t]), cat_cond(cond, uncond))
        eps_cond, eps_uncond = eps.float().chunk(2)
        return cfg_combine(eps_cond, eps_uncond, self.guidance).to(eps.dtype)
