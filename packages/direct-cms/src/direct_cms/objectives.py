"""The two distillation targets and the losses; ``cd`` and ``direct`` differ only in the target.

Both objectives share the student branch ``f_θ(x_{t_n}, t_n)`` (the consistency function of
:mod:`direct_cms.parameterization` around the student's ε̂) and the training input
``x_{t_n} = α_{t_n}·x₀ + σ_{t_n}·ε`` (forward-noised data, not a teacher trajectory).

- ``cd`` (consistency distillation): one teacher solver step ``x̂_{t_n−r} = Φ(x_{t_n}, t_n)``, then the target
  network's own output ``f_θ⁻(x̂_{t_n−r}, t_n−r)`` under no gradient. θ⁻ is the online student (stop-gradient, the
  paper's LoRA scripts) or an EMA of it. At the last interval (t_n − r = 0) the target is the teacher's x̂₀ exactly.
- ``direct``: the teacher's full solve ``Solve(x_{t_n}, t_n → 0)``, used raw (no student, no scalings).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from direct_cms.config import OBJECTIVES
from direct_cms.grid import TimeGrid
from direct_cms.guidance import EpsModel
from direct_cms.parameterization import SIGMA_DATA, TIMESTEP_SCALING, consistency_function
from direct_cms.solvers import _GridSolver, solve

__all__ = ["LOSSES", "OBJECTIVES", "cd_target", "direct_target", "l2_loss", "pseudo_huber_loss", "student_output"]


def student_output(
    student_eps: EpsModel,
    grid: TimeGrid,
    sample: torch.Tensor,
    t: torch.Tensor,
    cond: torch.Tensor | None,
    sigma_data: float = SIGMA_DATA,
    timestep_scaling: float = TIMESTEP_SCALING,
) -> torch.Tensor:
    """Online branch ``f_θ(x_t, t)`` (with gradient), shape of ``sample``."""
    return consistency_function(grid, student_eps(sample, t, cond), sample, t, sigma_data, timestep_scaling)


def cd_target(
    teacher: EpsModel,
    solver: _GridSolver,
    target_eps: EpsModel,
    sample: torch.Tensor,
    t: torch.Tensor,
    cond: torch.Tensor | None,
    sigma_data: float = SIGMA_DATA,
    timestep_scaling: float = TIMESTEP_SCALING,
) -> torch.Tensor:
    """CD target ``f_θ⁻(Φ_teacher(x_t, t), t − r)`` without gradient.

    Args:
        teacher: guided teacher ε-model.
        solver: the teacher's grid solver (one step).
        target_eps: the target network's ε-model (online student or its EMA; no CFG on the student side).
        sample: x_{t_n}, ``(B, ...)``.
        t: ``(B,)`` int64 start times t_n.
        cond: per-sample conditioning or ``None``.

    Returns:
        The target, a plain tensor (no autograd history), shape of ``sample``.
    """
    grid = solver.grid
    with torch.inference_mode():
        x_prev = solver.step(teacher, sample, t, cond)
        t_prev = t - grid.step_ratio
        target = consistency_function(
            grid, target_eps(x_prev, t_prev, cond), x_prev, t_prev, sigma_data, timestep_scaling
        )
    return target.clone()  # a normal tensor, usable next to autograd tensors


def direct_target(
    teacher: EpsModel, solver: _GridSolver, sample: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None
) -> torch.Tensor:
    """Direct CM target: the teacher's solve from ``(x_t, t)`` to ``t = 0`` (masked batch), without gradient."""
    with torch.inference_mode():
        target = solve(solver, teacher, sample, t, cond)
    return target.clone()


def l2_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over all elements (λ = 1), the paper's loss."""
    return F.mse_loss(prediction, target, reduction="mean")


def pseudo_huber_loss(prediction: torch.Tensor, target: torch.Tensor, c: float = 1e-3) -> torch.Tensor:
    """``mean(√(d² + c²) − c)`` over all elements (c = 1e-3 as the paper's option); ≥ 0, 0 iff equal."""
    diff = prediction.float() - target.float()
    return (torch.sqrt(diff**2 + c**2) - c).mean()


LOSSES = {"l2": l2_loss, "huber": pseudo_huber_loss}
