"""Teacher probability-flow ODE solvers on the paper's grid: DDIM (default), Euler and Heun.

Notation (code → paper): ``t`` start time, ``t_prev = t - r`` next (smaller) time, α/σ the shifted schedule
coefficients of :mod:`direct_cms.grid`, ε̂ the (guided) teacher prediction, β(τ) = T·β_{t-1} the VP-SDE rate in
τ = t/T, Δτ = −r/T.

Each solver's :meth:`step` advances a batch with per-sample times ``t`` (``(B,)`` int64) by one interval, calling
the ε-model as ``eps_fn(x, t, cond)``; :func:`solve` runs a whole solve to ``t = 0`` with per-sample start times,
batched with masks (an example stays frozen until the shared loop reaches its own start time, which equals
solving each example alone).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

from direct_cms.conditioning import index_cond
from direct_cms.grid import TimeGrid, expand_to
from direct_cms.parameterization import predict_x0

logger = logging.getLogger(__name__)

__all__ = ["SOLVERS", "DDIMSolver", "EulerSolver", "HeunSolver", "make_solver", "solve"]

EpsFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


class _GridSolver:
    name = "base"
    #: ε-model evaluations per step.
    evals_per_step = 1

    def __init__(self, grid: TimeGrid) -> None:
        self.grid = grid

    def step(self, eps_fn: EpsFn, sample: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None):
        raise NotImplementedError


class DDIMSolver(_GridSolver):
    """Deterministic DDIM (η = 0) from t to t − r: ``x' = α'·x̂₀ + σ'·ε̂``; at t' = 0 it returns x̂₀."""

    name = "ddim"

    def step(
        self, eps_fn: EpsFn, sample: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        """One DDIM step; ``sample`` ``(B, ...)``, ``t`` ``(B,)`` int64 ≥ r. Returns x at ``t - r``."""
        # 1. previous (smaller) time on the grid
        t_prev = t - self.grid.step_ratio
        # 2. teacher prediction ε̂ and x̂₀ = (x − σ_t ε̂)/α_t
        eps = eps_fn(sample, t, cond)
        x0 = predict_x0(self.grid, eps, sample, t)
        # 3. x_{t'} = α_{t'} x̂₀ + σ_{t'} ε̂ (α = 1, σ = 0 at t' = 0)
        return expand_to(self.grid.alpha(t_prev), sample) * x0 + expand_to(self.grid.sigma(t_prev), sample) * eps


def _vp_drift(grid: TimeGrid, sample: torch.Tensor, eps: torch.Tensor, beta: torch.Tensor, sigma: torch.Tensor):
    """dx/dτ = −½β·x + ½(β/σ)·ε̂ of the VP probability-flow ODE (β, σ float64 per sample)."""
    return expand_to(-0.5 * beta, sample) * sample + expand_to(0.5 * beta / sigma, sample) * eps


class EulerSolver(_GridSolver):
    """Euler on the VP probability-flow ODE in τ = t/T with Δτ = −r/T."""

    name = "euler"

    def step(
        self, eps_fn: EpsFn, sample: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        """One Euler step from ``t`` to ``t - r``."""
        grid = self.grid
        dtau = -grid.step_ratio / grid.num_train_timesteps
        # 1. drift at (x, t)
        eps = eps_fn(sample, t, cond)
        drift = _vp_drift(grid, sample, eps, grid.beta_continuous(t), grid.sigma(t))
        # 2. x' = x + Δτ·drift
        return sample + dtau * drift


class HeunSolver(_GridSolver):
    """Heun (explicit trapezoid) on the VP ODE; at t' = 0 the corrector uses schedule index 0 (σ ≈ √(1−ᾱ₀))."""

    name = "heun"
    evals_per_step = 2

    def step(
        self, eps_fn: EpsFn, sample: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        """One Heun step from ``t`` to ``t - r`` (two ε-model calls)."""
        grid = self.grid
        dtau = -grid.step_ratio / grid.num_train_timesteps
        t_prev = t - grid.step_ratio
        # 1. predictor: Euler step
        eps = eps_fn(sample, t, cond)
        drift = _vp_drift(grid, sample, eps, grid.beta_continuous(t), grid.sigma(t))
        x_euler = sample + dtau * drift
        # 2. corrector: drift at (x_euler, t'), σ and β read at index max(t'−1, 0); the network gets raw t'
        eps_prev = eps_fn(x_euler, t_prev, cond)
        drift_prev = _vp_drift(grid, x_euler, eps_prev, grid.beta_continuous(t_prev), grid.sigma_clamped(t_prev))
        # 3. x' = x + Δτ·(drift + drift')/2
        return sample + dtau * 0.5 * (drift + drift_prev)


SOLVERS: dict[str, type[_GridSolver]] = {"ddim": DDIMSolver, "euler": EulerSolver, "heun": HeunSolver}


def make_solver(name: str, grid: TimeGrid) -> _GridSolver:
    """Solver by name (``ddim``, ``euler``, ``heun``).

    Raises:
        ValueError: unknown name (the CLI restricts choices before this).
    """
    if name not in SOLVERS:
        raise ValueError(f"unknown solver {name!r}; choose one of {', '.join(SOLVERS)}")
    return SOLVERS[name](grid)


def solve(
    solver: _GridSolver,
    eps_fn: EpsFn,
    sample: torch.Tensor,
    t_start: torch.Tensor,
    cond: torch.Tensor | None = None,
    t_end: int = 0,
) -> torch.Tensor:
    """Solve from per-sample start times ``t_start`` down to ``t_end`` (default 0, clean data), batched with masks.

    The loop runs the grid from ``max(t_start)`` down; at each grid time only the examples whose own start time
    has been reached advance (the rest stay frozen and are not passed to the network), so the result equals
    per-sample solves. Start times must lie on the grid (multiples of r).

    Args:
        solver: a grid solver.
        eps_fn: ε-model (usually a :class:`~direct_cms.guidance.GuidedTeacher`).
        sample: x at the start times, ``(B, ...)``.
        t_start: ``(B,)`` int64 start times.
        cond: per-sample conditioning ``(B, ...)`` or ``None``.
        t_end: stop time (a grid time ≤ every start time).

    Returns:
        x at ``t_end``, same shape and dtype as ``sample``.

    Raises:
        ValueError: a start time is off the grid or below ``t_end``.
    """
    r = solver.grid.step_ratio
    t_start = t_start.to(device=sample.device, dtype=torch.int64)
    if (t_start % r != 0).any() or (t_start < t_end).any() or t_end % r != 0:
        raise ValueError(f"start times must be multiples of the step ratio {r} and >= t_end={t_end}")
    x = sample.clone()
    t_max = int(t_start.max().item()) if t_start.numel() else t_end
    for tau in range(t_max, t_end, -r):
        active = t_start >= tau
        if active.all():
            t_now = torch.full_like(t_start, tau)
            x = solver.step(eps_fn, x, t_now, cond)
            continue
        index = active.nonzero(as_tuple=True)[0]
        t_now = torch.full((index.numel(),), tau, dtype=torch.int64, device=sample.device)
        sub_cond = index_cond(cond, index)
        x = x.index_copy(0, index, solver.step(eps_fn, x[index], t_now, sub_cond))
    return x
