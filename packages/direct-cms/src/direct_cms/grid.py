"""The paper's discrete time grid and ε-parameterisation on a DDPM noise schedule.

Notation (code name → paper symbol), following the public direct-cms code:

=====================  =====================================================================
``T``                  number of training timesteps of the DDPM schedule (1000)
``N``                  number of grid intervals (``--num_discr_timesteps``; 100 in the paper)
``step_ratio`` (r)     ``T // N``; a solver step goes from ``t`` to ``t - r``
``alphas_cumprod``     ᾱ, indexed 0..T-1
``alpha(t)``           α_t = √ᾱ_{t-1} for t ≥ 1 and exactly 1 at t = 0 (clean data)
``sigma(t)``           σ_t = √(1 - ᾱ_{t-1}) for t ≥ 1 and exactly 0 at t = 0
=====================  =====================================================================

**The index shift.** Integer time ``t`` runs over 0..T and ``t = 0`` is clean data; a noisy time ``t`` reads
schedule index ``t - 1``, and networks receive the raw value ``t`` (so the top step passes ``T = 1000``). The grid
start times are ``t_n = T - n·r`` for ``n = 0..N-1`` ([1000, 990, …, 10] for N = 100) and the end times are
``t_n - r`` ([990, …, 0]).
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from sixlab_shared import UserError

logger = logging.getLogger(__name__)

__all__ = ["TimeGrid"]


class TimeGrid:
    """N-interval grid on a DDPM schedule with ``t = 0`` clean (see the module docstring for the notation).

    Args:
        alphas_cumprod: ᾱ of the schedule, shape ``(T,)``; kept in float64.
        betas: β of the schedule, shape ``(T,)`` (used by the Euler/Heun solvers); derived from ᾱ if ``None``.
        num_intervals: N, the number of grid intervals; must divide ``T``.

    Raises:
        UserError: ``num_intervals`` is not a positive divisor of ``T``.

    Example:
        >>> from diffusers import DDPMScheduler
        >>> grid = TimeGrid.from_scheduler(DDPMScheduler(), num_intervals=100)
        >>> grid.start_times[:2].tolist(), grid.end_times[-1].item()
        ([1000, 990], 0)
    """

    def __init__(self, alphas_cumprod: torch.Tensor, num_intervals: int, betas: torch.Tensor | None = None) -> None:
        acp = torch.as_tensor(alphas_cumprod, dtype=torch.float64).flatten()
        num_train = acp.numel()
        if num_intervals < 1 or num_train % num_intervals != 0:
            raise UserError(
                f"N={num_intervals} grid intervals must divide the scheduler's {num_train} training steps; "
                f"pick N from the divisors of {num_train} (e.g. 10, 20, 50, 100)"
            )
        if betas is None:
            prev = torch.cat([torch.ones(1, dtype=torch.float64), acp[:-1]])
            betas = 1.0 - acp / prev
        self.alphas_cumprod = acp
        self.betas = torch.as_tensor(betas, dtype=torch.float64).flatten()
        self.num_train_timesteps = num_train
        self.num_intervals = num_intervals
        self.step_ratio = num_train // num_intervals

    @classmethod
    def from_scheduler(cls, scheduler: Any, num_intervals: int) -> TimeGrid:
        """Build the grid from a DDPM-like diffusers scheduler (ε-prediction, ``alphas_cumprod`` and ``betas``).

        Raises:
            UserError: the scheduler has no ``alphas_cumprod``/``betas`` (not DDPM-like), predicts something other
                than ε, or ``num_intervals`` does not divide its training steps.
        """
        name = type(scheduler).__name__
        if not hasattr(scheduler, "alphas_cumprod") or not hasattr(scheduler, "betas"):
            raise UserError(
                f"scheduler {name} is not DDPM-like (no alphas_cumprod/betas); load the teacher with a "
                "DDPMScheduler or DDIMScheduler"
            )
        prediction = getattr(scheduler.config, "prediction_type", "epsilon")
        if prediction != "epsilon":
            raise UserError(
                f"scheduler {name} has prediction_type={prediction!r}; direct-cms needs an epsilon-prediction teacher"
            )
        return cls(scheduler.alphas_cumprod, num_intervals, betas=scheduler.betas)

    # -- the grid ---------------------------------------------------------------------------------------------
    @property
    def start_times(self) -> torch.Tensor:
        """``t_n = T - n·r`` for ``n = 0..N-1``, shape ``(N,)`` int64, descending ([1000, …, 10])."""
        return self.num_train_timesteps - torch.arange(self.num_intervals, dtype=torch.int64) * self.step_ratio

    @property
    def end_times(self) -> torch.Tensor:
        """``t_n - r``, shape ``(N,)`` int64, descending ([990, …, 0])."""
        return self.start_times - self.step_ratio

    def time_of_index(self, n: torch.Tensor) -> torch.Tensor:
        """Start time ``t_n = T - n·r`` of grid index ``n`` (int64 tensor of any shape)."""
        return self.num_train_timesteps - n.to(torch.int64) * self.step_ratio

    # -- schedule coefficients with the index shift ----------------------------------------------------------
    def _gather(self, values: torch.Tensor, t: torch.Tensor, at_zero: float) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=torch.int64)
        if (t < 0).any() or (t > self.num_train_timesteps).any():
            raise ValueError(
                f"time t must lie in 0..{self.num_train_timesteps}, got {t.min().item()}..{t.max().item()}"
            )
        index = (t - 1).clamp(min=0).cpu()
        out = values[index]
        return torch.where(t.cpu() == 0, torch.full_like(out, at_zero), out)

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        """α_t (float64, shape of ``t``): √ᾱ_{t-1}, and exactly 1 at ``t = 0``."""
        return self._gather(self.alphas_cumprod.sqrt(), t, 1.0)

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        """σ_t (float64, shape of ``t``): √(1-ᾱ_{t-1}), and exactly 0 at ``t = 0``."""
        return self._gather((1.0 - self.alphas_cumprod).sqrt(), t, 0.0)

    def beta_continuous(self, t: torch.Tensor) -> torch.Tensor:
        """β(τ) = T·β_{t-1} of the VP ODE in τ = t/T (float64); index 0 is substituted at ``t = 0``."""
        t = torch.as_tensor(t, dtype=torch.int64)
        return self.num_train_timesteps * self.betas[(t - 1).clamp(min=0).cpu()]

    def sigma_clamped(self, t: torch.Tensor) -> torch.Tensor:
        """σ at schedule index ``max(t-1, 0)`` (float64): the value the Heun corrector uses at ``t = 0``."""
        t = torch.as_tensor(t, dtype=torch.int64)
        return (1.0 - self.alphas_cumprod[(t - 1).clamp(min=0).cpu()]).sqrt()

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Forward-noise clean data: ``x_t = α_t·x0 + σ_t·ε`` (per-sample ``t`` of shape ``(B,)``)."""
        return expand_to(self.alpha(t), x0) * x0 + expand_to(self.sigma(t), x0) * noise

    def config(self) -> dict[str, int]:
        """The grid's integer settings (for run configs and checkpoint checks)."""
        return {"num_train_timesteps": self.num_train_timesteps, "num_intervals": self.num_intervals}


def expand_to(coef: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Cast a per-sample coefficient ``(B,)`` (or scalar) to ``like``'s dtype/device and shape ``(B, 1, …)``.

    The coefficient is computed in float64 and rounded once, to the sample's dtype.
    """
    coef = coef.to(device=like.device, dtype=like.dtype)
    if coef.ndim == 0:
        return coef
    return coef.reshape(coef.shape[0], *([1] * (like.ndim - 1)))
